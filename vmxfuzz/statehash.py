"""A canonical fingerprint of a whole machine state, for exhaustive exploration.

Why a generic graph walk: the models are plain Python objects and generator flows, so
"the state" is everything reachable from the kernel, the scheduler and the op driver
-- heap objects, per-CPU arrays, the hardware, each context's suspended generator
chain with its local variables, closures of pending waits and queued IPIs.  Two states
get the same fingerprint only if these object graphs are isomorphic (objects are
numbered in first-visit order, so identity and sharing are part of the encoding): the
same future, whatever path led there.  The walk is conservative -- anything it does
not understand is encoded by type and identity order, which can only keep states apart.

Left out on purpose, because they do not change what can happen next: the trace and
step counters, the oracle's list of violations already reported (its state that
decides later verdicts is kept) (a violation is
recorded on the path where it happens), the fault plan's bookkeeping (the explorer
owns fault choices), the op results and the scenario's NMI/schedule lists (the
explorer owns those choices too).  The model's function table and configuration are
the same in every state of one exploration and are encoded by name only.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable
from types import (
    BuiltinMethodType,
    FunctionType,
    GeneratorType,
    MethodType,
    ModuleType,
    SimpleNamespace,
)
from typing import Any

from . import footprint
from .kernel.state import Config
from .machine.faults import FaultPlan

# Attributes that are history, not state (per class name: the walk is generic).
SKIP: dict[str, frozenset[str]] = {
    "Kernel": frozenset({"warnings", "faults", "f", "config", "ctx", "cpu"}),
    "Oracle": frozenset({"violations", "_seen", "kexec_checked", "_k", "history"}),
    "Hardware": frozenset({"faults", "observer"}),
    "Driver": frozenset({"results"}),
    "_Driver": frozenset({"results", "ops"}),
}
SCHED_SKIP = frozenset(
    {
        "trace",
        "events",  # the trace, as tuples
        "tracing",
        "changed",  # the fast path's flag
        "after_step",  # hooks of an observing chooser (the explorer's footprints)
        "on_context_end",
        "last",  # each CPU's latest step, for anchors
        "chooser",  # the decisions: the explorer owns them
        "counts",
        "steps",
        "max_steps",
        "schedule",
        "schedule_pos",
        "nmis",
        "nmi_fired",
        "preempts",
        "preempt_fired",
        "interrupted",
        "nmi_handler",
        "path",  # the explorer's bookkeeping on its scheduler subclass
        "run_ref",
    }
)
ATOMS = (type(None), bool, int, float, str, bytes)


class _Walker:
    def __init__(self, track: bool = False) -> None:
        self.track = track
        self.ids: dict[int, int] = {}
        self.out: list[Any] = []
        self.keep: list[Any] = []  # keep temporaries (f_locals dicts) alive during a walk

    def ref(self, obj: Any) -> bool:
        """Emit a back-reference if ``obj`` was seen; otherwise number it."""
        i = id(obj)
        n = self.ids.get(i)
        if n is not None:
            self.out.append(("@", n))
            return True
        self.ids[i] = len(self.ids)
        self.keep.append(obj)
        return False

    def walk(self, obj: Any) -> None:
        out = self.out
        if isinstance(obj, ATOMS):
            out.append(obj)
            return
        if isinstance(obj, (FaultPlan, Config, SimpleNamespace, type)):
            out.append(("const", type(obj).__name__))
            return
        if self.ref(obj):
            return
        if isinstance(obj, (list, tuple, deque)):
            out.append((type(obj).__name__, len(obj)))
            for x in obj:
                self.walk(x)
        elif isinstance(obj, dict):
            out.append(("dict", len(obj)))
            for key, val in obj.items():
                self.walk(key)
                self.walk(val)
        elif isinstance(obj, (set, frozenset)):
            # Sets iterate in hash order; only atoms are sorted, other members keep a
            # deterministic order per interpreter run (ids differ): conservative.
            items = list(obj)
            out.append(("set", len(items)))
            if all(isinstance(x, ATOMS) for x in items):
                items.sort(key=repr)
            for x in items:
                self.walk(x)
        elif isinstance(obj, GeneratorType):
            self.generator(obj)
        elif isinstance(obj, MethodType):
            out.append(("method", obj.__func__.__qualname__))
            self.walk(obj.__self__)
        elif isinstance(obj, BuiltinMethodType):
            # A bound C method (``box.append`` as a task's completion callback): its
            # name and the object it is bound to.  Its repr would carry the object's
            # address, which differs between runs and processes.
            owner = obj.__self__
            out.append(("builtin", obj.__qualname__))
            if owner is not None and not isinstance(owner, ModuleType):
                self.walk(owner)
        elif isinstance(obj, FunctionType):
            out.append(("fn", obj.__module__, obj.__qualname__))
            for cell in obj.__closure__ or ():
                try:
                    self.walk(cell.cell_contents)
                except ValueError:  # an empty cell
                    out.append("<empty>")
        else:
            self.instance(obj)

    def generator(self, gen: GeneratorType) -> None:
        frame = gen.gi_frame
        if frame is None:
            self.out.append(("gen-done", gen.gi_code.co_qualname))
            return
        self.out.append(("gen", gen.gi_code.co_qualname, frame.f_lasti))
        local = frame.f_locals
        self.keep.append(local)
        for name in sorted(local):
            self.out.append(name)
            self.walk(local[name])
        self.walk(gen.gi_yieldfrom)

    def instance(self, obj: Any) -> None:
        if self.track and footprint.wants_tracking(obj):
            footprint.track(obj)
        cls = type(obj)
        name = cls.__name__
        self.out.append(("obj", cls.__module__, name))
        try:
            fields = object.__getattribute__(obj, "__dict__")
        except AttributeError:
            self.out.append(("opaque", repr(obj)))
            return
        skip = SCHED_SKIP if _is_scheduler(cls) else SKIP.get(name.removeprefix("Freed"))
        for attr, val in fields.items():
            if skip is not None and attr in skip:
                continue
            self.out.append(attr)
            self.walk(val)


# ---- the type-dispatched walk (the one fingerprints use) ----------------------------
# Why a second walker: the generic one above asks ``isinstance`` up to ten times per
# object, and every failed check on a footprint-tracked object runs its Python
# ``__getattribute__`` hook (``obj.__class__``); this one classifies each class once
# and dispatches on ``type(obj)``.  It emits exactly the same encoding (the plain walk
# stays the reference: ``tests/test_explore.py`` checks every fingerprint of an
# exploration equal under both).
_ATOM, _CONST, _SEQ, _DICT, _SET, _GEN, _METHOD, _BUILTIN, _FN, _INST = range(10)
_ATOM_TYPES = frozenset({type(None), bool, int, float, str, bytes})
_KIND: dict[type, int] = {t: _ATOM for t in _ATOM_TYPES}
# Per instance class: (module, name, attributes to skip or None, wants tracking).
_INSTANCE: dict[type, tuple[str, str, frozenset[str] | None, bool]] = {}


def _classify(cls: type) -> int:
    """The branch of :meth:`_Walker.walk` an instance of ``cls`` takes (same order)."""
    if issubclass(cls, ATOMS):
        return _ATOM
    if issubclass(cls, (FaultPlan, Config, SimpleNamespace, type)):
        return _CONST
    if issubclass(cls, (list, tuple, deque)):
        return _SEQ
    if issubclass(cls, dict):
        return _DICT
    if issubclass(cls, (set, frozenset)):
        return _SET
    if issubclass(cls, GeneratorType):
        return _GEN
    if issubclass(cls, MethodType):
        return _METHOD
    if issubclass(cls, BuiltinMethodType):
        return _BUILTIN
    if issubclass(cls, FunctionType):
        return _FN
    return _INST


def _instance_info(cls: type) -> tuple[str, str, frozenset[str] | None, bool]:
    name = cls.__name__
    skip = SCHED_SKIP if _is_scheduler(cls) else SKIP.get(name.removeprefix("Freed"))
    wants = bool(cls.__name__ in footprint.TRACKED_NAMES) or any(
        c.__name__ == "KObject" for c in cls.__mro__
    )
    wants = wants and not getattr(cls, "_tracked", False) and not getattr(cls, "_freed", False)
    info = (cls.__module__, name, skip, wants)
    _INSTANCE[cls] = info
    return info


class _FastWalker:
    """:class:`_Walker`'s encoding, dispatched on the exact type."""

    def __init__(self, track: bool = False) -> None:
        self.track = track
        self.ids: dict[int, int] = {}
        self.out: list[Any] = []
        self.keep: list[Any] = []

    def walk(self, obj: Any) -> None:
        cls = type(obj)
        kind = _KIND.get(cls)
        if kind is None:
            kind = _KIND[cls] = _classify(cls)
        out = self.out
        if kind == _ATOM:
            out.append(obj)
            return
        if kind == _CONST:
            out.append(("const", cls.__name__))
            return
        ids = self.ids
        i = id(obj)
        n = ids.get(i)
        if n is not None:
            out.append(("@", n))
            return
        ids[i] = len(ids)
        self.keep.append(obj)
        walk = self.walk
        if kind == _INST:
            info = _INSTANCE.get(cls) or _instance_info(cls)
            if self.track and info[3]:
                footprint.track(obj)
            out.append(("obj", info[0], info[1]))
            try:
                fields = object.__getattribute__(obj, "__dict__")
            except AttributeError:
                out.append(("opaque", repr(obj)))
                return
            skip = info[2]
            for attr, val in fields.items():
                if skip is not None and attr in skip:
                    continue
                out.append(attr)
                if type(val) in _ATOM_TYPES:
                    out.append(val)
                else:
                    walk(val)
        elif kind == _SEQ:
            out.append((cls.__name__, len(obj)))
            for x in obj:
                if type(x) in _ATOM_TYPES:
                    out.append(x)
                else:
                    walk(x)
        elif kind == _DICT:
            out.append(("dict", len(obj)))
            for key, val in obj.items():
                walk(key)
                walk(val)
        elif kind == _GEN:
            frame = obj.gi_frame
            if frame is None:
                out.append(("gen-done", obj.gi_code.co_qualname))
                return
            out.append(("gen", obj.gi_code.co_qualname, frame.f_lasti))
            local = frame.f_locals
            self.keep.append(local)
            for name in sorted(local):
                out.append(name)
                walk(local[name])
            walk(obj.gi_yieldfrom)
        elif kind == _SET:
            items = list(obj)
            out.append(("set", len(items)))
            if all(isinstance(x, ATOMS) for x in items):
                items.sort(key=repr)
            for x in items:
                walk(x)
        elif kind == _METHOD:
            out.append(("method", obj.__func__.__qualname__))
            walk(obj.__self__)
        elif kind == _BUILTIN:
            owner = obj.__self__
            out.append(("builtin", obj.__qualname__))
            if owner is not None and not isinstance(owner, ModuleType):
                walk(owner)
        else:  # _FN
            out.append(("fn", obj.__module__, obj.__qualname__))
            for cell in obj.__closure__ or ():
                try:
                    contents = cell.cell_contents
                except ValueError:  # an empty cell
                    out.append("<empty>")
                    continue
                walk(contents)


def _is_scheduler(cls: type) -> bool:
    return any(c.__name__ == "Scheduler" for c in cls.__mro__)


def fingerprint(roots: Iterable[Any], extra: Any = None, *, track: bool = False) -> bytes:
    """A 16-byte digest of everything reachable from ``roots`` (plus ``extra``).

    With ``track`` the walk also gives every state object its footprint-recording
    class (:mod:`vmxfuzz.footprint`), so the next step's accesses are logged."""
    return fingerprint_map(roots, extra, track=track)[0]


def fingerprint_map(
    roots: Iterable[Any], extra: Any = None, *, track: bool = False, plain: bool = False
) -> tuple[bytes, dict[int, int]]:
    """The digest and the canonical number of every object (``id`` -> number): the
    same state reached in two runs numbers its objects the same way, which is how
    step footprints measured in one run are compared in another.  ``plain`` uses the
    generic reference walk (:class:`_Walker`) instead of the type-dispatched one."""
    w: _Walker | _FastWalker = _Walker(track) if plain else _FastWalker(track)
    for r in roots:
        w.walk(r)
    w.walk(extra)
    digest = hashlib.blake2b(repr(w.out).encode(), digest_size=16).digest()
    return digest, w.ids
