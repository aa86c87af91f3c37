"""M05: ``__loaded_vmcs_clear`` does not reset ``loaded_vmcs->launched``.

What changed: the store ``launched = 0`` is gone (its step
``__loaded_vmcs_clear:launched`` stays, as a no-op).

Why plausible: ``launched`` is set by the entry path and looks like "has this vCPU ever
run", not "what VMCLEAR just did to the VMCS's launch state"; forgetting the reset
when the seed inlined ``loaded_vmcs_init`` into ``__loaded_vmcs_clear`` is an easy slip.

What should catch it: after a migration the VMCS is clear (VMCLEAR on the old CPU) but
KVM still issues VMRESUME: the processor answers VMfailValid and the guest never runs
again.  Userspace sees it: ``KVM_RUN`` returns 0 with ``run->exit_reason =
KVM_EXIT_FAIL_ENTRY``, the op's result in the model, so a ``behaviour`` kill.  (This
mutant first survived every engine: the model used to drop the failed entry on the
floor, a gap closed by making the exit reason observable -- docs/kernel-notes.md.)
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.structs import LoadedVmcs

BASE = "patched"
MUTANT = {
    "id": "M05",
    "summary": "__loaded_vmcs_clear: launched = 0 dropped (VMRESUME of a clear VMCS)",
    "function": "__loaded_vmcs_clear",
    "expect": "behaviour (KVM_EXIT_FAIL_ENTRY)",
    "equivalent": False,
}


def __loaded_vmcs_clear(k: Any, loaded_vmcs: LoadedVmcs) -> Flow:
    cpu = k.cpu
    yield "__loaded_vmcs_clear:read_cpu"
    if loaded_vmcs.cpu != cpu:
        return  # vcpu migration can race with cpu offline
    yield "__loaded_vmcs_clear:current_vmcs"
    if k.current_vmcs[cpu] is loaded_vmcs.vmcs:
        k.current_vmcs[cpu] = None
    yield from k.f.vmcs_clear(k, loaded_vmcs.vmcs)
    if loaded_vmcs.shadow_vmcs and loaded_vmcs.launched:
        yield from k.f.vmcs_clear(k, loaded_vmcs.shadow_vmcs)
    yield from k.f.list_del(k, loaded_vmcs.loaded_vmcss_on_cpu_link)
    yield from k.f.smp_wmb(k)
    yield "__loaded_vmcs_clear:cpu"
    loaded_vmcs.cpu = -1
    yield "__loaded_vmcs_clear:launched"  # MUTATION: the store launched = 0 is gone
