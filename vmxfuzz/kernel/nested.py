"""``arch/x86/kvm/vmx/nested.c`` (5.6), the parts the vCPU free path always runs.

``nested_vmx_free_vcpu`` runs for every vCPU, nested or not (spec section 6.1): it
loads the vCPU on the current CPU, which may IPI the old CPU and ``list_add`` here.
"""

from __future__ import annotations

from typing import Any

from .list import Flow
from .structs import VcpuVmx


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


def nested_vmx_vmexit(k: Any, vcpu: VcpuVmx) -> Flow:
    yield "nested_vmx_vmexit:leave_guest_mode"
    vcpu.guest_mode = False
    yield from k.f.vmx_switch_vmcs(k, vcpu, vcpu.vmcs01)


def free_nested(k: Any, vcpu: VcpuVmx) -> Flow:
    n = vcpu.nested
    yield "free_nested:check_vmxon"
    if not n.vmxon and not n.smm_vmxon:
        return
    yield "free_nested:clear_vmxon"
    n.vmxon = False
    n.smm_vmxon = False
    shadow = vcpu.vmcs01.shadow_vmcs
    if k.config.shadow_vmcs and shadow is not None:
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
    yield from k.f.vmcs_write(k, "VMCS_LINK_POINTER", None)
