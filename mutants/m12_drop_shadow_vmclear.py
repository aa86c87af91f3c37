"""M12: ``__loaded_vmcs_clear`` forgets the VMCLEAR of the shadow VMCS.

What changed: the conditional ``vmcs_clear(loaded_vmcs->shadow_vmcs)`` (when a shadow
VMCS exists and the VMCS was launched) no longer runs; its step stays, as a no-op.

Why plausible: the shadow VMCS is on no list and looks like nested's business;
patch 2/3 of the seed removed the "same" shadow VMCLEAR from ``alloc_loaded_vmcs``
(where it was dead code), and removing it here too looks like the same clean-up.

What should catch it: with nested VMX and VMCS shadowing, a VM entry of vmcs01 lets
the processor cache the shadow VMCS on that CPU; only this VMCLEAR evicts it.  After a
migration the shadow stays active on the old CPU: ``vmcs-active-on-two-cpus`` when
``copy_shadow_to_vmcs12`` VMPTRLDs it on the new one; after an orderly reboot/kexec
(whose ``hardware_disable`` clears every loaded VMCS) ``kexec-active-vmcs`` (shadow);
``use-after-free`` when ``free_nested`` frees it while it is active elsewhere.
Reproducer: ``mutants/kills/M12-*.json``.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.structs import LoadedVmcs

BASE = "patched"
MUTANT = {
    "id": "M12",
    "summary": "__loaded_vmcs_clear: VMCLEAR of the shadow VMCS dropped",
    "function": "__loaded_vmcs_clear",
    "expect": "kexec-active-vmcs, vmcs-active-on-two-cpus, use-after-free",
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
        yield "vmcs_clear:vmclear"  # MUTATION: was vmcs_clear(loaded_vmcs->shadow_vmcs)
    yield from k.f.list_del(k, loaded_vmcs.loaded_vmcss_on_cpu_link)
    yield from k.f.smp_wmb(k)
    yield "__loaded_vmcs_clear:cpu"
    loaded_vmcs.cpu = -1
    yield "__loaded_vmcs_clear:launched"
    loaded_vmcs.launched = 0
