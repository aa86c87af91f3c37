"""M16: ``alloc_loaded_vmcs`` does not VMCLEAR the freshly allocated VMCS.

What changed: the ``vmcs_clear(loaded_vmcs->vmcs)`` right after the allocation is gone
(its step stays, as a no-op).

Why plausible: the region was just allocated and zeroed, so "there is nothing to
clear" -- but the SDM requires VMCLEAR to initialise a VMCS region (launch state,
implementation-specific data) before its first VMPTRLD.

Almost equivalent in this model: the machine gives a new VMCS region a clear launch
state and no CPU caches it, so a VMCLEAR that succeeds changes nothing it can see.  The
VMCLEAR only matters when it faults, i.e. when VMX is off on this CPU -- which
``patched`` allows after F10 (``kvm_resume`` ignores a VMXON fault).  Then ``patched``
BUGs here (``kvm_spurious_fault``), while the mutant gets further: it sets
``per_cpu(current_vmcs)`` and BUGs at the VMPTRLD, leaving the per-CPU variable naming
a VMCS the CPU does not have (``current-vmcs-stale``).  That is the only way to kill it
(``mutants/kills/M16-*.json``); killing it for its real reason would need a machine
that models an uninitialised VMCS region (a VMPTRLD of a region with no revision
identifier or an undefined launch state), which the spec does not ask for.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.state import ENOMEM
from vmxfuzz.kernel.structs import LoadedVmcs

BASE = "patched"
MUTANT = {
    "id": "M16",
    "summary": "alloc_loaded_vmcs: VMCLEAR of the fresh VMCS dropped",
    "function": "alloc_loaded_vmcs",
    "expect": "current-vmcs-stale (only after F10's ignored VMXON fault)",
    "equivalent": False,
}


def alloc_loaded_vmcs(k: Any, loaded_vmcs: LoadedVmcs) -> Flow:
    loaded_vmcs.vmcs = yield from k.f.alloc_vmcs_cpu(k, False, k.cpu, loaded_vmcs.name)
    if loaded_vmcs.vmcs is None:
        return ENOMEM
    yield "vmcs_clear:vmclear"  # MUTATION: was vmcs_clear(loaded_vmcs->vmcs)
    yield "alloc_loaded_vmcs:init_fields"
    loaded_vmcs.shadow_vmcs = None
    loaded_vmcs.hv_timer_soft_disabled = False
    yield "alloc_loaded_vmcs:cpu"
    loaded_vmcs.cpu = -1
    yield "alloc_loaded_vmcs:launched"
    loaded_vmcs.launched = 0
    if not (yield from k.f.alloc_msr_bitmap(k, loaded_vmcs)):
        yield from k.f.free_loaded_vmcs(k, loaded_vmcs)
        return ENOMEM
    loaded_vmcs.host_state_cached = False
    return 0
