"""Exceptions the simulated machine raises into model code.

Why exceptions: a fault on real hardware transfers control to an exception handler
that the *calling* kernel code chose (an exception-table fixup, or none).  Raising a
Python exception from the instruction and letting the model's wrapper catch it (or
not) reproduces that choice exactly, with the handler living where the kernel has it.
Anything that escapes to a flow's root is an oops, decided by the scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass


class MachineFault(Exception):
    """A fault raised by hardware or by a kernel BUG; escaping a flow means an oops."""

    reason: str = "fault"

    def __init__(self, detail: str, objects: tuple[str, ...] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.objects = objects


class CpuException(MachineFault):
    """An architectural exception (#UD, #GP, ...) raised by an instruction."""

    def __init__(self, vector: str, detail: str, objects: tuple[str, ...] = ()) -> None:
        super().__init__(f"#{vector}: {detail}", objects)
        self.vector = vector
        self.reason = vector


class NullDeref(MachineFault):
    """A load or store through NULL (a never-initialised list head, a NULL hook)."""

    reason = "null-deref"


class PoisonDeref(MachineFault):
    """A dereference of LIST_POISON after list_del()."""

    reason = "poison-deref"


class UseAfterFree(MachineFault):
    """A touch of an object that was freed (the allocator poisoned it)."""

    reason = "use-after-free"


class KernelBug(MachineFault):
    """BUG()/BUG_ON(): e.g. kvm_spurious_fault() outside of a reboot."""

    reason = "BUG"


class InitdataAfterInit(MachineFault):
    """A use of freed ``__init`` code or ``__initdata`` after module init completed."""

    reason = "initdata-after-init"


@dataclass(frozen=True)
class VmFail:
    """A VMX instruction's VMfail outcome (no exception: flags are set)."""

    kind: str  # "VMfailInvalid" | "VMfailValid"
    detail: str = ""


VM_SUCCEED = None
