"""M04: ``__loaded_vmcs_clear`` does not set ``loaded_vmcs->cpu = -1``.

What changed: the store ``cpu = -1`` is gone (its step ``__loaded_vmcs_clear:cpu``
stays, as a no-op).

Why plausible: after a migration ``vmx_vcpu_load_vmcs`` overwrites ``cpu`` anyway, so
the reset looks redundant -- it is not when the clear comes from
``hardware_disable`` (CPU offline, suspend, reboot), after which nobody loads the
VMCS until the vCPU runs again.

What should catch it: after ``vmclear_local_loaded_vmcss`` (suspend, or a CPU going
offline) the VMCS is off the list but still claims its CPU.  Running the vCPU there
again takes the ``already_loaded`` path: VMPTRLD without ``list_add`` (``list-corrupt``:
active on a CPU whose list does not hold it); running it elsewhere IPIs the old CPU,
whose ``list_del`` follows the poisoned links (``oops``).
Reproducer: ``mutants/kills/M04-*.json`` (suspend, then run the vCPU).
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.structs import LoadedVmcs

BASE = "patched"
MUTANT = {
    "id": "M04",
    "summary": "__loaded_vmcs_clear: cpu = -1 dropped",
    "function": "__loaded_vmcs_clear",
    "expect": "list-corrupt, oops",
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
    yield "__loaded_vmcs_clear:cpu"  # MUTATION: the store loaded_vmcs->cpu = -1 is gone
    yield "__loaded_vmcs_clear:launched"
    loaded_vmcs.launched = 0
