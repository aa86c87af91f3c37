"""Anchored schedules (format v4): exact conversion, meaning kept across patches that
add steps, and "not applicable" where a variant lacks an anchor."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

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
        assert anchored.version == 4 or not anchored.schedule
        again = run(from_json(json.loads(anchored.dumps()), name), variant)
        assert again.to_json(trace=True) == first.to_json(trace=True), f"{name} on {variant}"


def test_versions_one_to_three_still_load_as_step_schedules() -> None:
    for p in sorted((ROOT / "tests" / "regressions").glob("*.json")):
        sc = load(p)
        assert not sc.anchored and sc.version <= 3


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
