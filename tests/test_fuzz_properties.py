"""What must hold of the fuzzing layer: classes agree with the per-variant verdicts,
scenarios round-trip and replay, the seed's window shows in reference and never in
patched, reproducers are 1-minimal, and campaigns write what they promise."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import assert_summary_sound, campaign
from hypothesis import HealthCheck, Phase, assume, find, given, settings

from vmxfuzz.campaign import Campaign, Hit, judge, keys
from vmxfuzz.cli import main
from vmxfuzz.differential import roots, run_both
from vmxfuzz.engines.strategies import scenarios
from vmxfuzz.executor import Result, run
from vmxfuzz.fuzzcmd import promote
from vmxfuzz.minimize import is_one_minimal, minimize
from vmxfuzz.scenario import Op, Scenario, load, save
from vmxfuzz.sched import NmiSpec

ROOT = Path(__file__).resolve().parent.parent
REG = sorted((ROOT / "tests" / "regressions").glob("*.json"))


def _window(label: str | None) -> bool:
    """The seed's window: between crash_disable and crash_enable_local_vmclear, i.e.
    around the ``list_add`` of ``vmx_vcpu_load_vmcs`` or the ``list_del`` of
    ``__loaded_vmcs_clear``."""
    return bool(label) and ("@list_add:" in label or "@list_del:" in label)


def _list_add_window(r: Result) -> bool:
    """Reference's leak during ``vmx_vcpu_load_vmcs``' ``list_add`` (its only caller)."""
    return any(v.invariant == "kexec-active-vmcs" and "@list_add:" in v.site for v in r.violations)


@given(scenarios())
def test_classes_agree_with_the_per_variant_verdicts(sc: Scenario) -> None:
    """Classes by cause: each finding's (invariant, cause) is a root violation of the
    variants its class names, and every root violation is some finding."""
    d = run_both(sc, keep_trace=False)
    ref = {(v.invariant, v.cause) for v in roots(d.reference)[0]}
    pat = {(v.invariant, v.cause) for v in roots(d.patched)[0]}
    for f in d.findings:
        ic = (f.invariant, f.cause)
        if f.cls == "fixed":
            assert ic in ref and ic not in pat
        elif f.cls == "regression":
            assert ic in pat and ic not in ref
        elif f.cls == "shared":
            assert ic in ref and ic in pat
        else:
            assert f.cls == "behaviour" and not ref and not pat
            assert d.reference.observable() != d.patched.observable()
    assert {(f.invariant, f.cause) for f in d.findings if f.cls != "behaviour"} == ref | pat


@given(scenarios())
def test_scenarios_round_trip_and_replay_identically(sc: Scenario) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sc.json"
        save(sc, path)
        again = load(path)
    assert again == sc
    assert run_both(again, keep_trace=False).findings == run_both(sc, keep_trace=False).findings


@given(scenarios(variants=("patched",)))
def test_the_seed_window_never_leaks_a_vmcs_in_patched(sc: Scenario) -> None:
    r = run(sc, "patched", keep_trace=False)
    assert not [v for v in r.violations if v.invariant == "kexec-active-vmcs" and _window(v.label)]


def test_the_seed_window_leaks_a_vmcs_in_reference() -> None:
    """Generation reaches the seed's list_add window, and the finding it makes is a
    ``fixed`` one: reference leaks, patched does not (same scenario)."""
    found = find(
        scenarios(),
        lambda sc: _list_add_window(run(sc, "reference", keep_trace=False)),
        settings=settings(
            max_examples=6000,
            database=None,
            derandomize=True,
            deadline=None,
            phases=[Phase.generate],  # the first hit is enough; minimize() shrinks
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert any(n.kind == "panic" for n in found.nmis)
    key = next(h.key for h in judge(found, "both") if "@list_add:" in h.site)
    assert key[:2] == ("fixed", "kexec-active-vmcs")
    small = minimize(found, lambda c: key in keys(c, "both"))
    assert is_one_minimal(small, lambda c: key in keys(c, "both"))
    assert not _list_add_window(run(small, "patched", keep_trace=False))


@settings(max_examples=10)
@given(scenarios())
def test_minimize_makes_any_finding_one_minimal(sc: Scenario) -> None:
    hits = judge(sc, "both")
    assume(hits)
    key = hits[0].key
    small = minimize(sc, lambda c: key in keys(c, "both"))
    assert key in keys(small, "both")
    assert is_one_minimal(small, lambda c: key in keys(c, "both"))


def _padded_seed_bug() -> Scenario:
    """F01 with irrelevant ops, NMIs and faults added: the minimiser must strip them."""
    sc = load(ROOT / "tests" / "regressions" / "F01-crash-nmi-in-list-add-skips-vmclear.json")
    return replace(
        sc,
        ops=(Op("cpu_offline", 0, target=1), *sc.ops, Op("run_vcpu", 0, vcpu="vcpu9")),
        nmis=(NmiSpec(0, "load_module:start", 1, "benign"), *sc.nmis),
        schedule=(1, 0, 1, 0),
        config=replace(sc.config, cpus=2),
    )


def test_minimize_is_one_minimal_and_keeps_the_finding() -> None:
    sc = _padded_seed_bug()
    (key,) = [k for k in keys(sc, "both") if k[1] == "kexec-active-vmcs"]
    small = minimize(sc, lambda c: key in keys(c, "both"))
    assert key in keys(small, "both")
    assert is_one_minimal(small, lambda c: key in keys(c, "both"))
    assert len(small.ops) == 4 and len(small.nmis) == 1 and small.schedule == ()


@pytest.mark.parametrize("path", REG, ids=lambda p: p.stem)
def test_kept_reproducers_are_one_minimal(path: Path) -> None:
    """Removing any op, NMI, fault or schedule entry loses one of the file's findings
    (or a consequence it shows, like F03's hang behind the killed task)."""
    sc = load(path)

    def shown(c: Scenario) -> set[Any]:
        return {(h.key, h.consequences) for h in judge(c, "both")}

    found = shown(sc)
    assert found
    assert is_one_minimal(sc, lambda c: found <= shown(c))


def test_campaign_records_minimal_reproducers_and_a_summary(tmp_path: Path) -> None:
    c = Campaign(out=tmp_path, variant="both")
    sc = _padded_seed_bug()
    hits = c.new_hits(sc)
    assert hits
    for h in hits:
        c.record(h, sc)
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert len(doc["findings"]) == len({h.key for h in hits})
    for f in doc["findings"]:
        key = (f["class"], f["invariant"], f["cause"])
        rep = load(f["reproducer"])
        assert key in keys(rep, "both")
        assert is_one_minimal(rep, lambda s, k=key: k in keys(s, "both"))
    # resuming sees the findings as known
    again = Campaign(out=tmp_path, variant="both")
    assert again.new_hits(sc) == []


def test_short_campaign_finds_and_replays(tmp_path: Path) -> None:
    # 100 examples of seed 3 find two causes (a count budget: the same on any machine)
    code, doc = campaign(tmp_path, "hypothesis", "both", 100, 3)
    assert doc["examples"] == 100 and doc["findings"]
    assert_summary_sound(tmp_path, doc, code, "both")


def test_workers_merge_without_duplicates(tmp_path: Path) -> None:
    code, doc = campaign(tmp_path, "hypothesis", "reference", 60, 7, workers=2)
    assert doc["examples"] == 60, "the count is shared out between the workers"
    assert_summary_sound(tmp_path, doc, code, "reference")


def test_promote_writes_a_regression_with_expect(tmp_path: Path) -> None:
    src = ROOT / "examples" / "vmxon-gp.json"
    target = promote(src, "promoted", tmp_path)
    sc = load(target)
    assert sc.expect == {
        "reference": ["oops"],
        "patched": [],
        "classes": ["fixed"],
        "causes": {"reference": ["oops/vmxon-fault-without-fixup"], "patched": []},
    }


@pytest.mark.parametrize(
    "argv", [["--time", "0"], ["--workers", "0"], ["--max-examples", "0"], ["--max-examples", "-5"]]
)
def test_fuzz_bad_input_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1


def test_fuzz_out_must_be_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["fuzz", "--out", str(f), "--time", "1"]) == 2
    assert str(f) in capsys.readouterr().err


def test_hit_keys_are_class_invariant_site() -> None:
    h = Hit("fixed", "oops", "reference", "kvm_cpu_vmxon:vmxon", "x")
    assert h.key == ("fixed", "oops", "kvm_cpu_vmxon:vmxon")
