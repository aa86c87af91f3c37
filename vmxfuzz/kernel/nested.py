"""``arch/x86/kvm/vmx/nested.c`` (5.6): the vmcs02 and shadow VMCS lifecycle.

The seed did not change this file's VMCS handling, so it is shared.  What matters
for the crash path: the shadow VMCS is never on a per-CPU list, yet it becomes
active on a CPU whenever ``copy_shadow_to_vmcs12``/``copy_vmcs12_to_shadow`` load it
(until their VMCLEAR) and whenever the processor caches it after a VM entry with
shadowing enabled (until ``__loaded_vmcs_clear`` of vmcs01 VMCLEARs it, which it does
only if vmcs01 was launched).  ``nested_vmx_free_vcpu`` runs for every vCPU, nested
or not (spec section 6.1).
"""

from __future__ import annotations

from typing import Any

from ..machine.errors import NullDeref
from ..machine.memory import KObject
from .list import Flow
from .state import ENOMEM
from .structs import VcpuVmx

VMCS12_SIZE = 4096


def nested_vmx_free_vcpu(k: Any, vcpu: VcpuVmx) -> Flow:
    yield from k.f.vcpu_load(k, vcpu)
    yield from k.f.vmx_leave_nested(k, vcpu)
    yield from k.f.vmx_switch_vmcs(k, vcpu, vcpu.vmcs01)
    yield from k.f.free_nested(k, vcpu)
    yield from k.f.vcpu_put(k, vcpu)


def vmx_leave_nested(k: Any, vcpu: VcpuVmx) -> Flow:
    yield "vmx_leave_nested:is_guest_mode"
    if vcpu.guest_mode:
        yield from k.f.nested_vmx_vmexit(k, vcpu)
    yield from k.f.free_nested(k, vcpu)


def nested_vmx_vmexit(k: Any, vcpu: VcpuVmx, exit_reason: int = -1) -> Flow:
    """Back to L1 on vmcs01; a real exit (not -1, i.e. not a forced leave) re-syncs."""
    yield "nested_vmx_vmexit:leave_guest_mode"
    vcpu.guest_mode = False
    yield from k.f.vmx_switch_vmcs(k, vcpu, vcpu.vmcs01)
    if exit_reason != -1:
        yield "nested_vmx_vmexit:need_sync_rare"
        vcpu.nested.need_sync_vmcs02_to_vmcs12_rare = True
    if exit_reason != -1 and k.config.shadow_vmcs:
        yield "nested_vmx_vmexit:need_sync"
        vcpu.nested.need_vmcs12_to_shadow_sync = True


def free_nested(k: Any, vcpu: VcpuVmx) -> Flow:
    n = vcpu.nested
    yield "free_nested:check_vmxon"
    if not n.vmxon and not n.smm_vmxon:
        return
    yield "free_nested:clear_vmxon"
    n.vmxon = False
    n.smm_vmxon = False
    yield "free_nested:current_vmptr"
    n.current_vmptr = -1
    shadow = vcpu.vmcs01.shadow_vmcs
    if k.config.shadow_vmcs:
        if shadow is None:
            raise NullDeref("free_nested: vmcs01.shadow_vmcs is NULL")
        yield from k.f.vmx_disable_shadow_vmcs(k, vcpu)
        yield from k.f.vmcs_clear(k, shadow)
        yield from k.f.free_vmcs(k, shadow)
        yield "free_nested:shadow_null"
        vcpu.vmcs01.shadow_vmcs = None
    if n.cached_vmcs12 is not None:
        yield "free_nested:kfree_cached_vmcs12"
        k.kfree(n.cached_vmcs12)
        n.cached_vmcs12 = None
    if n.cached_shadow_vmcs12 is not None:
        yield "free_nested:kfree_cached_shadow_vmcs12"
        k.kfree(n.cached_shadow_vmcs12)
        n.cached_shadow_vmcs12 = None
    yield from k.f.free_loaded_vmcs(k, n.vmcs02)


def vmx_disable_shadow_vmcs(k: Any, vcpu: VcpuVmx) -> Flow:
    yield from k.f.vmcs_write(k, "SECONDARY_EXEC_SHADOW_VMCS", False)
    yield from k.f.vmcs_write(k, "VMCS_LINK_POINTER", None)  # -1ull
    yield "vmx_disable_shadow_vmcs:need_sync"
    vcpu.nested.need_vmcs12_to_shadow_sync = False


# ---- L1 VMXON ---------------------------------------------------------------------------
def alloc_shadow_vmcs(k: Any, vcpu: VcpuVmx) -> Flow:
    loaded_vmcs = vcpu.loaded_vmcs
    yield "alloc_shadow_vmcs:read_shadow"
    if loaded_vmcs is vcpu.vmcs01 and loaded_vmcs.shadow_vmcs is not None:
        k.warn("alloc_shadow_vmcs: vmcs01 already has a shadow VMCS")
    if loaded_vmcs.shadow_vmcs is None:
        shadow = yield from k.f.alloc_vmcs_cpu(
            k, True, k.cpu, loaded_vmcs.name, "alloc_shadow_vmcs"
        )
        yield "alloc_shadow_vmcs:set_shadow"
        loaded_vmcs.shadow_vmcs = shadow
        if shadow is not None:
            yield from k.f.vmcs_clear(k, shadow)
    return loaded_vmcs.shadow_vmcs


