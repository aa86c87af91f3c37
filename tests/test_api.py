"""The documented Python API (docs/api.md), used exactly as documented."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings

from vmxfuzz.choosers import Chooser, RecordingChooser
from vmxfuzz.differential import run_both
from vmxfuzz.engines.strategies import scenarios
from vmxfuzz.executor import run, start
from vmxfuzz.scenario import Scenario, ScenarioError, load, save

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed-nmi-in-list-add.json"


def test_load_run_and_result_fields(tmp_path: Path) -> None:
    sc = load(SEED)
    assert isinstance(sc, Scenario) and sc.ops and sc.nmis
    save(sc, tmp_path / "copy.json")
    assert load(tmp_path / "copy.json") == replace(sc, name=sc.name)
    r = run(sc, "reference", keep_trace=False)
    assert r.steps > 0 and r.trace == []
    assert {v.invariant for v in r.violations} == {"kexec-active-vmcs"}
    assert len(r.op_results) == len(sc.ops) and r.ended.startswith("kexec")
    assert r.not_applicable == []
    assert r.to_json()["steps"] == r.steps
    full = run(sc, "reference")
    assert full.trace and full.steps == r.steps


def test_bad_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    try:
        load(bad)
    except ScenarioError as e:
        assert str(bad) in str(e)
    else:
        raise AssertionError("no ScenarioError")


def test_run_both_classifies() -> None:
    d = run_both(load(SEED), keep_trace=False)
    assert [(f.cls, f.invariant) for f in d.findings] == [("fixed", "kexec-active-vmcs")]
    assert d.reference.violations and not d.patched.violations
    same = run_both(load(SEED), keep_trace=False, pair=("patched", "patched"))
    assert same.findings == []


seen: list[int] = []


@settings(max_examples=10, deadline=None, database=None)
@given(scenarios())
def test_scenarios_strategy(sc: Scenario) -> None:
    r = run(sc, "patched", keep_trace=False)
    seen.append(r.steps)
    assert r.ended


def test_the_strategy_ran() -> None:
    seen.clear()
    test_scenarios_strategy()
    assert len(seen) == 10


class LastCpuFirst(Chooser):
    def schedule(self, runnable: list[int], actions: list[str]) -> int | str:
        return runnable[-1]


def test_a_chooser_recorded_replays() -> None:
    sc = replace(
        load(ROOT / "tests" / "regressions" / "F12-reboot-ipi-between-vmptrld-and-set-cpu.json"),
        schedule=(),
    )
    rec = RecordingChooser(LastCpuFirst())
    live = start(sc, "patched", chooser=rec).finish()
    assert rec.entries  # it did decide something
    assert run(rec.scenario(sc), "patched").to_json() == live.to_json()
