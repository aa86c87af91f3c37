"""The cause analysis (vmxfuzz/causes.py) and findings keyed by cause.

A cause is judged from state and history, so the NMI's placement inside one window
must not change it; distinct routes to the same invariant must not fold together; and
a state no rule explains gets a generic cause and a warning, never an exception.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT

from vmxfuzz.campaign import Campaign, judge
from vmxfuzz.causes import History, explain, is_cause_id
from vmxfuzz.cli import main
from vmxfuzz.differential import run_both
from vmxfuzz.executor import run, start
from vmxfuzz.oracle import Violation
from vmxfuzz.scenario import Scenario, from_json, load
from vmxfuzz.sched import NmiSpec

SEED = ROOT / "examples" / "seed-nmi-in-list-add.json"  # the list_add side
F02 = ROOT / "tests" / "regressions" / "F02-crash-nmi-in-loaded-vmcs-clear.json"  # list_del
DISABLED = "kexec-active-vmcs/crash-vmclear-disabled"


def _window_placements(sc: Scenario) -> list[NmiSpec]:
    """Every NMI placement on CPU 0 inside a crash-VMCLEAR-disabled window of the
    reference run without NMIs: each step after ``crash_disable_local_vmclear`` up to
    and including the ``crash_enable_local_vmclear`` that closes it."""
    r = run(replace(sc, nmis=()), "reference")
    out: list[NmiSpec] = []
    inside = False
    for e in r.trace:
        if e.cpu != 0:
            continue
        if inside:
            out.append(NmiSpec(0, e.label, e.nth))
        if e.label == "crash_disable_local_vmclear:clear_bit":
            inside = True
        elif e.label == "crash_enable_local_vmclear:set_bit":
            inside = False
    return out


@pytest.mark.parametrize("path", [SEED, F02], ids=["list_add", "list_del"])
def test_every_nmi_placement_of_the_seed_window_gives_the_same_cause(path: Path) -> None:
    sc = load(path)
    placements = _window_placements(sc)
    assert len(placements) >= 8, "the window spans the list update and its barriers"
    keys, windows = set(), set()
    for nmi in placements:
        d = run_both(replace(sc, nmis=(nmi,)), keep_trace=False)
        leaks = [v for v in d.reference.violations if v.invariant == "kexec-active-vmcs"]
        if not leaks:  # a window while no VMCS is active on CPU 0 (its first load)
            assert not [f for f in d.findings if f.invariant], nmi
            continue
        assert {v.cause for v in leaks} == {DISABLED}, nmi
        assert not d.patched.violations, "the seed fixes every placement"
        (f,) = d.findings
        keys.add(f.key)
        windows.add(f.window)
    assert keys == {("fixed", "kexec-active-vmcs", DISABLED)}, "one finding"
    assert len(windows) >= 5, "with one window per step it interrupted"


def test_the_two_sides_of_the_seed_bug_are_one_finding(tmp_path: Path) -> None:
    c = Campaign(tmp_path / "c", "reference,patched", minimize_findings=False)
    for path in (SEED, F02):
        sc = load(path)
        for hit in c.new_hits(sc):
            c.record(hit, sc)
    (entry,) = c.findings.values()
    assert entry["cause"] == DISABLED
    assert entry["key"] == f"fixed kexec-active-vmcs {DISABLED}"
    sites = [w["sites"]["reference"] for w in entry["windows"]]
    assert sites == ["machine_kexec:vmcs@list_add:publish", "machine_kexec:vmcs@list_del:unlink"]
    assert all(Path(w["reproducer"]).exists() for w in entry["windows"])
    # the same window again is known: nothing new
    assert c.new_hits(load(F02)) == []


TWO_ROUTES = {
    "format": "vmxfuzz-scenario",
    "version": 2,
    "config": {"cpus": 2, "nested": True},
    "ops": [
        {"op": "module_load", "cpu": 0},
        {"op": "create_vm", "vm": "vm0", "cpu": 0},
        # vcpu0 on CPU 0: a VM entry with shadowing caches its shadow VMCS there.
        {"op": "create_vcpu", "vm": "vm0", "vcpu": "vcpu0", "cpu": 0},
        {"op": "l1_vmxon", "vcpu": "vcpu0", "cpu": 0},
        {"op": "l1_vmptrld", "vcpu": "vcpu0", "cpu": 0},
        # vcpu1 on CPU 1: the panic NMI lands while its shadow is VMPTRLDed for a copy.
        {"op": "create_vcpu", "vm": "vm0", "vcpu": "vcpu1", "cpu": 1},
        {"op": "l1_vmxon", "vcpu": "vcpu1", "cpu": 1},
        {"op": "l1_vmptrld", "vcpu": "vcpu1", "cpu": 1},
        {"op": "l1_vmlaunch", "vcpu": "vcpu1", "cpu": 1},
    ],
    "nmis": [{"cpu": 1, "before": "vmcs_read:vmread", "nth": 1, "kind": "panic"}],
}


def test_a_vmcs_escaping_by_two_routes_gives_two_findings() -> None:
    d = run_both(from_json(TWO_ROUTES), keep_trace=False)
    assert sorted(f.key for f in d.findings) == [
        ("shared", "kexec-active-vmcs", "kexec-active-vmcs/shadow-vmcs-cached-by-vm-entry"),
        ("shared", "kexec-active-vmcs", "kexec-active-vmcs/shadow-vmcs-loaded-for-sync"),
    ]


def test_same_invariant_different_causes_is_what_was_fixed_and_what_was_introduced() -> None:
    """F10: 5.6 oopses on VMXON; the seed handles the fault, and the VMCLEAR after it
    oopses instead.  Not ``shared``: the patch fixed one oops and introduced another."""
    d = run_both(
        load(ROOT / "tests" / "regressions" / "F10-resume-vmxon-fault-leaves-cpu-without-vmx.json")
    )
    by = {f.cls: f for f in d.findings if f.invariant == "oops"}
    assert by["fixed"].cause == "oops/vmxon-fault-without-fixup"
    assert by["regression"].cause == "oops/vmclear-outside-vmx-after-ignored-enable-failure"
    # both variants' causes travel with each finding
    assert dict((n, c) for n, c, _ in by["fixed"].causes) == {
        "reference": "oops/vmxon-fault-without-fixup",
        "patched": "oops/vmclear-outside-vmx-after-ignored-enable-failure",
    }


def test_shared_findings_carry_both_variants_sites() -> None:
    d = run_both(load(ROOT / "tests" / "regressions" / "F05-crash-between-cr4-vmxe-and-vmxon.json"))
    (f,) = d.findings
    assert f.cls == "shared"
    assert f.cause == "oops/emergency-vmxoff-outside-vmx-vmxe-set-before-vmxon"
    doc = f.to_json()
    assert set(doc["variants"]) == {"reference", "patched"}
    assert all(v["site"] == "cpu_vmxoff:vmxoff" for v in doc["variants"].values())
    assert doc["windows"][0]["sites"] == {
        "reference": "cpu_vmxoff:vmxoff",
        "patched": "cpu_vmxoff:vmxoff",
    }


def test_a_state_no_rule_explains_is_unexplained_with_a_warning() -> None:
    r = start(load(SEED), "reference")
    v = Violation("kexec-active-vmcs", "made up", cpu=0, objects=("VMCS nowhere", "CPU 0"))
    with pytest.warns(RuntimeWarning, match="no cause rule explains"):
        c = explain(r.k, History(), v)
    assert c.id == "kexec-active-vmcs/unexplained"
    with pytest.warns(RuntimeWarning):
        assert explain(r.k, History(), replace(v, invariant="new-invariant")).id == (
            "new-invariant/unexplained"
        )


def test_every_pinned_cause_is_a_known_id() -> None:
    files = sorted((ROOT / "tests" / "regressions").glob("*.json"))
    for path in files:
        for ids in load(path).expect["causes"].values():  # type: ignore[index]
            assert all(is_cause_id(c) for c in ids), path.name
    assert not is_cause_id("kexec-active-vmcs/no-such-cause")


@pytest.mark.parametrize("variant", ["reference", "patched"])
def test_pinned_causes_have_a_text_and_consequences_name_cause_ids(variant: str) -> None:
    """A cause's text is prose, and ``consequence_of`` is the id of another cause (the
    differential folds by it), never a text."""
    for path in sorted((ROOT / "tests" / "regressions").glob("*.json")):
        for v in run(load(path), variant, keep_trace=False).violations:
            assert v.cause_text and not is_cause_id(v.cause_text), (path.name, v.cause)
            assert v.consequence_of is None or is_cause_id(v.consequence_of), path.name


def test_resume_reads_an_old_summary_and_finds_its_causes(tmp_path: Path) -> None:
    out = tmp_path / "old"
    out.mkdir()
    repro = out / "001-fixed.json"
    repro.write_text(load(SEED).dumps())
    old = {
        "findings": [
            {
                "class": "fixed",
                "invariant": "kexec-active-vmcs",
                "variant": "reference",
                "site": "machine_kexec:vmcs@list_add:publish",
                "reproducer": str(repro),
                "explanation": "old",
            },
            {
                "class": "shared",
                "invariant": "oops",
                "variant": "both",
                "site": "cpu_vmxoff:vmxoff",
                "reproducer": str(out / "gone.json"),
                "explanation": "its reproducer is gone",
            },
        ]
    }
    (out / "summary.json").write_text(json.dumps(old))
    c = Campaign(out, "reference,patched", minimize_findings=False)
    assert ("fixed", "kexec-active-vmcs", DISABLED) in c.findings
    assert ("shared", "oops", "site:cpu_vmxoff:vmxoff") in c.findings
    assert c.new_hits(load(SEED)) == [], "the old finding's window is known"
    c.write_summary()
    doc = json.loads((out / "summary.json").read_text())
    assert all({"key", "windows"} <= set(f) for f in doc["findings"])


def test_single_variant_hits_carry_causes() -> None:
    (h,) = judge(load(SEED), "reference")
    assert (h.cls, h.cause) == ("violation", DISABLED)
    assert h.window == (("reference", "machine_kexec:vmcs@list_add:publish"),)


# ---- explore verdicts scoped by cause ------------------------------------------------------
F04 = ROOT / "tests" / "regressions" / "F04-crash-walks-uninitialised-list.json"
F04_CAUSE = "oops/uninitialised-loaded-vmcs-list"


def _explore(tmp: Path, name: str, *extra: str) -> tuple[int, dict[str, Any]]:
    out = tmp / name
    argv = ["explore", str(F04), "--variant", "patched", "--nmis", "0", "--out", str(out)]
    code = main([*argv, *extra])
    return code, json.loads((out / "explore.json").read_text())


def test_explore_without_scope_reports_the_known_bug(tmp_path: Path) -> None:
    code, doc = _explore(tmp_path, "plain")
    assert code == 1 and [f["cause"] for f in doc["findings"]] == [F04_CAUSE]
    assert doc["verdicts"]["oops"] == {
        "verdict": "violated",
        "causes": [F04_CAUSE],
        "out_of_scope": [],
    }


@pytest.mark.parametrize(
    "scope",
    [["--known", str(ROOT / "tests" / "regressions")], ["--ignore", F04_CAUSE]],
    ids=["known-reproducers", "ignore"],
)
def test_explore_verdict_scoped_to_everything_but_the_known(
    tmp_path: Path, scope: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, doc = _explore(tmp_path, "scoped", *scope)
    assert code == 0
    assert doc["findings"] == [] and [f["cause"] for f in doc["out_of_scope"]] == [F04_CAUSE]
    assert doc["verdicts"]["oops"]["out_of_scope"] == [F04_CAUSE]
    assert doc["verdicts"]["oops"]["verdict"].startswith("no violation other than")
    assert doc["verdicts"]["kexec-active-vmcs"]["verdict"] == "no violation"
    out = capsys.readouterr().out
    how = "known" if scope[0] == "--known" else "ignored"
    assert f"no violation other than the {how} {F04_CAUSE}, within the bound (" in out


def test_explore_known_from_a_campaign_output(tmp_path: Path) -> None:
    _explore(tmp_path, "first")
    code, doc = _explore(tmp_path, "second", "--known", str(tmp_path / "first"))
    assert code == 0 and doc["scope"]["known_causes"] == [F04_CAUSE]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--ignore", "oops/no-such-cause"], "--ignore: unknown cause 'oops/no-such-cause'"),
        (["--known", "EMPTY"], "--known: not a campaign output"),
        (["--known", "MISSING"], "--known: no such directory"),
    ],
)
def test_explore_scope_bad_input_is_exit_2_one_line(
    tmp_path: Path, extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "EMPTY").mkdir()
    extra = [str(tmp_path / e) if e in ("EMPTY", "MISSING") else e for e in extra]
    argv = ["explore", str(F04), "--variant", "patched", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as e:
        sys.exit(main([*argv, *extra]))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0]