def _kzalloc(k: Any, site: str, name: str) -> Flow:
    yield f"kzalloc:{site}"
    return None if k.fail(site) else KObject(name)


def enter_vmx_operation(k: Any, vcpu: VcpuVmx) -> Flow:
    n = vcpu.nested
    r = yield from k.f.alloc_loaded_vmcs(k, n.vmcs02)
    if r < 0:
        return ENOMEM
    n.cached_vmcs12 = yield from _kzalloc(k, "alloc_cached_vmcs12", f"{vcpu.name}.cached_vmcs12")
    if n.cached_vmcs12 is None:
        yield from k.f.free_loaded_vmcs(k, n.vmcs02)
        return ENOMEM
    n.cached_shadow_vmcs12 = yield from _kzalloc(
        k, "alloc_cached_shadow_vmcs12", f"{vcpu.name}.cached_shadow_vmcs12"
    )
    if n.cached_shadow_vmcs12 is None:
        yield "enter_vmx_operation:kfree_cached_vmcs12"
        k.kfree(n.cached_vmcs12)
        n.cached_vmcs12 = None
        yield from k.f.free_loaded_vmcs(k, n.vmcs02)
        return ENOMEM
    if k.config.shadow_vmcs and (yield from k.f.alloc_shadow_vmcs(k, vcpu)) is None:
        yield "enter_vmx_operation:kfree_cached_shadow_vmcs12"
        k.kfree(n.cached_shadow_vmcs12)
        n.cached_shadow_vmcs12 = None
        yield "enter_vmx_operation:kfree_cached_vmcs12"
        k.kfree(n.cached_vmcs12)
        n.cached_vmcs12 = None
        yield from k.f.free_loaded_vmcs(k, n.vmcs02)
        return ENOMEM
    yield "enter_vmx_operation:set_vmxon"
    n.vmxon = True
    return 0


def handle_vmon(k: Any, vcpu: VcpuVmx) -> Flow:
    yield "handle_vmon:check"
    if not k.config.nested or vcpu.guest_mode:
        return "L1 #UD"
    if vcpu.nested.vmxon:
        return "VMfailValid"  # VMXON executed in VMX root operation
    r = yield from k.f.enter_vmx_operation(k, vcpu)
    return r if r else "VMsucceed"


# ---- vmcs12 and the shadow VMCS ---------------------------------------------------------------
def copy_shadow_to_vmcs12(k: Any, vcpu: VcpuVmx) -> Flow:
    shadow = vcpu.vmcs01.shadow_vmcs
    if shadow is None:
        k.warn("copy_shadow_to_vmcs12: no shadow VMCS")
        return
    yield from k.f.get_cpu(k)  # preempt_disable
    yield from k.f.vmcs_load(k, shadow)
    yield from k.f.vmcs_read(k, "shadowed fields")
    yield from k.f.vmcs_clear(k, shadow)
    yield from k.f.vmcs_load(k, vcpu.loaded_vmcs.vmcs)
    yield from k.f.put_cpu(k)


def copy_vmcs12_to_shadow(k: Any, vcpu: VcpuVmx) -> Flow:
    shadow = vcpu.vmcs01.shadow_vmcs
    if shadow is None:
        k.warn("copy_vmcs12_to_shadow: no shadow VMCS")
        return
    yield from k.f.vmcs_load(k, shadow)
    yield from k.f.vmcs_write(k, "shadowed fields")
    yield from k.f.vmcs_clear(k, shadow)
    yield from k.f.vmcs_load(k, vcpu.loaded_vmcs.vmcs)


def nested_sync_vmcs12_to_shadow(k: Any, vcpu: VcpuVmx) -> Flow:
    yield from k.f.copy_vmcs12_to_shadow(k, vcpu)
    yield "nested_sync_vmcs12_to_shadow:clear_need_sync"
    vcpu.nested.need_vmcs12_to_shadow_sync = False


def set_current_vmptr(k: Any, vcpu: VcpuVmx, vmptr: int) -> Flow:
    n = vcpu.nested
    yield "set_current_vmptr:current_vmptr"
    n.current_vmptr = vmptr
    if k.config.shadow_vmcs:
        yield from k.f.vmcs_write(k, "SECONDARY_EXEC_SHADOW_VMCS", True)
        yield from k.f.vmcs_write(k, "VMCS_LINK_POINTER", vcpu.vmcs01.shadow_vmcs)
        yield "set_current_vmptr:need_sync"
        n.need_vmcs12_to_shadow_sync = True


