"""Anchored schedules (format v4): exact conversion, meaning kept across patches that
add steps, and "not applicable" where a variant lacks an anchor."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "goldens"))
from compute import cases

from vmxfuzz.anchor import anchor, anchorable
from vmxfuzz.executor import run
from vmxfuzz.scenario import from_json, load
from vmxfuzz.sched import NmiSpec, RunEntry

ROOT = Path(__file__).resolve().parent.parent
CASES = [c for c in cases() if anchorable(c[1])]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_the_anchored_form_replays_the_same_run(case: tuple[str, object, tuple[str, ...]]) -> None:
    name, sc, variants = case
    for variant in variants:
        anchored, first = anchor(sc, variant, keep_trace=True)  # type: ignore[arg-type]
        assert first.to_json(trace=True) == run(sc, variant).to_json(trace=True)  # type: ignore[arg-type]
        assert anchored.version >= 4 or not anchored.schedule  # 5: the restart op
        again = run(from_json(json.loads(anchored.dumps()), name), variant)
        assert again.to_json(trace=True) == first.to_json(trace=True), f"{name} on {variant}"


def test_versions_one_to_three_still_load_as_step_schedules() -> None:
    for p in sorted((ROOT / "tests" / "regressions").glob("*.json")):
        sc = load(p)
        restart = any(o.op == "emergency_restart" for o in sc.ops)  # format v5 (F16, F17)
        assert not sc.anchored and (sc.version <= 3 or restart)


def test_a_label_the_variant_lacks_is_not_applicable() -> None:
    sc = load(ROOT / "examples" / "seed-nmi-in-list-add.json")
    noop = str(ROOT / "tests" / "plugins" / "noop_steps.py")
    extra = replace(sc, nmis=(*sc.nmis, NmiSpec(0, "vmx_vcpu_load_vmcs:noop_a", 1, "benign")))
    assert run(extra, "patched").not_applicable == ["nmis/1: vmx_vcpu_load_vmcs:noop_a"]
    assert run(extra, noop).not_applicable == []
    runs = (RunEntry(0, "vmx_vcpu_load_vmcs:noop_a", 1), RunEntry(1))
    anchored = replace(sc, schedule=runs, nmis=())
    assert run(anchored, "patched").not_applicable == ["schedule/0: vmx_vcpu_load_vmcs:noop_a"]


def test_mixed_schedules_are_refused(tmp_path: Path) -> None:
    from vmxfuzz.scenario import ScenarioError

    doc = json.loads((ROOT / "examples" / "seed-nmi-in-list-add.json").read_text())
    doc["version"] = 4
    doc["schedule"] = [{"cpu": 0, "until": "list_add:publish", "nth": 1}, 1]
    with pytest.raises(ScenarioError, match="/schedule/1"):
        from_json(doc, "x.json")


# ---- a patch that only adds steps changes nothing ---------------------------------------
NOOP_PLUGINS = [str(ROOT / "tests" / "plugins" / n) for n in ("noop_steps.py", "noop_list_add.py")]
SHIPPED = [c for c in cases() if not c[0].startswith("sample/")]


def _differences(findings: list[Any]) -> list[Any]:
    """Findings that say the two variants differ (every class but ``shared``: a
    ``shared`` finding is a bug of the base that the no-op plug-in inherits)."""
    return [f for f in findings if f.cls != "shared"]


def _keys(findings: list[Any]) -> set[tuple[str, str | None]]:
    return {(f.cls, f.invariant) for f in findings}


@pytest.mark.parametrize("plugin", NOOP_PLUGINS, ids=lambda p: Path(p).stem)
def test_no_op_steps_give_no_finding_on_any_shipped_scenario(plugin: str) -> None:
    from vmxfuzz.differential import run_both

    assert len(SHIPPED) > 60
    for name, sc, _ in SHIPPED:
        d = run_both(sc, keep_trace=False, pair=("patched", plugin))  # type: ignore[arg-type]
        assert _differences(d.findings) == [], name
        # what is left is patched's own bugs: exactly what patched,patched shows
        same = run_both(sc, keep_trace=False, pair=("patched", "patched"))  # type: ignore[arg-type]
        assert _keys(d.findings) == _keys(same.findings), name


@pytest.mark.parametrize("plugin", NOOP_PLUGINS, ids=lambda p: Path(p).stem)
def test_no_op_steps_give_no_finding_in_a_campaign(plugin: str) -> None:
    """A counted Hypothesis campaign through the campaign's judge (what `vmxfuzz
    fuzz --variant patched,PLUGIN` reports)."""
    from hypothesis import HealthCheck, given, settings

    from vmxfuzz.campaign import judge
    from vmxfuzz.engines.strategies import scenarios

    judged: list[int] = []

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(scenarios(variants=("patched", plugin)))
    def campaign(sc: object) -> None:
        hits = judge(sc, f"patched,{plugin}")  # type: ignore[arg-type]
        judged.append(1)
        assert [h.key for h in hits if h.cls != "shared"] == []
        own = judge(sc, "patched,patched")  # type: ignore[arg-type]
        assert {(h.cls, h.invariant) for h in hits} == {(h.cls, h.invariant) for h in own}

    campaign()
    assert len(judged) >= 60
