"""M03: ``__loaded_vmcs_clear`` forgets to VMCLEAR ``loaded_vmcs->vmcs``.

What changed: the ``vmcs_clear(loaded_vmcs->vmcs)`` is gone (its step
``vmcs_clear:vmclear`` stays, as a no-op); the shadow VMCLEAR, the ``list_del`` and the
resets are unchanged.

Why plausible: the seed moved the VMCLEAR out of ``loaded_vmcs_init`` into
``__loaded_vmcs_clear``; a rebase that drops the hunk adding it here (while the hunk
deleting ``loaded_vmcs_init`` survives) leaves exactly this.

What should catch it: the VMCS stays active on the old CPU after the entry left that
CPU's list: ``vmcs-active-on-two-cpus`` at the VMPTRLD after a migration,
``list-corrupt`` (active on a CPU but on no list) at the next quiescent point,
``use-after-free`` when the vCPU is freed, ``kexec-active-vmcs`` after a reboot.
Reproducer: ``mutants/kills/M03-*.json`` (a plain migration).
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.structs import LoadedVmcs

BASE = "patched"
MUTANT = {
    "id": "M03",
    "summary": "__loaded_vmcs_clear: VMCLEAR of loaded_vmcs->vmcs dropped",
    "function": "__loaded_vmcs_clear",
    "expect": "vmcs-active-on-two-cpus, list-corrupt, use-after-free",
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
    yield "vmcs_clear:vmclear"  # MUTATION: was vmcs_clear(loaded_vmcs->vmcs)
    if loaded_vmcs.shadow_vmcs and loaded_vmcs.launched:
        yield from k.f.vmcs_clear(k, loaded_vmcs.shadow_vmcs)
    yield from k.f.list_del(k, loaded_vmcs.loaded_vmcss_on_cpu_link)
    yield from k.f.smp_wmb(k)
    yield "__loaded_vmcs_clear:cpu"
    loaded_vmcs.cpu = -1
    yield "__loaded_vmcs_clear:launched"
    loaded_vmcs.launched = 0
