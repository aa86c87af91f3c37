"""M20: ``__loaded_vmcs_clear`` VMCLEARs after the ``list_del`` again (5.6's order).

What changed: the VMCLEAR of ``loaded_vmcs->vmcs`` (and of its shadow) moves from
before the ``list_del`` back to after ``list_del`` + ``smp_wmb()``, where 5.6's
``loaded_vmcs_init`` did it.

Why plausible: it is the order of the code before the seed and of
``loaded_vmcs_init``; a rebase or a revert of patch 2/3 that keeps patch 1/3's bitmap
removal produces it (compare ``examples/plugins/drop_bitmap_only.py``, the same
mistake on top of 5.6).

What should catch it: with the bitmap gone, nothing tells the crash walk that an entry
left the list before it was VMCLEARed.  An NMI panic on that CPU between the unlink
and the VMCLEAR (``list_del:poison_next``, ``smp_wmb:barrier``, ...) leaves the VMCS
active: ``kexec-active-vmcs``.  Reproducer: ``mutants/kills/M20-*.json``.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.structs import LoadedVmcs

BASE = "patched"
MUTANT = {
    "id": "M20",
    "summary": "__loaded_vmcs_clear: VMCLEAR moved back after list_del (5.6 order)",
    "function": "__loaded_vmcs_clear",
    "expect": "kexec-active-vmcs",
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
    yield from k.f.list_del(k, loaded_vmcs.loaded_vmcss_on_cpu_link)
    yield from k.f.smp_wmb(k)
    # MUTATION: the VMCLEARs were before the list_del
    yield from k.f.vmcs_clear(k, loaded_vmcs.vmcs)
    if loaded_vmcs.shadow_vmcs and loaded_vmcs.launched:
        yield from k.f.vmcs_clear(k, loaded_vmcs.shadow_vmcs)
    yield "__loaded_vmcs_clear:cpu"
    loaded_vmcs.cpu = -1
    yield "__loaded_vmcs_clear:launched"
    loaded_vmcs.launched = 0
