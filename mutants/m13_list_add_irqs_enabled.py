"""M13: ``vmx_vcpu_load_vmcs`` does not disable IRQs around the ``list_add``.

What changed: ``local_irq_disable()`` / ``local_irq_enable()`` around the ``smp_rmb()``
and ``list_add`` are gone (their steps stay, as no-ops): IPIs can now be taken in the
middle of the four ``list_add`` stores.

Why plausible: the caller runs with preemption disabled (``get_cpu``), which looks like
enough for a per-CPU list; that an IPI handler (``__loaded_vmcs_clear`` for another
vCPU, or ``hardware_disable`` from the reboot notifier) modifies the same list is not
visible in the function.

What should catch it: another CPU migrating a vCPU whose VMCS is on this CPU's list
sends the ``__loaded_vmcs_clear`` IPI while this CPU is half-way through
``list_add``: the IPI's ``list_del`` and the remaining ``list_add`` stores interleave
and leave a malformed ring (``list-corrupt``), a lost entry whose VMCS is never
VMCLEARed (``kexec-active-vmcs``, ``vmcs-active-on-two-cpus``) or a walk through a
poisoned pointer (``oops``).  Needs two vCPUs, two CPUs and a schedule that lands the
IPI inside the window.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.structs import VcpuVmx

BASE = "patched"
MUTANT = {
    "id": "M13",
    "summary": "vmx_vcpu_load_vmcs: IRQs left enabled around list_add",
    "function": "vmx_vcpu_load_vmcs",
    "expect": "list-corrupt, kexec-active-vmcs, oops",
    "equivalent": False,
}


def vmx_vcpu_load_vmcs(k: Any, vcpu: VcpuVmx, cpu: int) -> Flow:
    vmx = vcpu
    yield "vmx_vcpu_load_vmcs:read_cpu"
    already_loaded = vmx.loaded_vmcs.cpu == cpu
    if not already_loaded:
        yield from k.f.loaded_vmcs_clear(k, vmx.loaded_vmcs)
        yield "local_irq_disable:cli"  # MUTATION: local_irq_disable() is gone
        yield from k.f.smp_rmb(k)
        yield from k.f.list_add(
            k, vmx.loaded_vmcs.loaded_vmcss_on_cpu_link, k.loaded_vmcss_on_cpu[cpu]
        )
        yield "local_irq_enable:sti"  # MUTATION: local_irq_enable() is gone
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
