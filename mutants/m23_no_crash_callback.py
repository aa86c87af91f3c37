"""M23: ``vmx_init`` does not install the crash-time VMCLEAR callback.

What changed: the store ``rcu_assign_pointer(crash_vmclear_loaded_vmcss,
crash_vmclear_local_loaded_vmcss)`` is gone (its step ``vmx_init:rcu_assign_pointer``
stays, as a no-op).

Why plausible: the second seed series reshuffles ``vmx_init`` and ``kvm_init``; an
assignment guarded by ``#ifdef CONFIG_KEXEC_CORE`` at the end of the function is the
easiest line to lose, and nothing but a kdump notices.

What should catch it: the crash path finds a NULL callback and VMCLEARs nothing: any
panic with a vCPU loaded leaves its VMCS active (``kexec-active-vmcs``).
Reproducer: ``mutants/kills/M23-*.json``.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow

BASE = "patched"
MUTANT = {
    "id": "M23",
    "summary": "vmx_init: crash_vmclear_loaded_vmcss callback never assigned",
    "function": "vmx_init",
    "expect": "kexec-active-vmcs",
    "equivalent": False,
}


def vmx_init(k: Any) -> Flow:
    r = yield from k.f.kvm_init(k, k.statics["vmx_init_ops"])
    if r:
        return r
    r = yield from k.f.vmx_setup_l1d_flush(k)
    if r:
        yield from k.f.vmx_exit(k)
        return r
    yield "vmx_init:rcu_assign_pointer"  # MUTATION: the callback is not assigned
    return 0
