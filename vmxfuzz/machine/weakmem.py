"""Weak-memory mode: per-CPU store buffers that commit late and out of order.

Why store buffers: the question this mode answers is whether the barrier pairing in
``__loaded_vmcs_clear`` (``smp_wmb()`` between the ``list_del`` and ``cpu = -1``) is
needed and sufficient, i.e. whether another CPU can see ``loaded_vmcs->cpu == -1``
before it sees the list unlinked.  The kernel memory model (LKMM) allows stores to
different locations to become visible out of order unless a barrier orders them; a
store buffer per CPU from which any store may commit to memory -- in program order per
location, and never past a write barrier -- gives exactly those executions (the
"PSO" shape), in the operational style of ``Documentation/memory-barriers.txt``.

What is weak: the fields each class lists in ``WEAK_FIELDS`` -- the list links and
``loaded_vmcs->cpu``/``->launched``, the data the barrier pair is about.  Every other
store is sequentially consistent.  Loads are performed in order; a CPU always sees its
own buffered stores (store forwarding).  What orders: ``smp_wmb()`` (a marker no later
store passes), full barriers -- ``smp_mb()``, spinlock and mutex acquire/release, an
IPI's send and its handler's entry and exit, a context switch (a task starting or
ending on a CPU) -- which drain the CPU's buffer.  ``smp_rmb()`` orders loads, which
this mode never reorders; see ``docs/kernel-notes.md`` for why that is enough here.

Memory stores made by a constructor are the zeroed memory of a fresh allocation, not
program stores, and go straight to memory.

When a store commits is a scheduling choice like any other: a scenario names it in
its schedule as ``"sbC"`` (the oldest committable store of CPU C) or ``"sbC.I"`` (the
I-th committable one); without such an entry, buffered stores commit before the next
CPU steps (sequential consistency by default).

IPI delivery is asynchronous in this mode as well: a CPU with IRQs enabled and an IPI
pending may go on executing (``"lateC"`` in the schedule) before it takes the IPI.
Without it every cross-CPU handoff in this code would be an IPI taken at once, a full
barrier each, and no reordering could ever be seen.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any

from .. import footprint
from .classhooks import hooked_subclass

# The memory system of the run being built or stepped (None: sequential consistency).
# Set by the executor for each run; objects created while it is set get weak classes.
ACTIVE: WeakMemory | None = None

COMMIT = re.compile(r"^sb(\d+)(?:\.(\d+))?$")
# Every weak-memory schedule entry: a commit, or a step that leaves an IPI pending.
ACTION = re.compile(r"^(?:sb(\d+)(?:\.\d+)?|late(\d+))$")


def action_cpu(entry: str) -> int:
    """The CPU a weak-memory schedule entry names."""
    m = ACTION.match(entry)
    if m is None:
        raise ValueError(entry)
    return int(m.group(1) or m.group(2))


@dataclass(eq=False)
class Store:
    obj: Any
    attr: str
    value: Any


@dataclass(eq=False)
class Barrier:
    """An ``smp_wmb()`` in the buffer: later stores stay behind earlier ones."""


@dataclass(eq=False)
class WeakMemory:
    ncpus: int
    buffers: list[list[Store | Barrier]] = field(default_factory=list)
    k: Any = None  # the kernel (for the stepping CPU)

    def __post_init__(self) -> None:
        self.buffers = [[] for _ in range(self.ncpus)]

    # ---- what model code does --------------------------------------------------------
    def store(self, obj: Any, attr: str, value: Any) -> None:
        buf = self.buffers[self.k.cpu]
        footprint.wrote(buf, "[]")
        buf.append(Store(obj, attr, value))

    def forwarded(self, obj: Any, attr: str) -> tuple[bool, Any]:
        """The stepping CPU's newest buffered store to ``obj.attr``, if any."""
        buf = self.buffers[self.k.cpu]
        footprint.read(buf, "[]")
        for s in reversed(buf):
            if isinstance(s, Store) and s.obj is obj and s.attr == attr:
                return True, s.value
        return False, None

    def wmb(self, cpu: int) -> None:
        buf = self.buffers[cpu]
        footprint.wrote(buf, "[]")
        if buf and not isinstance(buf[-1], Barrier):
            buf.append(Barrier())

    def fence(self, cpu: int) -> None:
        """A full barrier: everything this CPU stored becomes visible, in order."""
        buf = self.buffers[cpu]
        footprint.wrote(buf, "[]")
        while buf:
            s = buf.pop(0)
            if isinstance(s, Store):
                footprint.wrote(s.obj, s.attr)
                object.__setattr__(s.obj, s.attr, s.value)

    # ---- what the scheduler chooses ---------------------------------------------------
    def committable(self, cpu: int) -> list[int]:
        """Buffer positions that may commit now: no earlier barrier, no earlier store
        to the same location."""
        out: list[int] = []
        seen: list[tuple[Any, str]] = []
        for i, s in enumerate(self.buffers[cpu]):
            if isinstance(s, Barrier):
                break
            if not any(o is s.obj and a == s.attr for o, a in seen):
                out.append(i)
            seen.append((s.obj, s.attr))
        return out

    def actions(self) -> list[str]:
        """Every commit that could happen now, as schedule entries."""
        out: list[str] = []
        for c in range(self.ncpus):
            if not self.buffers[c]:
                continue  # asked before every step: most buffers are empty
            n = len(self.committable(c))
            out += [f"sb{c}" if i == 0 else f"sb{c}.{i}" for i in range(n)]
        return out

    def commit(self, action: str) -> Store:
        m = COMMIT.match(action)
        assert m is not None, action
        cpu, nth = int(m.group(1)), int(m.group(2) or 0)
        pos = self.committable(cpu)[nth]
        buf = self.buffers[cpu]
        s = buf.pop(pos)
        assert isinstance(s, Store)
        footprint.wrote(buf, "[]")
        footprint.wrote(s.obj, s.attr)
        object.__setattr__(s.obj, s.attr, s.value)
        while buf and isinstance(buf[0], Barrier):
            buf.pop(0)
        return s

    def pending(self) -> bool:
        return any(self.buffers)

    def depth(self, cpu: int) -> int:
        """Stores waiting in ``cpu``'s buffer."""
        return sum(isinstance(s, Store) for s in self.buffers[cpu])


def _weak_getattribute(self: Any, attr: str) -> Any:
    mem = ACTIVE
    if mem is not None and attr in type(self).WEAK_FIELDS and mem.k is not None:
        hit, value = mem.forwarded(self, attr)
        if hit:
            return value
    return object.__getattribute__(self, attr)


def _weak_setattr(self: Any, attr: str, value: Any) -> None:
    mem = ACTIVE
    if (
        mem is not None
        and attr in type(self).WEAK_FIELDS
        and mem.k is not None
        and sys._getframe(1).f_code.co_name != "__init__"
    ):
        mem.store(self, attr, value)
        return
    object.__setattr__(self, attr, value)


def weak_class(cls: type) -> type:
    """``cls`` with buffered stores to its ``WEAK_FIELDS`` (same name, for reports)."""
    return hooked_subclass(cls, "_weak", _weak_getattribute, _weak_setattr)


def adopt(obj: Any) -> None:
    """Called for every new kernel object: weak class when the mode is on."""
    if ACTIVE is None:
        return
    cls = type(obj)
    if getattr(cls, "WEAK_FIELDS", None) and not getattr(cls, "_weak", False):
        object.__setattr__(obj, "__class__", weak_class(cls))