def copy_vmcs02_to_vmcs12_rare(k: Any, vcpu: VcpuVmx) -> Flow:
    """After a nested VM exit, vmcs02's rarely used fields are read lazily: load vmcs02
    on this CPU (``list_add`` if it is not loaded here, VMPTRLD), VMREAD, then load
    vmcs01 back."""
    n = vcpu.nested
    yield "copy_vmcs02_to_vmcs12_rare:need_sync"
    if not n.need_sync_vmcs02_to_vmcs12_rare:
        return
    if vcpu.loaded_vmcs is not vcpu.vmcs01:
        k.warn("copy_vmcs02_to_vmcs12_rare: loaded_vmcs is not vmcs01")
    cpu = yield from k.f.get_cpu(k)
    yield "copy_vmcs02_to_vmcs12_rare:set_vmcs02"
    vcpu.loaded_vmcs = n.vmcs02
    yield from k.f.vmx_vcpu_load(k, vcpu, cpu)
    yield from k.f.vmcs_read(k, "rare guest fields")  # sync_vmcs02_to_vmcs12_rare
    yield "copy_vmcs02_to_vmcs12_rare:clear_need_sync"
    n.need_sync_vmcs02_to_vmcs12_rare = False
    yield "copy_vmcs02_to_vmcs12_rare:set_vmcs01"
    vcpu.loaded_vmcs = vcpu.vmcs01
    yield from k.f.vmx_vcpu_load(k, vcpu, cpu)
    yield from k.f.put_cpu(k)


def nested_release_vmcs12(k: Any, vcpu: VcpuVmx) -> Flow:
    n = vcpu.nested
    yield "nested_release_vmcs12:current_vmptr"
    if n.current_vmptr == -1:
        return
    yield from k.f.copy_vmcs02_to_vmcs12_rare(k, vcpu)
    if k.config.shadow_vmcs:
        yield from k.f.copy_shadow_to_vmcs12(k, vcpu)
        yield from k.f.vmx_disable_shadow_vmcs(k, vcpu)
    yield "nested_release_vmcs12:write_guest_page"
    n.current_vmptr = -1


def handle_vmptrld(k: Any, vcpu: VcpuVmx, vmptr: int = 0x1000) -> Flow:
    n = vcpu.nested
    yield "handle_vmptrld:check"
    if not n.vmxon or vcpu.guest_mode:
        return "L1 #UD"
    if n.current_vmptr != vmptr:
        yield from k.f.nested_release_vmcs12(k, vcpu)
        yield from k.f.set_current_vmptr(k, vcpu, vmptr)
    return "VMsucceed"


def handle_vmclear(k: Any, vcpu: VcpuVmx, vmptr: int = 0x1000) -> Flow:
    n = vcpu.nested
    yield "handle_vmclear:check"
    if not n.vmxon or vcpu.guest_mode:
        return "L1 #UD"
    if vmptr == n.current_vmptr:
        yield from k.f.nested_release_vmcs12(k, vcpu)
    yield "handle_vmclear:launch_state"
    n.vmcs12_launched = False
    return "VMsucceed"


def handle_vmoff(k: Any, vcpu: VcpuVmx) -> Flow:
    yield "handle_vmoff:check"
    if not vcpu.nested.vmxon or vcpu.guest_mode:
        return "L1 #UD"
    yield from k.f.free_nested(k, vcpu)
    return "VMsucceed"


# ---- nested VM entry and exit -----------------------------------------------------------
def nested_vmx_enter_non_root_mode(k: Any, vcpu: VcpuVmx) -> Flow:
    yield "enter_guest_mode:set"
    vcpu.guest_mode = True
    yield from k.f.vmx_switch_vmcs(k, vcpu, vcpu.nested.vmcs02)
    yield from k.f.vmcs_write(k, "prepare_vmcs02")


def nested_vmx_run(k: Any, vcpu: VcpuVmx, launch: bool) -> Flow:
    """L1 VMLAUNCH/VMRESUME: sync the shadow into vmcs12, then switch to vmcs02."""
    n = vcpu.nested
    yield "nested_vmx_run:check"
    if not n.vmxon or vcpu.guest_mode:
        return "L1 #UD"
    if n.current_vmptr == -1:
        return "VMfailInvalid"
    if k.config.shadow_vmcs:
        yield from k.f.copy_shadow_to_vmcs12(k, vcpu)
    yield "nested_vmx_run:launch_state"
    if launch == n.vmcs12_launched:
        return "VMfailValid"  # VMLAUNCH with non-clear / VMRESUME with non-launched vmcs12
    yield from k.f.nested_vmx_enter_non_root_mode(k, vcpu)
    yield "nested_vmx_run:set_launched"
    n.vmcs12_launched = True
    return "L2 entered"


def handle_l2_exit(k: Any, vcpu: VcpuVmx) -> Flow:
    """An L2 exit that L0 reflects to L1: ``nested_vmx_vmexit``."""
    yield "handle_l2_exit:check"
    if not vcpu.guest_mode:
        return "not in L2"
    yield from k.f.nested_vmx_vmexit(k, vcpu, 1)  # EXIT_REASON_EXCEPTION_NMI, say
    return "L1 resumed"
