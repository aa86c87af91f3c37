"""M15: ``alloc_loaded_vmcs`` does not set ``loaded_vmcs->cpu = -1``.

What changed: of the initialisation the seed inlined from ``loaded_vmcs_init``, the
store ``cpu = -1`` is gone (its step ``alloc_loaded_vmcs:cpu`` stays, as a no-op).
This is what forgetting ``loaded_vmcs_init()`` altogether amounts to in this model:
``launched`` is already 0 in zeroed memory, and the VMCLEAR of the fresh VMCS is
M16 (unobservable).

Why plausible: inlining ``loaded_vmcs_init`` (patch 2/3) means retyping its stores;
the structure comes from ``kmem_cache_zalloc``, so "zero is the default" hides that
``cpu`` needs -1, not 0.

What should catch it: a new VMCS claims to be loaded on CPU 0.  Created on CPU 0, the
first load takes the ``already_loaded`` path: VMPTRLD without ``list_add``
(``list-corrupt``: active on CPU 0, on no list) and nothing VMCLEARs it at a crash
(``kexec-active-vmcs``).  Created elsewhere, the load IPIs CPU 0, whose ``list_del``
dereferences the never-initialised link (``oops`` in IPI context, a panic).
Reproducer: ``mutants/kills/M15-*.json``.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.state import ENOMEM
from vmxfuzz.kernel.structs import LoadedVmcs

BASE = "patched"
MUTANT = {
    "id": "M15",
    "summary": "alloc_loaded_vmcs: cpu = -1 (the inlined loaded_vmcs_init) dropped",
    "function": "alloc_loaded_vmcs",
    "expect": "list-corrupt, kexec-active-vmcs, oops",
    "equivalent": False,
}


def alloc_loaded_vmcs(k: Any, loaded_vmcs: LoadedVmcs) -> Flow:
    loaded_vmcs.vmcs = yield from k.f.alloc_vmcs_cpu(k, False, k.cpu, loaded_vmcs.name)
    if loaded_vmcs.vmcs is None:
        return ENOMEM
    yield from k.f.vmcs_clear(k, loaded_vmcs.vmcs)
    yield "alloc_loaded_vmcs:init_fields"
    loaded_vmcs.shadow_vmcs = None
    loaded_vmcs.hv_timer_soft_disabled = False
    yield "alloc_loaded_vmcs:cpu"  # MUTATION: the store loaded_vmcs->cpu = -1 is gone
    yield "alloc_loaded_vmcs:launched"
    loaded_vmcs.launched = 0
    if not (yield from k.f.alloc_msr_bitmap(k, loaded_vmcs)):
        yield from k.f.free_loaded_vmcs(k, loaded_vmcs)
        return ENOMEM
    loaded_vmcs.host_state_cached = False
    return 0
