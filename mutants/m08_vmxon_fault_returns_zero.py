"""M08: the VMXON fault path of ``kvm_cpu_vmxon`` returns 0 instead of -EFAULT.

What changed: the fixup path undoes PT and CR4.VMXE as it should, then returns 0.

Why plausible: the function used to return nothing (5.6's ``kvm_cpu_vmxon`` is
``void``); when converting it to return an error, a path that "handles" the fault
and falls through to the success return is an easy slip.

What should catch it: ``hardware_enable`` believes VMX is on.  With EPT it executes
INVEPT outside VMX operation: #UD, ``kvm_spurious_fault()``, a BUG (``oops``); without
EPT the next VMCLEAR/VMPTRLD on that CPU does the same.  ``patched`` instead fails the
VM creation with -EBUSY.  Reproducer: ``mutants/kills/M08-*.json``.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.machine.errors import CpuException

BASE = "patched"
MUTANT = {
    "id": "M08",
    "summary": "kvm_cpu_vmxon: fault path returns 0 (error swallowed)",
    "function": "kvm_cpu_vmxon",
    "expect": "oops",
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
    yield from k.f.intel_pt_handle_vmx(k, 0)
    yield from k.f.cr4_clear_bits_vmxe(k)
    return 0  # MUTATION: was -EFAULT
