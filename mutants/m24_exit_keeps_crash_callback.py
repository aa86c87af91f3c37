"""M24: ``vmx_exit`` does not clear the crash-time VMCLEAR callback.

What changed: ``RCU_INIT_POINTER(crash_vmclear_loaded_vmcss, NULL)`` is gone (its step
``vmx_exit:clear_crash_callback`` stays, as a no-op); the ``synchronize_rcu()`` and
``kvm_exit()`` are unchanged.

Why plausible: module exit code is rarely exercised; the pointer looks harmless once
every VM is gone and the lists are empty.

What should catch it: after ``rmmod kvm_intel`` a panic calls into the unloaded
module.  The model does not flag the call itself (the crash callback is not a
``kvm_x86_ops`` hook, so the freed-module-text check of ``call_op`` does not see it:
a gap), but the walk it makes is observable: on a CPU where VMX was never enabled the
per-CPU list head was never initialised, and walking it dereferences NULL in the crash
path (``oops``), where ``patched`` calls nothing.  Reproducer:
``mutants/kills/M24-*.json`` (load, unload, panic).
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow

BASE = "patched"
MUTANT = {
    "id": "M24",
    "summary": "vmx_exit: crash_vmclear_loaded_vmcss callback left pointing into the module",
    "function": "vmx_exit",
    "expect": "oops",
    "equivalent": False,
}


def vmx_exit(k: Any) -> Flow:
    yield "vmx_exit:clear_crash_callback"  # MUTATION: the pointer is not cleared
    yield "vmx_exit:synchronize_rcu"
    yield from k.f.kvm_exit(k)
