"""M19: ``__loaded_vmcs_clear`` leaves ``per_cpu(current_vmcs)`` pointing at the VMCS.

What changed: the check-and-reset ``if (per_cpu(current_vmcs, cpu) == loaded_vmcs->vmcs)
per_cpu(current_vmcs, cpu) = NULL;`` keeps its load (the step
``__loaded_vmcs_clear:current_vmcs``) but no longer stores NULL.

Why plausible: the VMCLEAR right after it "takes care of" the current pointer in
hardware, so the software copy looks redundant.

What should catch it: ``current-vmcs-stale`` -- after the clear the CPU has no current
VMCS but the per-CPU variable still names the cleared one.  When the vCPU comes back to
that CPU, ``vmx_vcpu_load_vmcs`` skips the VMPTRLD (the variable already matches) and
the VMCS is on the list without being active or current.  Any migration shows it.
Reproducer: ``mutants/kills/M19-*.json``.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.structs import LoadedVmcs

BASE = "patched"
MUTANT = {
    "id": "M19",
    "summary": "__loaded_vmcs_clear: per_cpu(current_vmcs) not reset to NULL",
    "function": "__loaded_vmcs_clear",
    "expect": "current-vmcs-stale",
    "equivalent": False,
}


def __loaded_vmcs_clear(k: Any, loaded_vmcs: LoadedVmcs) -> Flow:
    cpu = k.cpu
    yield "__loaded_vmcs_clear:read_cpu"
    if loaded_vmcs.cpu != cpu:
        return  # vcpu migration can race with cpu offline
    yield "__loaded_vmcs_clear:current_vmcs"
    # MUTATION: per_cpu(current_vmcs, cpu) = NULL is gone
    yield from k.f.vmcs_clear(k, loaded_vmcs.vmcs)
    if loaded_vmcs.shadow_vmcs and loaded_vmcs.launched:
        yield from k.f.vmcs_clear(k, loaded_vmcs.shadow_vmcs)
    yield from k.f.list_del(k, loaded_vmcs.loaded_vmcss_on_cpu_link)
    yield from k.f.smp_wmb(k)
    yield "__loaded_vmcs_clear:cpu"
    loaded_vmcs.cpu = -1
    yield "__loaded_vmcs_clear:launched"
    loaded_vmcs.launched = 0
