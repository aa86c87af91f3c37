"""Every invariant of spec section 8: one scenario that triggers it, one that is quiet.

Where the built-in models cannot reach an invariant, a test variant replaces one
function through the namespace (exactly how plug-ins and mutants work).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vmxfuzz.executor import Result, run
from vmxfuzz.kernel.state import Config
from vmxfuzz.machine.faults import FaultSpec
from vmxfuzz.oracle import INVARIANTS
from vmxfuzz.scenario import Op, Scenario, load
from vmxfuzz.variants import build

ROOT = Path(__file__).resolve().parent.parent
REG = ROOT / "tests" / "regressions"
EX = ROOT / "examples"

LOAD, VM = Op("module_load"), Op("create_vm", vm="vm0")


def vcpu(name: str, cpu: int = 0) -> Op:
    return Op("create_vcpu", cpu, vm="vm0", vcpu=name)


def run_on(name: str, cpu: int) -> Op:
    return Op("run_vcpu", cpu, vcpu=name)


MIGRATE = Scenario((LOAD, VM, vcpu("v0"), run_on("v0", 1), run_on("v0", 0)), Config(cpus=2))


def variant(base: str, **overrides: Callable[..., Any]) -> SimpleNamespace:
    return SimpleNamespace(**{**vars(build(base)), **overrides})


def invariants(r: Result) -> set[str]:
    return r.invariants


# ---- kexec-active-vmcs ------------------------------------------------------------------------
def test_kexec_active_vmcs_triggered_by_the_seed_bug() -> None:
    r = run(load(REG / "F01-crash-nmi-in-list-add-skips-vmclear.json"), "reference")
    assert invariants(r) == {"kexec-active-vmcs"}
    (v,) = r.violations
    assert v.cpu == 0 and v.context == "crash" and v.label == "machine_kexec:vmcs@list_add:publish"


def test_kexec_active_vmcs_quiet_after_orderly_kexec() -> None:
    r = run(load(EX / "clean-orderly-kexec.json"), "reference")
    assert r.kexec_checked and r.violations == []


# ---- oops ---------------------------------------------------------------------------------------
def test_oops_triggered_and_located() -> None:
    r = run(load(REG / "F04-crash-walks-uninitialised-list.json"), "patched")
    (v,) = r.violations
    assert (v.invariant, v.site, v.context, v.cpu) == (
        "oops",
        "list_for_each_entry:load",
        "crash",
        0,
    )
    assert r.ended.startswith("oops in crash path")


def test_oops_quiet_without_a_fault() -> None:
    assert run(load(REG / "F04-crash-walks-uninitialised-list.json"), "reference").violations == []


# ---- vmcs-active-on-two-cpus --------------------------------------------------------------------
def _no_clear(k: Any, lv: Any) -> Any:
    """loaded_vmcs_clear that never IPIs the old CPU: migration without VMCLEAR."""
    yield "loaded_vmcs_clear:read_cpu"


def test_vmcs_active_on_two_cpus_triggered() -> None:
    r = run(MIGRATE, "patched", functions=variant("patched", loaded_vmcs_clear=_no_clear))
    assert "vmcs-active-on-two-cpus" in invariants(r)
    v = next(v for v in r.violations if v.invariant == "vmcs-active-on-two-cpus")
    assert v.cpu == 1 and "CPU 0" in v.objects and v.site == "vmcs_load:vmptrld"


def test_vmcs_active_on_two_cpus_quiet_on_migration() -> None:
    for name in ("reference", "patched"):
        assert run(MIGRATE, name).violations == []


# ---- list-corrupt -------------------------------------------------------------------------------
def _clear_without_list_del(k: Any, lv: Any) -> Any:
    yield from k.f.vmcs_clear(k, lv.vmcs)
    lv.cpu = -1
    lv.launched = 0


def test_list_corrupt_triggered() -> None:
    r = run(
        MIGRATE,
        "patched",
        functions=variant("patched", __loaded_vmcs_clear=_clear_without_list_del),
    )
    assert "list-corrupt" in invariants(r)


def test_list_corrupt_quiet() -> None:
    assert "list-corrupt" not in invariants(run(MIGRATE, "reference"))


# ---- use-after-free -----------------------------------------------------------------------------
def _free_without_clear(k: Any, lv: Any) -> Any:
    yield from k.f.free_vmcs(k, lv.vmcs)
    lv.vmcs = None


def test_use_after_free_triggered_vmcs_freed_while_active() -> None:
    sc = Scenario((LOAD, VM, vcpu("v0"), Op("destroy_vm", vm="vm0")), Config(cpus=1))
    r = run(sc, "patched", functions=variant("patched", free_loaded_vmcs=_free_without_clear))
    v = next(v for v in r.violations if v.invariant == "use-after-free")
    assert "freed while active on CPU 0" in v.detail


def test_use_after_free_triggered_by_freed_module_text_in_patched() -> None:
    r = run(load(REG / "F07-vm-survives-failed-module-init.json"), "patched")
    assert invariants(r) == {"use-after-free"}


def test_use_after_free_quiet_on_destroy() -> None:
    sc = Scenario((LOAD, VM, vcpu("v0"), Op("destroy_vm", vm="vm0"), Op("module_unload")))
    assert run(sc, "patched").violations == []


# ---- vmxe-leak ----------------------------------------------------------------------------------
def _vmxon_fault_path_keeps_vmxe(k: Any, vmxon_pointer: Any) -> Any:
    from vmxfuzz.machine.errors import CpuException

    yield from k.f.cr4_set_bits_vmxe(k)
    yield from k.f.intel_pt_handle_vmx(k, 1)
    yield "kvm_cpu_vmxon:vmxon"
    try:
        k.hw.vmxon(k.cpu, vmxon_pointer)
        return 0
    except CpuException:
        pass
    yield from k.f.intel_pt_handle_vmx(k, 0)
    return -14  # forgot cr4_clear_bits(X86_CR4_VMXE)


GP = Scenario((LOAD, VM), Config(cpus=1), faults=(FaultSpec("vmxon", 1, 0, "GP"),))


def test_vmxe_leak_triggered() -> None:
    r = run(GP, "patched", functions=variant("patched", kvm_cpu_vmxon=_vmxon_fault_path_keeps_vmxe))
    (v,) = [v for v in r.violations if v.invariant == "vmxe-leak"]
    assert "CR4.VMXE False->True" in v.detail


def test_vmxe_leak_quiet_in_patched() -> None:
    r = run(GP, "patched")
    assert r.violations == [] and r.op_results == ["0", "-EBUSY"]


# ---- current-vmcs-stale -------------------------------------------------------------------------
def test_current_vmcs_stale_triggered() -> None:
    base = build("patched")

    def clear_keeping_current(k: Any, lv: Any) -> Any:
        cpu = k.cpu
        saved = k.current_vmcs[cpu]
        yield from base.__loaded_vmcs_clear(k, lv)
        k.current_vmcs[cpu] = saved  # forgot: per_cpu(current_vmcs) = NULL

    r = run(
        MIGRATE, "patched", functions=variant("patched", __loaded_vmcs_clear=clear_keeping_current)
    )
    v = next(v for v in r.violations if v.invariant == "current-vmcs-stale")
    assert v.cpu == 0


def test_current_vmcs_stale_quiet() -> None:
    assert "current-vmcs-stale" not in invariants(run(MIGRATE, "patched"))


# ---- hook-before-setup --------------------------------------------------------------------------
def test_hook_before_setup_triggered_in_reference_window() -> None:
    base = build("reference")

    def arch_init_calling_a_hook(k: Any, opaque: Any) -> Any:
        r = yield from base.kvm_arch_init(k, opaque)
        if not r:
            yield from k.f.kvm_x86_call(k, "has_emulated_msr")  # kvm_x86_ops is set already
        return r

    sc = Scenario((LOAD,), Config(cpus=1))
    r = run(sc, "reference", functions=variant("reference", kvm_arch_init=arch_init_calling_a_hook))
    (v,) = [v for v in r.violations if v.invariant == "hook-before-setup"]
    assert "has_emulated_msr" in v.detail


def test_hook_before_setup_quiet_on_normal_load() -> None:
    for name in ("reference", "patched"):
        assert run(Scenario((LOAD, VM), Config(cpus=2)), name).violations == []


# ---- initdata-after-init ------------------------------------------------------------------------
def _vm_init_reading_vmx_x86_ops(k: Any, vm: Any) -> Any:
    yield "vmx_vm_init:l1tf_check"
    k.statics["vmx_x86_ops"].read(k, "run")
    return 0


def test_initdata_after_init_triggered_in_patched() -> None:
    """vmx_x86_ops is __initdata after the seed (patch 8/9): runtime reads are bugs."""
    r = run(
        Scenario((LOAD, VM), Config(cpus=1)),
        "patched",
        functions=variant("patched", vmx_vm_init=_vm_init_reading_vmx_x86_ops),
    )
    assert invariants(r) == {"initdata-after-init"}


def test_initdata_after_init_quiet_in_reference() -> None:
    """In 5.6 vmx_x86_ops is __ro_after_init: the same read is legal."""
    r = run(
        Scenario((LOAD, VM), Config(cpus=1)),
        "reference",
        functions=variant("reference", vmx_vm_init=_vm_init_reading_vmx_x86_ops),
    )
    assert r.violations == []


# ---- hang ---------------------------------------------------------------------------------------
def test_hang_triggered_by_a_lock_held_by_a_dead_task() -> None:
    r = run(load(REG / "F03-vmxon-gp-oops.json"), "reference")
    v = next(v for v in r.violations if v.invariant == "hang")
    assert v.site == "raw_spin_lock:acquire" and "kvm_count_lock" in v.detail
    assert r.ended == "hang"


def test_hang_quiet_in_patched() -> None:
    r = run(load(REG / "F03-vmxon-gp-oops.json"), "patched")
    assert r.violations == [] and r.op_results == ["0", "-EBUSY", "0"]


def test_every_invariant_has_a_trigger_test() -> None:
    names = {n for n in globals() if n.startswith("test_")}
    for inv in INVARIANTS:
        stem = inv.replace("-", "_")
        assert any(stem in n and "triggered" in n for n in names), inv


@pytest.mark.parametrize("inv", sorted(INVARIANTS))
def test_invariant_ids_are_the_spec_ids(inv: str) -> None:
    assert inv in {
        "kexec-active-vmcs",
        "oops",
        "vmcs-active-on-two-cpus",
        "list-corrupt",
        "use-after-free",
        "vmxe-leak",
        "current-vmcs-stale",
        "hook-before-setup",
        "initdata-after-init",
        "hang",
    }
