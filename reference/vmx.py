"""``arch/x86/kvm/vmx/vmx.c`` (Linux 5.6): the functions the seed changes."""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.state import EBUSY, ENOMEM
from vmxfuzz.kernel.structs import KStruct, LoadedVmcs, VcpuVmx, hook

RUNTIME_HOOKS = {
    "hardware_unsetup": "hardware_unsetup",
    "hardware_enable": "hardware_enable",
    "hardware_disable": "hardware_disable",
    "vm_init": "vmx_vm_init",
    "vcpu_create": "vmx_create_vcpu",
    "vcpu_free": "vmx_free_vcpu",
    "vcpu_load": "vmx_vcpu_load",
    "vcpu_put": "vmx_vcpu_put",
    "prepare_guest_switch": "vmx_prepare_switch_to_guest",
    "run": "vmx_vcpu_run",
    "get_cpl": "vmx_get_cpl",
    "has_emulated_msr": "vmx_has_emulated_msr",
    "check_nested_events": None,
}


def vmx_static_data(k: Any) -> None:
    """``static struct kvm_x86_ops vmx_x86_ops __ro_after_init = { ... }``."""
    k.statics["vmx_x86_ops"] = KStruct(
        "vmx_x86_ops",
        "__ro_after_init",
        {
            "cpu_has_kvm_support": "cpu_has_kvm_support",
            "disabled_by_bios": "vmx_disabled_by_bios",
            "hardware_setup": "hardware_setup",
            "check_processor_compatibility": "vmx_check_processor_compat",
            **RUNTIME_HOOKS,
        },
    )


# ---- crash-time VMCLEAR, guarded by a per-CPU bitmap -----------------------------------------
def crash_vmclear_local_loaded_vmcss(k: Any) -> Flow:
    cpu = k.cpu
    yield "crash_vmclear_local_loaded_vmcss:test_bit"
    if cpu not in k.crash_vmclear_enabled_bitmap:  # !crash_local_vmclear_enabled(cpu)
        return
    yield from k.f.list_for_each_entry(
        k, k.loaded_vmcss_on_cpu[cpu], lambda v: k.f.vmcs_clear(k, v.vmcs)
    )


def crash_enable_local_vmclear(k: Any, cpu: int) -> Flow:
    yield "crash_enable_local_vmclear:set_bit"
    k.crash_vmclear_enabled_bitmap.add(cpu)


def crash_disable_local_vmclear(k: Any, cpu: int) -> Flow:
    yield "crash_disable_local_vmclear:clear_bit"
    k.crash_vmclear_enabled_bitmap.discard(cpu)


def loaded_vmcs_init(k: Any, loaded_vmcs: LoadedVmcs) -> Flow:
    yield from k.f.vmcs_clear(k, loaded_vmcs.vmcs)
    if loaded_vmcs.shadow_vmcs and loaded_vmcs.launched:
        yield from k.f.vmcs_clear(k, loaded_vmcs.shadow_vmcs)
    yield "loaded_vmcs_init:cpu"
    loaded_vmcs.cpu = -1
    yield "loaded_vmcs_init:launched"
    loaded_vmcs.launched = 0


def __loaded_vmcs_clear(k: Any, loaded_vmcs: LoadedVmcs) -> Flow:
    cpu = k.cpu
    yield "__loaded_vmcs_clear:read_cpu"
    if loaded_vmcs.cpu != cpu:
        return  # vcpu migration can race with cpu offline
    yield "__loaded_vmcs_clear:current_vmcs"
    if k.current_vmcs[cpu] is loaded_vmcs.vmcs:
        k.current_vmcs[cpu] = None
    yield from k.f.crash_disable_local_vmclear(k, cpu)
    yield from k.f.list_del(k, loaded_vmcs.loaded_vmcss_on_cpu_link)
    yield from k.f.smp_wmb(k)
    yield from k.f.loaded_vmcs_init(k, loaded_vmcs)
    yield from k.f.crash_enable_local_vmclear(k, cpu)


def alloc_loaded_vmcs(k: Any, loaded_vmcs: LoadedVmcs) -> Flow:
    loaded_vmcs.vmcs = yield from k.f.alloc_vmcs_cpu(k, False, k.cpu, loaded_vmcs.name)
    if loaded_vmcs.vmcs is None:
        return ENOMEM
    yield "alloc_loaded_vmcs:init_fields"
    loaded_vmcs.shadow_vmcs = None
    loaded_vmcs.hv_timer_soft_disabled = False
    yield from k.f.loaded_vmcs_init(k, loaded_vmcs)
    if not (yield from k.f.alloc_msr_bitmap(k, loaded_vmcs)):
        yield from k.f.free_loaded_vmcs(k, loaded_vmcs)
        return ENOMEM
    loaded_vmcs.host_state_cached = False
    return 0


