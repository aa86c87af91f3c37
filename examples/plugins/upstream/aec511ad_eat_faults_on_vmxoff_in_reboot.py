"""Upstream fix for F05, as a plug-in on the seed (``BASE = "patched"``).

Commit aec511ad153556640fb1de38bfe00c69464f997f, "x86/virt: Eat faults on VMXOFF in
reboot flows", Sean Christopherson, 2020-12-30 (Linux 5.11; ``Fixes: 1e9931146c74``;
reported by David P. Reed).  ``cpu_emergency_vmxoff`` decides from CR4.VMXE alone
whether to VMXOFF, but CR4.VMXE is set before VMXON and cleared after VMXOFF, and the
crash path runs in NMI context: a panic NMI in either window executes VMXOFF outside
VMX operation, a #UD with no fixup, an oops in the crash path (the kdump is lost).
The fix gives the VMXOFF in ``cpu_vmxoff`` an exception-table entry that jumps past
it, and clears CR4.VMXE either way.

File/function: ``arch/x86/include/asm/virtext.h``, ``cpu_vmxoff``.  The 5.6 version is
``/work/.mirror/shmily1012+linux-5.6.4/repo``, same file and function.
"""

from __future__ import annotations

import contextlib
from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.machine.errors import CpuException

BASE = "patched"


def cpu_vmxoff(k: Any) -> Flow:
    """VMXOFF with a fixup that eats the fault; CR4.VMXE cleared even if it faulted."""
    yield "cpu_vmxoff:vmxoff"
    # _ASM_EXTABLE(1b, %l[fault]): a fault jumps to "fault:", the CR4 write below.
    with contextlib.suppress(CpuException):
        k.hw.vmxoff(k.cpu)
    yield from k.f.cr4_clear_bits_vmxe(k)
