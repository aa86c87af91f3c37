"""A candidate patch, as a variant plug-in: 5.6 with the crash bitmap removed, but
``__loaded_vmcs_clear`` left in its 5.6 order (unlink first, VMCLEAR after).

This is "half of patch 1/3": the crash walk no longer skips a CPU whose bitmap bit is
clear, but a VMCS unlinked from the list and not yet VMCLEARed is invisible to it.
Run it against 5.6 and against the real patch:

    vmxfuzz replay tests/regressions/F02-crash-nmi-in-loaded-vmcs-clear.json \\
        --variant patched,examples/plugins/drop_bitmap_only.py

It only replaces functions its base has, so it needs no declarations (see
``vmxfuzz.plugin`` for ``@new_function`` and ``override``), and it composes:
``--variant reference+examples/plugins/drop_bitmap_only.py`` is the same variant.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow

BASE = "reference"


def crash_vmclear_local_loaded_vmcss(k: Any) -> Flow:
    """Walk this CPU's list unconditionally (no bitmap)."""
    cpu = k.cpu
    yield from k.f.list_for_each_entry(
        k, k.loaded_vmcss_on_cpu[cpu], lambda v: k.f.vmcs_clear(k, v.vmcs)
    )


def crash_enable_local_vmclear(k: Any, cpu: int) -> Flow:
    """The bitmap is gone: nothing to set (kept so callers need no change)."""
    yield "crash_enable_local_vmclear:set_bit"


def crash_disable_local_vmclear(k: Any, cpu: int) -> Flow:
    yield "crash_disable_local_vmclear:clear_bit"
