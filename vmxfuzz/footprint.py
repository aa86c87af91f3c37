"""Which memory one step of model code reads and writes: the independence relation of
the explorer's sleep sets.

Why by class swap: the model writes plain attributes, so a step's footprint is
recorded by giving every state object a subclass (same name) whose attribute hooks
log ``(object, attribute)`` reads and writes while a step runs -- the poisoning of
freed objects works the same way.  Containers (lists, dicts, sets held in fields) are
compared before and after the step: a changed container is a write of the whole
container.  Anything the hooks cannot see is made conservative: a step that touches
the scheduler or the running context (IPIs, NMIs, task start/exit, the crash path),
that takes a fault decision, or that reaches an untracked mutable object depends on
every other step.  Over-approximating dependence only costs reduction; it never hides
a schedule.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from types import BuiltinMethodType, FunctionType, MethodType
from typing import Any

from .machine.classhooks import hooked_subclass

ATOMS = (type(None), bool, int, float, str, bytes, tuple, frozenset)
CONTAINERS = (list, dict, set, deque)
# Fields of the kernel object whose reads mean "anything may happen here".
GLOBAL_FIELDS = frozenset({"sched", "ctx"})
# Fields of the kernel object the scheduler sets before each step of a flow (which
# CPU and context is stepping): per-step registers, not memory shared between CPUs.
SCHED_REGISTERS = frozenset({"cpu", "ctx"})
# Classes whose instances are tracked (by name: the walk meets them generically).
TRACKED_NAMES = frozenset({"Kernel", "Oracle", "Hardware", "Cpu", "NestedVmx"})
CONSTANT_NAMES = frozenset({"Config", "FaultPlan", "ExploreFaults", "SimpleNamespace", "Op"})
# Objects that log their own accesses (the store buffers: wrote()/read() below).
SELF_LOGGING = frozenset({"WeakMemory"})


@dataclass(eq=False)
class Footprint:
    reads: set[tuple[int, str]] = field(default_factory=set)
    writes: set[tuple[int, str]] = field(default_factory=set)
    containers: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    everything: bool = False

    def close(self) -> Footprint:
        """Turn changed containers into writes (call once, after the step)."""
        for cid, (obj, before) in self.containers.items():
            loc = (cid, "[]")
            if _snapshot(obj) != before:
                self.writes.add(loc)
            else:
                self.reads.add(loc)
        self.containers = {}
        return self

    def translate(self, mapping: dict[int, int]) -> Footprint:
        """The same footprint with object numbers mapped (ids <-> canonical numbers);
        objects the mapping does not know are unreachable there and dropped."""
        if self.everything:
            return self
        return Footprint(
            {(mapping[o], a) for o, a in self.reads if o in mapping},
            {(mapping[o], a) for o, a in self.writes if o in mapping},
        )

    def independent(self, other: Footprint) -> bool:
        if self.everything or other.everything:
            return False
        if self.writes & (other.reads | other.writes):
            return False
        return not (other.writes & self.reads)


EVERYTHING = Footprint(everything=True)
CURRENT: Footprint | None = None


def _snapshot(obj: Any) -> Any:
    if isinstance(obj, dict):
        return [(id(k), _atom(k), id(v), _atom(v)) for k, v in obj.items()]
    if isinstance(obj, set):
        return sorted((id(x), _atom(x)) for x in obj)
    return [(id(x), _atom(x)) for x in obj]


def _atom(v: Any) -> Any:
    return v if isinstance(v, ATOMS) else None


def _note(fp: Footprint, owner: Any, attr: str, val: Any) -> None:
    fp.reads.add((id(owner), attr))
    if isinstance(val, ATOMS) or getattr(type(val), "_tracked", False):
        return
    if isinstance(val, CONTAINERS):
        if id(val) not in fp.containers:
            fp.containers[id(val)] = (val, _snapshot(val))
        return
    if isinstance(val, (FunctionType, MethodType, BuiltinMethodType, type)):
        return
    if type(val).__name__ in CONSTANT_NAMES or type(val).__name__ in SELF_LOGGING:
        return
    fp.everything = True  # an object we do not follow: assume the worst


def _hooks(base: type) -> tuple[Any, Any]:
    """Attribute hooks that log, then do what ``base`` does (a weak-memory class
    forwards buffered stores; a plain one reads the object)."""
    base_get: Any = base.__getattribute__
    base_set: Any = base.__setattr__

    def getattribute(self: Any, attr: str) -> Any:
        val = base_get(self, attr)
        fp = CURRENT
        if fp is not None and not attr.startswith("__"):
            if attr in GLOBAL_FIELDS and type(self).__name__ == "Kernel":
                fp.everything = True
            else:
                _note(fp, self, attr, val)
        return val

    def setattr(self: Any, attr: str, value: Any) -> None:
        fp = CURRENT
        if fp is not None and not (attr in SCHED_REGISTERS and type(self).__name__ == "Kernel"):
            if attr == "__class__":  # freed (poisoned): every field changes meaning
                fp.everything = True
            fp.writes.add((id(self), attr))
        base_set(self, attr, value)

    return getattribute, setattr


def tracked_class(cls: type) -> type:
    if getattr(cls, "_tracked", False) or getattr(cls, "_freed", False):
        return cls
    sub = _TRACKED.get(cls)
    if sub is None:
        sub = _TRACKED[cls] = hooked_subclass(cls, "_tracked", *_hooks(cls))
    return sub


_TRACKED: dict[type, type] = {}  # base class -> its tracked subclass (built once)


def wants_tracking(obj: Any) -> bool:
    cls = type(obj)
    if getattr(cls, "_tracked", False) or getattr(cls, "_freed", False):
        return False
    return cls.__name__ in TRACKED_NAMES or any(c.__name__ == "KObject" for c in cls.__mro__)


def track(obj: Any) -> None:
    """Give ``obj`` its tracked class (idempotent)."""
    object.__setattr__(obj, "__class__", tracked_class(type(obj)))


def begin() -> Footprint:
    global CURRENT
    CURRENT = Footprint()
    return CURRENT


def end() -> Footprint:
    global CURRENT
    fp, CURRENT = CURRENT, None
    return (fp or Footprint(everything=True)).close()


def wrote(obj: Any, attr: str) -> None:
    """Log a write the attribute hooks cannot see (store-buffer commits, fences)."""
    if CURRENT is not None:
        CURRENT.writes.add((id(obj), attr))


def read(obj: Any, attr: str) -> None:
    if CURRENT is not None:
        CURRENT.reads.add((id(obj), attr))


def poison_everything() -> None:
    if CURRENT is not None:
        CURRENT.everything = True
