"""Every kept reproducer replays with its `expect` block.

A reproducer under tests/regressions/ is a finding pinned forever: if a model change
makes it disappear (or changes its class), this test fails and the change must be
justified against the spec or the kernel source.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from helpers import assert_causes

from vmxfuzz.differential import run_both
from vmxfuzz.scenario import load, schema

ROOT = Path(__file__).resolve().parent.parent
# The shipped examples are replayed by tests/test_examples.py; this file pins the kept
# reproducers.
FILES = sorted((ROOT / "tests" / "regressions").glob("*.json"))


def test_there_are_files_to_replay() -> None:
    assert len(FILES) >= 11


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_replays_with_expected_verdict(path: Path) -> None:
    sc = load(path)
    assert sc.expect is not None, "every shipped scenario states what it must show"
    d = run_both(sc, keep_trace=False)
    assert sorted(d.reference.invariants) == sorted(sc.expect["reference"])
    assert sorted(d.patched.invariants) == sorted(sc.expect["patched"])
    assert sorted({f.cls for f in d.findings}) == sorted(sc.expect["classes"])
    assert_causes(sc, d)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_validates_against_its_schema(path: Path) -> None:
    data = json.loads(path.read_text())
    jsonschema.Draft202012Validator(schema(data["version"])).validate(data)


@pytest.mark.parametrize("path", FILES[:6], ids=lambda p: p.stem)
def test_replay_is_deterministic(path: Path) -> None:
    sc = load(path)
    a, b = run_both(sc), run_both(sc)
    for x, y in ((a.reference, b.reference), (a.patched, b.patched)):
        assert [e.as_list() for e in x.trace] == [e.as_list() for e in y.trace]
        assert x.violations == y.violations
        assert x.op_results == y.op_results


def test_seed_example_is_the_seed_bug() -> None:
    d = run_both(load(ROOT / "examples" / "seed-nmi-in-list-add.json"))
    (f,) = d.findings
    assert (f.cls, f.invariant, f.variant) == ("fixed", "kexec-active-vmcs", "reference")
    assert f.cause == "kexec-active-vmcs/crash-vmclear-disabled"
    assert f.site == "machine_kexec:vmcs@list_add:publish"
    assert f.sites == (("reference", f.site), ("patched", None))
    (v,) = d.reference.violations
    assert v.cpu == 0 and v.context == "crash"
    assert any("vcpu0.vmcs01" in o for o in v.objects)


def test_vmxon_gp_example_restores_cr4_in_patched() -> None:
    from vmxfuzz.executor import run

    sc = load(ROOT / "examples" / "vmxon-gp.json")
    ref, pat = run(sc, "reference"), run(sc, "patched")
    assert ref.op_results == ["0", "oops"]
    assert [v.site for v in ref.violations] == ["kvm_cpu_vmxon:vmxon"]
    assert pat.op_results == ["0", "-EBUSY"]
    assert pat.violations == []
    labels = [e.label for e in pat.trace]
    i = labels.index("kvm_cpu_vmxon:vmxon")
    assert labels[i + 1 : i + 4] == [
        "kvm_cpu_vmxon:warn_rdmsrl_safe",
        "intel_pt_handle_vmx:pt",
        "cr4_clear_bits:shadow",
    ]
