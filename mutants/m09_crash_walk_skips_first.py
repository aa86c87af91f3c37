"""M09: the crash-time VMCLEAR walk skips the first entry of the per-CPU list.

What changed: ``crash_vmclear_local_loaded_vmcss`` walks the list as before but does not
VMCLEAR the first entry it visits (an off-by-one, e.g. starting with
``list_for_each_entry_continue`` from the first entry); its VMCLEAR step stays, as a
no-op.

Why plausible: once the seed removed the bitmap test, the function is a bare walk that
is easy to "simplify" with the wrong iterator; a test with one VM on an idle CPU never
notices.

What should catch it: ``kexec-active-vmcs`` -- the most recently loaded VMCS on any CPU
(``list_add`` puts it first) is still active when the kdump kernel starts.  Any panic
with a vCPU loaded does it.  Reproducer: ``mutants/kills/M09-*.json``.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow

BASE = "patched"
MUTANT = {
    "id": "M09",
    "summary": "crash_vmclear_local_loaded_vmcss: first list entry not VMCLEARed",
    "function": "crash_vmclear_local_loaded_vmcss",
    "expect": "kexec-active-vmcs",
    "equivalent": False,
}


def _skipped() -> Flow:
    yield "vmcs_clear:vmclear"  # the first entry's VMCLEAR, not executed


def crash_vmclear_local_loaded_vmcss(k: Any) -> Flow:
    cpu = k.cpu
    visited = [0]

    def clear(v: Any) -> Flow:
        visited[0] += 1
        if visited[0] == 1:  # MUTATION: the first entry is skipped
            return _skipped()
        return k.f.vmcs_clear(k, v.vmcs)

    yield from k.f.list_for_each_entry(k, k.loaded_vmcss_on_cpu[cpu], clear)
