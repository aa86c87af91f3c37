"""M17: ``hardware_enable`` initialises the per-CPU list only after VMXON succeeded.

What changed: ``INIT_LIST_HEAD(&per_cpu(loaded_vmcss_on_cpu, cpu))`` moves from before
``kvm_cpu_vmxon()`` to after its error check.

Why plausible: "set up per-CPU VMX state once VMX is really on" reads well, and with
patch 3/3 ``kvm_cpu_vmxon`` can fail, which invites moving setup behind the check.

What should catch it: since the seed the crash path walks every CPU's list without the
bitmap guard.  A CPU whose VMXON faulted now keeps a never-initialised (zeroed) head,
and a later panic walks it: NULL dereference in the crash path (``oops``), where
``patched`` walks an empty list.  Reproducer: ``mutants/kills/M17-*.json`` (VMXON #GP
on the first VM creation, then a panic).
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.state import EBUSY

BASE = "patched"
MUTANT = {
    "id": "M17",
    "summary": "hardware_enable: INIT_LIST_HEAD moved after a successful VMXON",
    "function": "hardware_enable",
    "expect": "oops",
    "equivalent": False,
}


def hardware_enable(k: Any) -> Flow:
    cpu = k.cpu
    phys_addr = k.vmxarea[cpu]
    yield "hardware_enable:cr4_read_shadow"
    if k.cpu_state().cr4_shadow_vmxe:
        return EBUSY
    r = yield from k.f.kvm_cpu_vmxon(k, phys_addr)
    if r:
        return r
    # MUTATION: INIT_LIST_HEAD was before kvm_cpu_vmxon()
    yield from k.f.INIT_LIST_HEAD(k, k.loaded_vmcss_on_cpu[cpu])
    if k.config.ept:
        yield from k.f.ept_sync_global(k)
    return 0
