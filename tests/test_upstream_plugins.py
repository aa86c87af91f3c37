"""The shipped upstream follow-up fixes (``examples/plugins/upstream/``): replayed against
the seed (``patched``) over every kept reproducer and example, each turns exactly the
findings it targets into ``fixed`` and reports nothing else except the holes it really
leaves (recorded in docs/findings.md, F13).  ``shared`` findings are the ones the fix
does not touch; they are left out of the comparison.

Findings are compared by (class, invariant) per reproducer.  Under the anchored
meaning of a scenario (docs/scenarios.md), F13's early ``KVM_CREATE_VM`` waits for
``/dev/kvm`` in the init-order fix, so the seed -> fix differential shows nothing there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import EXAMPLES, ROOT, example_files
from test_cli import replay

from vmxfuzz.cli import replay_one
from vmxfuzz.scenario import load
from vmxfuzz.variants import build, layer_names

UPSTREAM = EXAMPLES / "plugins" / "upstream"
F04 = UPSTREAM / "dbef2808_crash_cleanup_when_kvm_unused.py"
F05 = UPSTREAM / "aec511ad_eat_faults_on_vmxoff_in_reboot.py"
F08 = UPSTREAM / "a0ee1d5f_flush_shadow_vmcs_on_emergency_reboot.py"
PREP = UPSTREAM / "4f8396b9_kvm_x86_vendor_init.py"
F07 = UPSTREAM / "e32b1200_all_init_before_dev_kvm.py"
DEV_KVM_LAST = UPSTREAM / "2b012812_register_dev_kvm_last.py"
ALL = "+".join(["patched", *(str(p) for p in (F04, F05, F08, DEV_KVM_LAST, PREP, F07))])

REGRESSIONS = ROOT / "tests" / "regressions"
# Reproducers of holes the upstream fixes leave (found by these differentials; both
# built-in variants are clean on them, so they live apart from the built-in pair's).
HOLES = sorted((REGRESSIONS / "upstream").glob("*.json"))
FILES = sorted(REGRESSIONS.glob("*.json")) + HOLES + example_files()

# What each fix changes, per reproducer: (class, invariant); None is "observable results".
F04_FIX = {
    "F04-crash-walks-uninitialised-list": {("fixed", "oops")},
    # F13, the hole dbef2808 leaves: lists initialised after /dev/kvm is registered.
    "F07-vm-survives-failed-module-init": {("regression", "oops"), ("fixed", "use-after-free")},
    "F13-vm-created-before-vmx-init-initialises-the-lists": {("regression", "oops")},
}
F07_FIX = {
    "F04-crash-walks-uninitialised-list": {("fixed", "oops")},  # its BASE chain
    "F07-vm-survives-failed-module-init": {("fixed", "use-after-free")},
}
EXPECTED: dict[str, dict[str, set[tuple[str, str | None]]]] = {
    str(F04): F04_FIX,
    str(F05): {
        "F05-crash-between-cr4-vmxe-and-vmxon": {("fixed", "oops")},
        # F15: the emergency VMXOFF after an undetected VMfail is eaten too.
        "F15-crash-after-undetected-vmxon-vmfail": {("fixed", "oops")},
    },
    str(F08): {
        "F08-crash-leaves-cached-shadow-vmcs": {("fixed", "kexec-active-vmcs")},
        "F09-crash-nmi-in-copy-shadow-to-vmcs12": {("fixed", "kexec-active-vmcs")},
    },
    str(PREP): F04_FIX,  # the series' first steps leave both windows open
    str(F07): F07_FIX,
    # Moves only the syscore ops before misc_register: no kept reproducer reaches that
    # window (explore of module_load || create_vm || suspend found none in 4,000 runs).
    str(DEV_KVM_LAST): {},
    ALL: {
        "F04-crash-walks-uninitialised-list": {("fixed", "oops")},
        "F05-crash-between-cr4-vmxe-and-vmxon": {("fixed", "oops")},
        "F07-vm-survives-failed-module-init": {("fixed", "use-after-free")},
        "F08-crash-leaves-cached-shadow-vmcs": {("fixed", "kexec-active-vmcs")},
        "F09-crash-nmi-in-copy-shadow-to-vmcs12": {("fixed", "kexec-active-vmcs")},
        "F15-crash-after-undetected-vmxon-vmfail": {("fixed", "oops")},
    },
}


def differential(plugin: str) -> dict[str, set[tuple[str, str | None]]]:
    out: dict[str, set[tuple[str, str | None]]] = {}
    names = ["patched", plugin if "+" in plugin else f"patched+{plugin}"]
    for path in FILES:
        _, findings = replay_one(load(path), names)
        got = {(f.cls, f.invariant) for f in findings if f.cls != "shared"}
        if got:
            out[path.stem] = got
    return out


@pytest.mark.parametrize("plugin", list(EXPECTED), ids=lambda p: Path(p.split("+")[-1]).stem)
def test_fix_changes_exactly_what_it_targets(plugin: str) -> None:
    assert differential(plugin) == EXPECTED[plugin]


def test_every_upstream_plugin_is_tested_and_cites_its_commit() -> None:
    shipped = sorted(UPSTREAM.glob("*.py"))
    assert {str(p) for p in shipped} <= set(EXPECTED)
    for path in shipped:
        doc = path.read_text().split('"""')[1]
        commit = path.stem.split("_")[0]
        assert len(commit) == 8 and commit in doc, "the file name starts with the commit id"
        assert "Commit " in doc or "commit" in doc


def test_init_order_fix_overrides_only_what_the_commit_touches() -> None:
    """e32b120071ea touches vmx_init and vmx_exit and adds __vmx_exit: nothing else."""
    base, fix = vars(build(f"patched+{PREP}")), vars(build(f"patched+{F07}"))
    changed = {n for n in fix if fix[n] is not base.get(n)}
    assert changed == {"vmx_init", "vmx_exit", "__vmx_exit"}
    assert layer_names(f"patched+{F07}") == [str(F04.resolve()), str(PREP.resolve()), str(F07)]


def test_all_fixes_compose_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "tests" / "regressions" / "F05-crash-between-cr4-vmxe-and-vmxon.json"
    code, out, err = replay(capsys, str(path), "--variant", f"patched,{ALL}", "--no-trace")
    assert (code, err) == (1, "")
    assert "FINDING fixed: oops in patched at cpu_vmxoff:vmxoff" in out
    assert "-- patched+dbef2808_crash_cleanup_when_kvm_unused+aec511ad_" in out, "short names"


def test_init_order_fix_closes_the_window_the_f04_fix_left(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """dbef2808 -> e32b120071ea: both F13 reproducers are ``fixed``."""
    files = [str(REGRESSIONS / "F07-vm-survives-failed-module-init.json"), *map(str, HOLES)]
    code, out, err = replay(capsys, *files, "--variant", f"{F04},{F07}", "--no-trace")
    assert (code, err) == (1, "")
    fixed = [line for line in out.splitlines() if line.startswith("FINDING")]
    assert len(fixed) == 2 and all(
        line.startswith("FINDING fixed: oops in dbef2808") for line in fixed
    )


def test_holes_replay_clean_on_both_builtin_variants() -> None:
    """What their ``expect`` block says: the hole is the upstream fix's, not 5.6's or the
    seed's."""
    assert HOLES
    for path in HOLES:
        sc = load(path)
        assert sc.expect == {"reference": [], "patched": [], "classes": []}
        _, findings = replay_one(sc, ["reference", "patched"])
        assert findings == []
