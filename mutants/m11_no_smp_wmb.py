"""M11: the ``smp_wmb()`` in ``__loaded_vmcs_clear`` is removed.

What changed: the write barrier between the ``list_del`` and ``cpu = -1`` is gone.  Its
step ``smp_wmb:barrier`` stays (as a no-op step), so sequentially consistent runs are
step for step the same as ``patched``'s.

Why plausible: on x86 ``smp_wmb()`` compiles to a compiler barrier only, and the
function has no visible reader of the order; removing "useless" barriers is a
recurring clean-up.

Equivalent in the default mode: under sequential consistency (every scenario without
``config.weak_memory``) a barrier has no effect, so no scenario can tell this mutant
from ``patched``; the default matrix must report it as surviving.  It is killable only
in the **weak-memory mode** (``config.weak_memory``, ``vmxfuzz/machine/weakmem.py``):
there the stores to the list links and to ``loaded_vmcs->cpu`` wait in per-CPU store
buffers and may commit out of order unless an ``smp_wmb()`` marker is between them.
Without the marker, another CPU can see ``cpu == -1`` while the ``list_del`` stores are
still buffered, skip the IPI and ``list_add`` the link onto its own list; the old
CPU's buffered unlink stores then commit over it -- the M01 shape, reached through the
memory system instead of the program order.  As for M01, in this model the only such
reader is a vCPU load racing the reboot notifier's ``hardware_disable``, so expect a
``behaviour`` kill (the reader's ``KVM_RUN`` no longer waits for the old CPU), and
``list-corrupt`` only if a quiescent point follows.  (An x86-TSO mode would not kill it
either: TSO keeps stores in order.)
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.structs import LoadedVmcs

BASE = "patched"
MUTANT = {
    "id": "M11",
    "summary": "__loaded_vmcs_clear: smp_wmb() between list_del and cpu = -1 removed",
    "function": "__loaded_vmcs_clear",
    "expect": "behaviour, list-corrupt (weak-memory mode only)",
    "equivalent": "no effect under sequential consistency; only the weak-memory mode "
    "(config.weak_memory) can kill it",
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
    yield "smp_wmb:barrier"  # MUTATION: smp_wmb() is gone (the step stays, a no-op)
    yield "__loaded_vmcs_clear:cpu"
    loaded_vmcs.cpu = -1
    yield "__loaded_vmcs_clear:launched"
    loaded_vmcs.launched = 0
