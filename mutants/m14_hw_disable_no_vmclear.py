"""M14: ``hardware_disable`` does not VMCLEAR the CPU's loaded VMCSes.

What changed: the call ``vmclear_local_loaded_vmcss()`` is gone; ``hardware_disable``
goes straight to ``kvm_cpu_vmxoff()``.

Why plausible: VMXOFF "leaves VMX operation", and it is a common belief that it flushes
the VMCS cache; the SDM says it does not.  A refactor that moves the VMCLEAR walk
"into the crash path where it matters" leaves exactly this.

What should catch it: every path through ``hardware_disable`` now leaves the CPU's
VMCSes active and on the list: ``kexec-active-vmcs`` after an orderly reboot/kexec
(the reboot notifier disables VMX but nothing VMCLEARs), ``use-after-free`` when a vCPU
freed later frees a VMCS still active on an offlined CPU, ``list-corrupt``.
Reproducer: ``mutants/kills/M14-*.json`` (orderly kexec with one vCPU).
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow

BASE = "patched"
MUTANT = {
    "id": "M14",
    "summary": "hardware_disable: vmclear_local_loaded_vmcss() not called",
    "function": "hardware_disable",
    "expect": "kexec-active-vmcs, use-after-free",
    "equivalent": False,
}


def hardware_disable(k: Any) -> Flow:
    # MUTATION: vmclear_local_loaded_vmcss() is gone
    yield from k.f.kvm_cpu_vmxoff(k)
