"""M06: the VMXON fault path of ``kvm_cpu_vmxon`` forgets to clear CR4.VMXE.

What changed: after a faulting VMXON the fixup path warns, stops PT tracing for VMX
and returns -EFAULT, but no longer calls ``cr4_clear_bits(X86_CR4_VMXE)`` (its two
steps, shadow and register, stay as no-ops).

Why plausible: patch 3/3 adds this error path from scratch; of the two things
``kvm_cpu_vmxon`` did before VMXON (CR4.VMXE, PT), undoing only one is the classic
partial unwind.

What should catch it: ``vmxe-leak`` -- ``hardware_enable()`` returns an error with
CR4.VMXE still set.  Any VMXON fault does it (firmware-disabled VMX on a hot-added CPU,
or an injected #GP).  Reproducer: ``mutants/kills/M06-*.json``.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.state import EFAULT
from vmxfuzz.machine.errors import CpuException

BASE = "patched"
MUTANT = {
    "id": "M06",
    "summary": "kvm_cpu_vmxon: fault path does not clear CR4.VMXE",
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
    yield from k.f.intel_pt_handle_vmx(k, 0)
    # MUTATION: cr4_clear_bits(X86_CR4_VMXE) is gone (its two steps kept)
    yield "cr4_clear_bits:shadow"
    yield "cr4_clear_bits:write_cr4"
    return EFAULT
