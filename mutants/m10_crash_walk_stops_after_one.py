"""M10: the crash-time VMCLEAR walk stops after the first entry.

What changed: ``crash_vmclear_local_loaded_vmcss`` VMCLEARs the first VMCS on this
CPU's list and leaves the walk (a stray ``break``, or ``list_first_entry`` where a walk
was meant).

Why plausible: "VMCLEAR the current VMCS of this CPU" is a common misreading of what the
crash path needs; with one vCPU per CPU, as in most tests, it is indistinguishable
from the walk.

What should catch it: ``kexec-active-vmcs`` once two VMCSes are loaded on the
panicking (or a shot-down) CPU: two vCPUs created on one CPU, or a vCPU migrated in
while another stays.  Reproducer: ``mutants/kills/M10-*.json``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from vmxfuzz.kernel.list import Flow

BASE = "patched"
MUTANT = {
    "id": "M10",
    "summary": "crash_vmclear_local_loaded_vmcss: walk stops after one VMCLEAR",
    "function": "crash_vmclear_local_loaded_vmcss",
    "expect": "kexec-active-vmcs",
    "equivalent": False,
}


class _Break(Exception):
    """The ``break`` out of ``list_for_each_entry`` (not a machine fault)."""


def crash_vmclear_local_loaded_vmcss(k: Any) -> Flow:
    cpu = k.cpu

    def clear(v: Any) -> Flow:
        yield from k.f.vmcs_clear(k, v.vmcs)
        raise _Break  # MUTATION: leaves the walk after the first VMCLEAR

    with contextlib.suppress(_Break):
        yield from k.f.list_for_each_entry(k, k.loaded_vmcss_on_cpu[cpu], clear)
