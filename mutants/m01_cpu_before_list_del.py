"""M01: ``loaded_vmcs->cpu = -1`` stored before the ``list_del`` in ``__loaded_vmcs_clear``.

What changed: the store ``cpu = -1`` (step ``__loaded_vmcs_clear:cpu``) moves up from
after ``list_del`` + ``smp_wmb()`` to just before the ``list_del``; the barrier now
orders nothing useful.

Why plausible: "mark it unloaded, then unlink it" reads naturally, and the comment
pairing the ``smp_wmb()`` with the ``smp_rmb()`` in ``vmx_vcpu_load_vmcs`` is easy to
miss when tidying the function after the seed moved the VMCLEAR up.

What should catch it: a CPU that reads ``cpu == -1`` while the entry is still on the old
CPU's list skips the clear IPI and ``list_add``s the link onto its own list; the old
CPU's ``list_del`` then unlinks it from the new CPU's list and leaves the old list
malformed.  The reader must run concurrently with a ``__loaded_vmcs_clear`` it did not
request itself: in this model that is only ``vmclear_local_loaded_vmcss`` from the
orderly reboot/kexec notifier, which disables VMX on every CPU by IPI while vCPU threads
keep running (CPU offline and suspend stop the other CPUs first).  Three CPUs: the
kexec, the CPU holding the VMCS, a vCPU load elsewhere.  By then VMX is off on the
reading CPU (its own IPI came first), so no VMCS stays active, and the corrupted lists
are never checked: the run ends in kexec, and lists are judged only at quiescent
points.  What remains observable is that the reader no longer waits for the old CPU:
its ``KVM_RUN`` completes where ``patched``'s is stopped by the kexec (``behaviour``).
Reproducer: ``mutants/kills/M01-*.json``.  (The suite does not check the lists at
kexec; see docs/mutants.md.)
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.structs import LoadedVmcs

BASE = "patched"
MUTANT = {
    "id": "M01",
    "summary": "__loaded_vmcs_clear: cpu = -1 stored before list_del (reordered store)",
    "function": "__loaded_vmcs_clear",
    "expect": "behaviour (the list corruption it causes is not checked before kexec)",
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
    yield "__loaded_vmcs_clear:cpu"
    loaded_vmcs.cpu = -1  # MUTATION: was after list_del + smp_wmb
    yield from k.f.list_del(k, loaded_vmcs.loaded_vmcss_on_cpu_link)
    yield from k.f.smp_wmb(k)
    yield "__loaded_vmcs_clear:launched"
    loaded_vmcs.launched = 0
