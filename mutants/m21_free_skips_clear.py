"""M21: ``free_loaded_vmcs`` frees the VMCS without ``loaded_vmcs_clear()`` first.

What changed: the call ``loaded_vmcs_clear(loaded_vmcs)`` (read ``cpu``, IPI the CPU
where it is loaded, VMCLEAR and unlink there) is gone; the VMCS is freed directly.

Why plausible: "the vCPU is being destroyed, nothing runs it any more" -- but its VMCS
is still cached by the CPU it last ran on and its link is still on that CPU's list.

What should catch it: ``use-after-free`` -- the VMCS is freed while active on a CPU,
and the freed ``loaded_vmcs`` link stays on the per-CPU list for the next walk or
``list_add`` to touch.  Any VM destruction after a vCPU ran shows it.  Reproducer:
``mutants/kills/M21-*.json``.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.structs import LoadedVmcs

BASE = "patched"
MUTANT = {
    "id": "M21",
    "summary": "free_loaded_vmcs: loaded_vmcs_clear() not called before the free",
    "function": "free_loaded_vmcs",
    "expect": "use-after-free",
    "equivalent": False,
}


def free_loaded_vmcs(k: Any, loaded_vmcs: LoadedVmcs) -> Flow:
    yield "free_loaded_vmcs:read_vmcs"
    if loaded_vmcs.vmcs is None:
        return
    # MUTATION: loaded_vmcs_clear(loaded_vmcs) is gone
    yield from k.f.free_vmcs(k, loaded_vmcs.vmcs)
    yield "free_loaded_vmcs:vmcs_null"
    loaded_vmcs.vmcs = None
    if loaded_vmcs.msr_bitmap is not None:
        yield "free_loaded_vmcs:free_msr_bitmap"
        k.kfree(loaded_vmcs.msr_bitmap)
    if loaded_vmcs.shadow_vmcs is not None:
        k.warn(f"free_loaded_vmcs: {loaded_vmcs.name} still has a shadow VMCS")
