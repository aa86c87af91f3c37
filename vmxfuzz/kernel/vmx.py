"""``arch/x86/kvm/vmx/vmx.c`` code the seed did not change (spec section 6.1).

The VMX instruction wrappers model KVM's exception fixups: a #UD/#GP in VMCLEAR,
VMPTRLD, VMREAD, VMWRITE, INVEPT and ``kvm_cpu_vmxoff``'s VMXOFF calls
``kvm_spurious_fault()``, a BUG unless ``kvm_rebooting``; a VMfail only warns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..machine.errors import CpuException, KernelBug, VmFail
from ..machine.hw import Vmcs
from ..machine.memory import KObject
from .list import Flow
from .state import EIO, ENOMEM, EOPNOTSUPP
from .structs import LoadedVmcs, VcpuVmx


# ---- instruction wrappers with exception fixups ----------------------------------------
def kvm_spurious_fault(k: Any, what: str) -> Flow:
    yield "kvm_spurious_fault:check"
    if not k.kvm_rebooting:
        raise KernelBug(f"kvm_spurious_fault: fault on {what} while not rebooting")


def _vmx_insn(k: Any, label: str, what: str, op: Callable[[], VmFail | None]) -> Flow:
    yield label
    try:
        r = op()
    except CpuException as e:
        # The exception-table fixup: BUG unless kvm_rebooting, then skip.
        yield from k.f.kvm_spurious_fault(k, f"{what} ({e.detail})")
        return None
    if r is not None:
        k.warn(f"{what} failed: {r.kind} {r.detail}")
    return r


def vmcs_clear(k: Any, vmcs: Vmcs) -> Flow:
    return (
        yield from _vmx_insn(
            k,
            "vmcs_clear:vmclear",
            f"VMCLEAR {vmcs.describe()}",
            lambda: k.hw.vmclear(k.cpu, vmcs),
        )
    )


def vmcs_load(k: Any, vmcs: Vmcs) -> Flow:
    return (
        yield from _vmx_insn(
            k,
            "vmcs_load:vmptrld",
            f"VMPTRLD {vmcs.describe()}",
            lambda: k.hw.vmptrld(k.cpu, vmcs),
        )
    )


def vmcs_write(k: Any, field: str, value: object = None) -> Flow:
    return (
        yield from _vmx_insn(
            k,
            "vmcs_write:vmwrite",
            f"VMWRITE {field}",
            lambda: k.hw.vmwrite(k.cpu, field, value),
        )
    )


def vmcs_read(k: Any, field: str) -> Flow:
    return (
        yield from _vmx_insn(
            k, "vmcs_read:vmread", f"VMREAD {field}", lambda: k.hw.vmread(k.cpu, field)
        )
    )


def ept_sync_global(k: Any) -> Flow:
    return (yield from _vmx_insn(k, "ept_sync_global:invept", "INVEPT", lambda: k.hw.invept(k.cpu)))


# ---- allocation ---------------------------------------------------------------------------
def alloc_vmcs_cpu(k: Any, shadow: bool, cpu: int, owner: str, site: str = "alloc_vmcs") -> Flow:
    yield "alloc_vmcs_cpu:alloc"
    if k.fail(site):
        return None
    prefix = "shadow_vmcs" if shadow else ("vmxarea" if site == "alloc_vmxarea" else "vmcs")
    return Vmcs(k.new_name(f"{owner}.{prefix}" if owner else prefix), shadow=shadow, owner=owner)


def free_vmcs(k: Any, vmcs: Vmcs) -> Flow:
    yield "free_vmcs:free"
    k.kfree(vmcs)


# ---- the loaded_vmcs lifecycle ------------------------------------------------------------
def loaded_vmcs_clear(k: Any, loaded_vmcs: LoadedVmcs) -> Flow:
    yield "loaded_vmcs_clear:read_cpu"
    cpu = loaded_vmcs.cpu
    if cpu != -1:
        yield from k.f.smp_call_function_single(
            k,
            cpu,
            "__loaded_vmcs_clear",
            lambda: k.f.__loaded_vmcs_clear(k, loaded_vmcs),
        )


def vmclear_local_loaded_vmcss(k: Any) -> Flow:
    cpu = k.cpu
    yield from k.f.list_for_each_entry_safe(
        k, k.loaded_vmcss_on_cpu[cpu], lambda v: k.f.__loaded_vmcs_clear(k, v)
    )


def free_loaded_vmcs(k: Any, loaded_vmcs: LoadedVmcs) -> Flow:
    yield "free_loaded_vmcs:read_vmcs"
    if loaded_vmcs.vmcs is None:
        return
    yield from k.f.loaded_vmcs_clear(k, loaded_vmcs)
    yield from k.f.free_vmcs(k, loaded_vmcs.vmcs)
    yield "free_loaded_vmcs:vmcs_null"
    loaded_vmcs.vmcs = None
    if loaded_vmcs.msr_bitmap is not None:
        yield "free_loaded_vmcs:free_msr_bitmap"
        k.kfree(loaded_vmcs.msr_bitmap)
    if loaded_vmcs.shadow_vmcs is not None:
        k.warn(f"free_loaded_vmcs: {loaded_vmcs.name} still has a shadow VMCS")


def alloc_msr_bitmap(k: Any, loaded_vmcs: LoadedVmcs) -> Flow:
    yield "alloc_loaded_vmcs:alloc_msr_bitmap"
    if k.fail("alloc_msr_bitmap"):
        return False
    loaded_vmcs.msr_bitmap = KObject(f"{loaded_vmcs.name}.msr_bitmap")
    return True


# ---- vCPU load / put / switch ---------------------------------------------------------------
def vmx_vcpu_load(k: Any, vcpu: VcpuVmx, cpu: int) -> Flow:
    yield from k.f.vmx_vcpu_load_vmcs(k, vcpu, cpu)


def vmx_vcpu_put(k: Any, vcpu: VcpuVmx) -> Flow:
    """Nothing here touches VMCS state (posted-interrupt and host-state only)."""
    yield "vmx_vcpu_put:put"


def vmx_switch_vmcs(k: Any, vcpu: VcpuVmx, vmcs: LoadedVmcs) -> Flow:
    yield "vmx_switch_vmcs:compare"
    if vcpu.loaded_vmcs is vmcs:
        return
    cpu = yield from k.f.get_cpu(k)
    yield "vmx_switch_vmcs:set_loaded_vmcs"
    vcpu.loaded_vmcs = vmcs
    yield from k.f.vmx_vcpu_load_vmcs(k, vcpu, cpu)
    yield from k.f.put_cpu(k)


def get_cpu(k: Any) -> Flow:
    yield "get_cpu:preempt_disable"
    k.f.preempt_disable(k)
    return k.cpu


def put_cpu(k: Any) -> Flow:
    """``put_cpu()`` = ``preempt_enable()``: a preemption point (kernel/preempt.py)."""
    yield "put_cpu:preempt_enable"
    yield from k.f.preempt_enable(k)


def init_vmcs(k: Any, vcpu: VcpuVmx) -> Flow:
    yield from k.f.vmcs_write(k, "GUEST_STATE")


def vmx_create_vcpu(k: Any, vm: Any, name: str) -> Flow:
    yield "vmx_create_vcpu:alloc"
    if k.fail("alloc_vcpu"):
        return ENOMEM
    vmx = VcpuVmx(name, vm)
    k.track(vmx.vmcs01)
    k.track(vmx.nested.vmcs02)
    err = yield from k.f.alloc_loaded_vmcs(k, vmx.vmcs01)
    if err < 0:
        yield "vmx_create_vcpu:free_vcpu"
        k.kfree(vmx)
        return err
    yield "vmx_create_vcpu:set_loaded_vmcs"
    vmx.loaded_vmcs = vmx.vmcs01
    cpu = yield from k.f.get_cpu(k)
    yield from k.f.vmx_vcpu_load(k, vmx, cpu)
    yield "vmx_create_vcpu:vcpu_cpu"
    vmx.cpu = cpu
    yield from k.f.init_vmcs(k, vmx)
    yield from k.f.vmx_vcpu_put(k, vmx)
    yield from k.f.put_cpu(k)
    yield "vmx_create_vcpu:alloc_apic_access_page"
    if k.fail("vcpu_setup"):
        yield from k.f.free_loaded_vmcs(k, vmx.loaded_vmcs)
        yield "vmx_create_vcpu:free_vcpu"
        k.kfree(vmx)
        return ENOMEM
    return vmx


def vmx_free_vcpu(k: Any, vcpu: VcpuVmx) -> Flow:
    yield from k.f.nested_vmx_free_vcpu(k, vcpu)
    yield from k.f.free_loaded_vmcs(k, vcpu.loaded_vmcs)
    yield "vmx_free_vcpu:kmem_cache_free"
    k.kfree(vcpu)


def vmx_prepare_switch_to_guest(k: Any, vcpu: VcpuVmx) -> Flow:
    """``vmx.c: vmx_prepare_switch_to_guest`` (5.6.4 and 5.7.14 alike), the
    ``prepare_guest_switch`` hook: the vmcs12 -> shadow VMCS sync runs here, with
    preemption off but IRQs on, so an IPI can land between its shadow VMPTRLD and
    VMCLEAR.  The host-state part (``guest_state_loaded``, HOST_FS/GS VMWRITEs only
    when the selectors changed) is not modelled."""
    yield "vmx_prepare_switch_to_guest:need_vmcs12_to_shadow_sync"
    if vcpu.nested.need_vmcs12_to_shadow_sync:
        yield from k.f.nested_sync_vmcs12_to_shadow(k, vcpu)


def vmx_get_cpl(k: Any, vcpu: VcpuVmx) -> Flow:
    """``vmx_get_cpl`` -> ``vmx_read_guest_seg_ar``: a VMREAD of GUEST_SS_AR_BYTES from
    the current VMCS (the segment cache, emptied at each VM exit, is not modelled: the
    read is taken to happen, the worst case)."""
    yield from k.f.vmcs_read(k, "GUEST_SS_AR_BYTES")
    return 0


def vmx_vcpu_run(k: Any, vcpu: VcpuVmx) -> Flow:
    """VMLAUNCH if ``launched == 0`` else VMRESUME; ``launched = 1`` if entry worked.

    The shadow sync is not here: ``vmx_prepare_switch_to_guest`` did it (the kernel
    only WARNs here if it is still pending)."""
    if vcpu.nested.need_vmcs12_to_shadow_sync:
        k.warn("vmx_vcpu_run: need_vmcs12_to_shadow_sync still set")
    lv = vcpu.loaded_vmcs
    yield "vmx_vcpu_run:read_launched"
    launch = not lv.launched
    r = yield from _vmx_insn(
        k,
        "__vmx_vcpu_run:vmenter",
        "VMLAUNCH" if launch else "VMRESUME",
        lambda: k.hw.vmentry(k.cpu, launch),
    )
    if r is None:
        yield "vmx_vcpu_run:set_launched"
        lv.launched = 1
    return 0 if r is None else -1


# ---- VMXOFF and hardware disable -------------------------------------------------------------
def kvm_cpu_vmxoff(k: Any) -> Flow:
    yield from _vmx_insn(k, "kvm_cpu_vmxoff:vmxoff", "VMXOFF", lambda: k.hw.vmxoff(k.cpu))
    yield from k.f.intel_pt_handle_vmx(k, 0)
    yield from k.f.cr4_clear_bits_vmxe(k)


def hardware_disable(k: Any) -> Flow:
    yield from k.f.vmclear_local_loaded_vmcss(k)
    yield from k.f.kvm_cpu_vmxoff(k)


# ---- init-time checks and setup pieces the seed did not change ---------------------------------
def cpu_has_kvm_support(k: Any) -> Flow:
    yield "cpu_has_kvm_support:cpuid"
    return k.hw.cpus[k.cpu].has_vmx


def vmx_disabled_by_bios(k: Any) -> Flow:
    yield "vmx_disabled_by_bios:rdmsr"
    return not k.hw.cpus[k.cpu].feat_ctl_vmx


def vmx_check_processor_compat(k: Any) -> Flow:
    yield "vmx_check_processor_compat:setup_vmcs_config"
    cpu = k.hw.cpus[k.cpu]
    if not cpu.has_vmx or not cpu.feat_ctl_vmx:
        return EIO
    if cpu.vmx_caps != k.hw.cpus[0].vmx_caps:
        return EIO
    return 0


def alloc_kvm_area(k: Any) -> Flow:
    for cpu in range(len(k.hw.cpus)):  # for_each_possible_cpu
        vmcs = yield from k.f.alloc_vmcs_cpu(k, False, cpu, f"cpu{cpu}", "alloc_vmxarea")
        if vmcs is None:
            yield from k.f.free_kvm_area(k)
            return ENOMEM
        yield "alloc_kvm_area:set_vmxarea"
        k.vmxarea[cpu] = vmcs
    return 0


def free_kvm_area(k: Any) -> Flow:
    for cpu in range(len(k.hw.cpus)):
        area = k.vmxarea[cpu]
        if area is not None:
            yield from k.f.free_vmcs(k, area)
            yield "free_kvm_area:clear_vmxarea"
            k.vmxarea[cpu] = None


def hardware_unsetup(k: Any) -> Flow:
    yield from k.f.free_kvm_area(k)
    return 0


def vmx_vm_init(k: Any, vm: Any) -> Flow:
    yield "vmx_vm_init:l1tf_check"
    return 0


def vmx_has_emulated_msr(k: Any) -> Flow:
    yield "vmx_has_emulated_msr:check"
    return 1


def vmx_setup_l1d_flush(k: Any) -> Flow:
    yield "vmx_setup_l1d_flush:alloc"
    return ENOMEM if k.fail("vmx_setup_l1d_flush") else 0


def vmx_exit(k: Any) -> Flow:
    yield "vmx_exit:clear_crash_callback"
    k.crash_vmclear_loaded_vmcss = None  # RCU_INIT_POINTER(..., NULL)
    yield "vmx_exit:synchronize_rcu"
    yield from k.f.kvm_exit(k)


__all__ = ["EOPNOTSUPP"]
