"""Where an NMI can go in one scenario: every step both variants execute, and the
windows among them, derived from a first run of the scenario.

Why from a recorded run and not from a list of functions: a window is a property of
what the code did, so it is found the same way in a plug-in or a mutant the list
would not know.  Three kinds, each named after what makes a half-done state
observable only to an NMI (or another CPU):

* **masked**: steps taken with IRQs off (between ``local_irq_disable``/``save`` and
  the matching enable/restore) or in IPI context -- no schedule can put an IPI or a
  task switch there, only an NMI comes in;
* **interior**: a step whose CPU's previous step was in the same function, i.e.
  between two observable actions (stores, instructions) of one function invocation
  -- a paired store half done;
* **after-hw**: the first steps after an action that changed the CPU's architectural
  state (CR4.VMXE, VMX operation, the current-VMCS pointer, the VMCS cache, PT) --
  between a hardware state change and the software's record of it.

The same windows also place *other CPUs* (and the IPIs they send) inside a half-done
state: :func:`stop_points` records a run in which one CPU goes first and lists, per
kind, the steps after which stopping that CPU leaves its next step in a window; an
anchored schedule (format v4) stops it there and lets another CPU run, so an IPI that
CPU sends lands between the two steps (IPI delivery timing is a schedule choice).

``repeat`` is the window steps this CPU has executed before (``nth >= 2``): the first
time a CPU runs a path it rarely has anything to lose, the second time the first
one's state is there.  The pools only weight the choice; ``all`` keeps every step
reachable.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from itertools import pairwise
from typing import Any

from ..executor import start
from ..machine.hw import Cpu, Hardware
from ..scenario import Scenario
from ..sched import RunEntry, TraceEvent

Point = tuple[int, str, int]

_IRQS_OFF = frozenset({"local_irq_disable:cli", "local_irq_save:cli"})
_IRQS_ON = frozenset({"local_irq_enable:sti", "local_irq_restore:popf"})
AFTER_HW_STEPS = 3  # how many steps after a hardware change count as its window


def _hw_state(cpu: Cpu) -> tuple[Any, ...]:
    """The architectural state a VMX-layer step can change on its own CPU."""
    return (
        cpu.cr4_vmxe,
        cpu.vmx_root,
        id(cpu.current_vmcs),
        tuple(sorted((id(v), s) for v, s in cpu.cache.items())),
        cpu.pt_vmx_off,
    )


@cache
def _instructions() -> tuple[str, ...]:
    """The hardware's per-CPU operations: public methods whose first parameter is the
    CPU (``vmxon(c, ...)``, ``write_cr4_vmxe(c, ...)``, ...), found by signature."""
    out = []
    for name, fn in inspect.getmembers(Hardware, inspect.isfunction):
        params = list(inspect.signature(fn).parameters)
        if not name.startswith("_") and len(params) > 1 and params[1] == "c":
            out.append(name)
    return tuple(out)


def recorded_run(
    base: Scenario,
    variant: str,
    choices: dict[int, tuple[int, ...]] | None = None,
) -> tuple[list[TraceEvent], set[Point]]:
    """Run ``base`` once; its trace and the steps right after a hardware change.

    Each per-CPU hardware operation of this run is wrapped to compare the CPU's
    architectural state before and after it; a change marks the trace position, and
    the next :data:`AFTER_HW_STEPS` steps of that CPU are the window.  (The run keeps
    the core's fast path: nothing is asked per step.)
    """
    r = start(base, variant)
    hw = r.k.hw
    marks: list[tuple[int, int]] = []  # (cpu, index of the first step after the change)

    def watched(op: Callable[..., Any]) -> Callable[..., Any]:
        def call(c: int, *args: Any, **kwargs: Any) -> Any:
            before = _hw_state(hw.cpus[c])
            out = op(c, *args, **kwargs)
            if _hw_state(hw.cpus[c]) != before:
                marks.append((c, len(r.sched.events)))
            return out

        return call

    for name in _instructions():
        setattr(hw, name, watched(getattr(hw, name)))
    if choices is not None:  # trace position -> the CPUs runnable at a choice point there
        chooser = r.sched.chooser
        ask = chooser.schedule

        def schedule(runnable: list[int], actions: list[str]) -> int | str:
            choices[len(r.sched.events)] = tuple(runnable)
            return ask(runnable, actions)

        chooser.schedule = schedule  # type: ignore[method-assign]
        # no stints: the core must ask at every choice point (same answers, by the
        # stint's own promise), or the choice points it decides alone go unrecorded
        chooser.stint = lambda cpu: None  # type: ignore[method-assign]
    trace = r.finish().trace
    after: set[Point] = set()
    for cpu, at in marks:
        left = AFTER_HW_STEPS
        for e in trace[at:]:
            if left == 0:
                break
            if e.cpu == cpu and e.context not in ("crash", "mem"):
                after.add((e.cpu, e.label, e.nth))
                left -= 1
    return trace, after


def _fn(label: str) -> str:
    return label.split(":", 1)[0]


@dataclass
class _Windows:
    masked: set[Point] = field(default_factory=set)
    interior: set[Point] = field(default_factory=set)
    after_hw: set[Point] = field(default_factory=set)


def windows(trace: list[TraceEvent], after_hw: set[Point]) -> _Windows:
    """Classify the steps of one recorded run (see the module docstring)."""
    out = _Windows(after_hw=set(after_hw))
    off: dict[int, bool] = defaultdict(bool)
    prev: dict[int, tuple[str, str]] = {}  # cpu -> (context name, function) of its last step
    for e in trace:
        if e.context in ("crash", "mem"):
            continue
        p = (e.cpu, e.label, e.nth)
        if off[e.cpu] or e.context == "ipi":
            out.masked.add(p)
        if e.label in _IRQS_OFF:
            off[e.cpu] = True
        elif e.label in _IRQS_ON:
            off[e.cpu] = False
        where = (e.name, _fn(e.label))
        if prev.get(e.cpu) == where:
            out.interior.add(p)
        prev[e.cpu] = where
    return out


def _points(trace: list[TraceEvent]) -> list[Point]:
    return [(e.cpu, e.label, e.nth) for e in trace if e.context not in ("crash", "mem")]


POOL_ORDER = ("repeat", "window", "all")


@dataclass(frozen=True)
class NmiTargets:
    """Where an NMI can go in one scenario: every common step, and its windows."""

    all: list[Point]
    masked: list[Point]
    interior: list[Point]
    after_hw: list[Point]
    window: list[Point]  # the union of the three kinds
    repeat: list[Point]  # window steps this CPU executed before (nth >= 2)
    contexts: dict[Point, str]  # point -> "context:name" of the first variant's run

    @classmethod
    def of(cls, base: Scenario, variants: tuple[str, ...]) -> NmiTargets:
        runs = [recorded_run(base, v) for v in variants]
        first = _points(runs[0][0])
        common = set(first).intersection(*(set(_points(t)) for t, _ in runs[1:]))
        points = [p for p in first if p in common]
        w = windows(*runs[0])
        for t, marks in runs[1:]:  # a window in either variant is a window
            other = windows(t, marks)
            w.masked |= other.masked
            w.interior |= other.interior
            w.after_hw |= other.after_hw
        masked = [p for p in points if p in w.masked]
        interior = [p for p in points if p in w.interior]
        after_hw = [p for p in points if p in w.after_hw]
        union = w.masked | w.interior | w.after_hw
        window = [p for p in points if p in union]
        strong = w.masked | w.after_hw
        repeat = [p for p in window if p[2] >= 2 and p in strong]
        contexts = {
            (e.cpu, e.label, e.nth): f"{e.context}:{e.name}"
            for e in runs[0][0]
            if e.context not in ("crash", "mem")
        }
        return cls(points, masked, interior, after_hw, window, repeat, contexts)

    def pool(self, name: str) -> list[Point]:
        """The named pool, or ``all`` while it is empty."""
        chosen: list[Point] = getattr(self, name)
        return list(chosen) if chosen else list(self.all)


def nmi_points(base: Scenario, variants: tuple[str, ...]) -> list[Point]:
    """The ``(cpu, label, nth)`` steps every requested variant executes, in order.

    The atheris decoder indexes this list, so its order is part of the corpus format.
    """
    return NmiTargets.of(base, variants).all


STOP_KINDS = ("after_hw", "interior", "masked", "all")


def stop_points(base: Scenario, variant: str, cpu: int) -> dict[str, list[tuple[str, int]]]:
    """Where to stop ``cpu`` so that the other CPUs run in its half-done state.

    ``base`` is run once with ``cpu`` first wherever it can step (an anchored run);
    each of its steps after which another CPU could step is a stop, filed under the
    window kinds of the step it would take next (``after_hw``: between a hardware
    change and the software's record of it; ``interior``: between two actions of one
    function; ``masked``: IRQs off, only memory races and NMIs get in) and under
    ``all``.  A stop is ``(label, nth)``, the
    anchor of :class:`~vmxfuzz.sched.RunEntry` (nth counted per CPU, as the trace's).
    """
    choices: dict[int, tuple[int, ...]] = {}
    solo = replace(base, schedule=(RunEntry(cpu),), nmis=())
    trace, after = recorded_run(solo, variant, choices=choices)
    w = windows(trace, after)
    mine = [
        (i, e) for i, e in enumerate(trace) if e.cpu == cpu and e.context not in ("crash", "mem")
    ]
    out: dict[str, list[tuple[str, int]]] = {k: [] for k in STOP_KINDS}
    for (i, e), (_, nxt) in pairwise(mine):
        if not any(c != cpu for c in choices.get(i + 1, ())):
            continue  # nobody else could step here: stopping changes nothing
        after_step = (nxt.cpu, nxt.label, nxt.nth)
        stop = (e.label, e.nth)
        out["all"].append(stop)
        for kind in ("after_hw", "interior", "masked"):
            if after_step in getattr(w, kind):
                out[kind].append(stop)
    return out