def vmx_vcpu_load_vmcs(k: Any, vcpu: VcpuVmx, cpu: int) -> Flow:
    vmx = vcpu
    yield "vmx_vcpu_load_vmcs:read_cpu"
    already_loaded = vmx.loaded_vmcs.cpu == cpu
    if not already_loaded:
        yield from k.f.loaded_vmcs_clear(k, vmx.loaded_vmcs)
        yield from k.f.local_irq_disable(k)
        yield from k.f.crash_disable_local_vmclear(k, cpu)
        yield from k.f.smp_rmb(k)
        yield from k.f.list_add(
            k, vmx.loaded_vmcs.loaded_vmcss_on_cpu_link, k.loaded_vmcss_on_cpu[cpu]
        )
        yield from k.f.crash_enable_local_vmclear(k, cpu)
        yield from k.f.local_irq_enable(k)
    yield "vmx_vcpu_load_vmcs:read_current_vmcs"
    if k.current_vmcs[cpu] is not vmx.loaded_vmcs.vmcs:
        yield "vmx_vcpu_load_vmcs:set_current_vmcs"
        k.current_vmcs[cpu] = vmx.loaded_vmcs.vmcs
        yield from k.f.vmcs_load(k, vmx.loaded_vmcs.vmcs)
    if not already_loaded:
        yield from k.f.vmcs_write(k, "HOST_TR_BASE")
        yield from k.f.vmcs_write(k, "HOST_GDTR_BASE")
        yield from k.f.vmcs_write(k, "HOST_IA32_SYSENTER_ESP")
        yield "vmx_vcpu_load_vmcs:set_cpu"
        vmx.loaded_vmcs.cpu = cpu


# ---- VMXON and hardware enable ---------------------------------------------------------------
def kvm_cpu_vmxon(k: Any, addr: Any) -> Flow:
    yield from k.f.cr4_set_bits_vmxe(k)
    yield from k.f.intel_pt_handle_vmx(k, 1)
    yield "kvm_cpu_vmxon:vmxon"
    k.hw.vmxon(k.cpu, addr)  # no exception fixup; a VMfail goes unnoticed


def hardware_enable(k: Any) -> Flow:
    """``vmx.c: hardware_enable`` (shmily1012/linux-5.6.4): the per-CPU VMCS list, the
    posted-interrupt wakeup list ``blocked_vcpu_on_cpu`` and its lock are initialised
    here, on every enable, before the crash bit is set and VMXON runs."""
    cpu = k.cpu
    phys_addr = k.vmxarea[cpu]
    yield "hardware_enable:cr4_read_shadow"
    if k.cpu_state().cr4_shadow_vmxe:
        return EBUSY
    yield from k.f.INIT_LIST_HEAD(k, k.loaded_vmcss_on_cpu[cpu])
    yield from k.f.INIT_LIST_HEAD(k, k.blocked_vcpu_on_cpu[cpu])
    yield from k.f.spin_lock_init(k, f"blocked_vcpu_on_cpu_lock[{cpu}]")
    yield from k.f.crash_enable_local_vmclear(k, cpu)
    yield from k.f.kvm_cpu_vmxon(k, phys_addr)
    if k.config.ept:
        yield from k.f.ept_sync_global(k)
    return 0


# ---- setup and module init ------------------------------------------------------------------
def hardware_setup(k: Any) -> Flow:
    yield "hardware_setup:setup_vmcs_config"
    k.vmcs_config_populated = True
    if k.config.nested:
        yield "nested_vmx_hardware_setup:set_hooks"
        ops = k.kvm_x86_ops  # runtime hooks are adjusted through kvm_x86_ops
        hook(ops, k, "check_nested_events")
        ops.write(k, "check_nested_events", "vmx_check_nested_events")
    r = yield from k.f.alloc_kvm_area(k)
    if r:
        return r
    return 0


def vmx_init(k: Any) -> Flow:
    r = yield from k.f.kvm_init(k, k.statics["vmx_x86_ops"])
    if r:
        return r
    r = yield from k.f.vmx_setup_l1d_flush(k)
    if r:
        yield from k.f.vmx_exit(k)
        return r
    yield "vmx_init:rcu_assign_pointer"
    k.crash_vmclear_loaded_vmcss = "crash_vmclear_local_loaded_vmcss"
    return 0
