"""M07: the VMXON fault path of ``kvm_cpu_vmxon`` forgets ``intel_pt_handle_vmx(0)``.

What changed: after a faulting VMXON, CR4.VMXE is cleared and -EFAULT returned, but
Intel PT is left in its "VMX on" state (the step ``intel_pt_handle_vmx:pt`` stays, as
a no-op).

Why plausible: ``intel_pt_handle_vmx`` is an easily overlooked side call between the
CR4 write and VMXON; the fault path restores the architectural state and forgets the
bookkeeping one.

What should catch it: ``vmxe-leak`` (its PT half) -- ``hardware_enable()`` returns an
error with the PT state changed.  Reproducer: ``mutants/kills/M07-*.json``.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.state import EFAULT
from vmxfuzz.machine.errors import CpuException

BASE = "patched"
MUTANT = {
    "id": "M07",
    "summary": "kvm_cpu_vmxon: fault path does not undo intel_pt_handle_vmx(1)",
    "function": "kvm_cpu_vmxon",
    "expect": "vmxe-leak",
    "equivalent": False,
}


def kvm_cpu_vmxon(k: Any, vmxon_pointer: Any) -> Flow:
    yield from k.f.cr4_set_bits_vmxe(k)
    yield from k.f.intel_pt_handle_vmx(k, 1)
    yield "kvm_cpu_vmxon:vmxon"
    try:
        k.hw.vmxon(k.cpu, vmxon_pointer)  # a VMfail is still not detected
        return 0
    except CpuException:
        pass  # the exception-table fixup
    yield "kvm_cpu_vmxon:warn_rdmsrl_safe"
    k.warn("VMXON faulted, MSR_IA32_FEAT_CTL (0x3a) read")
    yield "intel_pt_handle_vmx:pt"  # MUTATION: intel_pt_handle_vmx(0) is gone
    yield from k.f.cr4_clear_bits_vmxe(k)
    return EFAULT
