"""What a campaign's runs covered: shapes per example, a coverage map per campaign,
and the novelty score that steers the Hypothesis engine.

Why from the runs and not from the scenarios: a scenario *asks* for a race (two ops
in one group, an NMI at a step), the run shows whether it happened (the ops'
steps interleaved, the NMI fired inside module init).  The executor hands every
finished run to :data:`vmxfuzz.executor.OBSERVERS` with its trace, so this costs
no extra execution.

* :func:`shapes`: the concurrency shapes one example exercised -- which flows ran
  concurrently (``race: module_unload || create_vm``), where each NMI and fault hit
  (``nmi: panic in task:module_load``), nested VMX with shadowing, weak memory.
  Engines count them (Hypothesis ``event()``, ``summary.json`` ``shapes``).
* :class:`CoverageMap`: per variant the model functions and labels reached, the
  pairs of flows that ran concurrently, the NMI and fault sites hit; it lists what
  was not reached, against the catalogue of the variant's labels and the fault
  sites.  ``summary.json`` ``coverage`` and ``vmxfuzz report`` show it.
* :meth:`CoverageMap.add` returns the novelty of a run -- how many (label, context)
  pairs, pairs of concurrently active functions and abstract end states the map had
  not seen -- which the Hypothesis engine passes to ``target()``.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from . import executor
from .executor import Result, Run
from .labels import labels_in_source
from .machine.faults import SITES
from .sched import TraceEvent


@dataclass
class Observed:
    """The runs finished while :func:`observing` was active."""

    runs: list[tuple[Run, Result]] = field(default_factory=list)

    def __call__(self, r: Run, result: Result) -> None:
        self.runs.append((r, replace(result)))  # a copy: the caller may drop its trace


@contextmanager
def observing() -> Iterator[Observed]:
    """Collect every run the executor finishes inside the ``with`` block."""
    seen = Observed()
    executor.OBSERVERS.append(seen)
    try:
        yield seen
    finally:
        executor.OBSERVERS.remove(seen)


def _fn(label: str) -> str:
    return label.split(":", 1)[0]


@dataclass(frozen=True)
class Span:
    """One flow's stretch of steps on one CPU: a task (an op), an IPI or an NMI."""

    cpu: int
    what: str  # "op" for a task, "ipi:name" / "nmi" otherwise
    first: int
    last: int


def spans(
    trace: list[TraceEvent], unfinished: frozenset[tuple[int, str]] = frozenset()
) -> list[Span]:
    """Each flow's lifetime on its CPU, in trace order: a task from its first to its
    last step (an IPI or NMI taken in between does not end it: the task is still in
    the middle of its flow), an interrupt handler over its consecutive steps.  A task
    in ``unfinished`` (``(cpu, op)`` never returned: the machine stopped under it)
    lives to the end of the run."""
    out: list[Span] = []
    tasks: dict[int, list[Any]] = {}
    irqs: dict[int, list[Any]] = {}

    def close(table: dict[int, list[Any]], cpu: int) -> None:
        cur = table.pop(cpu, None)
        if cur is not None:
            out.append(Span(cpu, cur[0], cur[1], cur[2]))

    for i, e in enumerate(trace):
        if e.context == "mem":
            continue
        what = _flow(e)
        table = tasks if e.context == "task" else irqs
        if e.context == "task":
            close(irqs, e.cpu)
        cur = table.get(e.cpu)
        if cur is not None and cur[0] == what:
            cur[2] = i
            continue
        close(table, e.cpu)
        table[e.cpu] = [what, i, i]
    for cpu, cur in tasks.items():
        if (cpu, cur[0]) in unfinished:
            cur[2] = len(trace) - 1
    for table in (tasks, irqs):
        for cpu in list(table):
            close(table, cpu)
    return sorted(out, key=lambda s: s.first)


def unfinished(r: Run, result: Result) -> frozenset[tuple[int, str]]:
    """The ops a run interrupted (still running when the machine ended)."""
    return frozenset(
        (op.cpu, op.op)
        for op, res in zip(r.scenario.ops, result.op_results, strict=False)
        if res == "interrupted"
    )


_INTERRUPTS = ("nmi:", "crash:")  # not flows of their own: an NMI and the crash path


def concurrent_pairs(
    trace: list[TraceEvent], open_: frozenset[tuple[int, str]] = frozenset()
) -> set[tuple[str, str]]:
    """Pairs of flows on different CPUs whose lifetimes overlapped."""
    ss = spans(trace, open_)
    out: set[tuple[str, str]] = set()
    for i, a in enumerate(ss):
        for b in ss[i + 1 :]:
            if b.first > a.last:
                break
            interrupt = a.what.startswith(_INTERRUPTS) or b.what.startswith(_INTERRUPTS)
            if a.cpu != b.cpu and not interrupt:
                x, y = sorted((a.what, b.what))
                out.add((x, y))
    return out


def concurrent_functions(
    trace: list[TraceEvent], open_: frozenset[tuple[int, str]] = frozenset()
) -> set[tuple[str, str]]:
    """Pairs (function stepping, function another CPU is in the middle of)."""
    ends = {}
    for s in spans(trace, open_):
        for i in range(s.first, s.last + 1):
            ends[i] = s.last
    last: dict[int, tuple[str, int]] = {}  # cpu -> (function, end of its span)
    out: set[tuple[str, str]] = set()
    for i, e in enumerate(trace):
        if e.context == "mem":
            continue
        fn = _fn(e.label)
        for c, (other, end) in last.items():
            if c != e.cpu and end >= i:
                out.add((fn, other))
        last[e.cpu] = (fn, ends.get(i, i))
    return out


def _step_context(trace: list[TraceEvent], cpu: int, at: int) -> str:
    """The flow CPU ``cpu`` was in at trace position ``at`` (its latest step)."""
    for e in reversed(trace[: max(at, 0)]):
        if e.cpu == cpu and e.context != "mem":
            return _flow(e)
    return "idle"


def _flow(e: TraceEvent) -> str:
    """A step's flow: the op for a task, ``ipi:name``, ``nmi:name``, ``crash:name``."""
    return e.name if e.context == "task" else f"{e.context}:{e.name}"


def nmi_hits(r: Run, result: Result) -> list[tuple[str, str, str]]:
    """(kind, label, flow interrupted) of every NMI that fired: the flow whose step
    ``label`` ran after the handler, or (the CPU never ran it: a panic) the CPU's
    flow at its last step before the handler."""
    out = []
    trace = result.trace
    for i in result.nmis_fired:
        spec = r.scenario.nmis[i]
        where, done, last, handled = "?", 0, "idle", False
        for e in trace:
            if e.cpu != spec.cpu or e.context == "mem":
                continue
            if e.context in ("nmi", "crash"):
                if done >= spec.nth - 1 and not handled:
                    handled, where = True, last
                continue
            if handled and (e.label, e.nth) == (spec.before, spec.nth):
                where = _flow(e)
                break
            if e.label == spec.before:
                done = e.nth
            last = _flow(e)
        out.append((spec.kind, spec.before, where))
    return out


def fault_hits(r: Run, result: Result) -> list[tuple[str, str]]:
    """(site, flow it hit) of every injected fault that fired."""
    plan = r.faults
    at = plan.fired_at + [-1] * (len(plan.fired) - len(plan.fired_at))
    return [
        (spec.site, _step_context(result.trace, cpu, t) if t >= 0 else "?")
        for (spec, cpu), t in zip(plan.fired, at, strict=False)
    ]


def shapes(observed: list[tuple[Run, Result]]) -> list[str]:
    """The concurrency shapes one example's runs exercised (each named once)."""
    out: set[str] = set()
    for r, result in observed:
        sc = r.scenario
        for a, b in concurrent_pairs(result.trace, unfinished(r, result)):
            out.add(f"race: {a} || {b}")
        for kind, _, where in nmi_hits(r, result):
            out.add(f"nmi: {kind} in {where}")
        for site, where in fault_hits(r, result):
            out.add(f"fault: {site} in {where}")
        if sc.config.nested and "L2 entered" in result.op_results:
            out.add(f"nested: L2 entered, shadowing {'on' if sc.config.shadow_vmcs else 'off'}")
        if sc.config.weak_memory and any(isinstance(e, str) for e in sc.schedule):
            commits = sum(1 for e in result.trace if e.context == "mem")
            out.add(f"weak memory: {'stores committed late' if commits else 'no store buffered'}")
    return sorted(out)


@cache
def variant_labels(variant: str) -> frozenset[str]:
    """Every step label in the source of a variant's functions (plug-ins included)."""
    from .variants import build

    out: set[str] = set()
    for fn in vars(build(variant)).values():
        try:
            out |= labels_in_source(inspect.getsource(fn))
        except (OSError, TypeError):
            continue
    return frozenset(out)


@dataclass
class _PerVariant:
    labels: Counter[str] = field(default_factory=Counter)
    contexts: set[tuple[str, str]] = field(default_factory=set)
    nmi_sites: Counter[str] = field(default_factory=Counter)
    fault_sites: Counter[str] = field(default_factory=Counter)


@dataclass
class CoverageMap:
    """What a campaign's runs reached, per variant, and what they did not."""

    variants: dict[str, _PerVariant] = field(default_factory=dict)
    op_pairs: Counter[tuple[str, str]] = field(default_factory=Counter)
    fn_pairs: set[tuple[str, str]] = field(default_factory=set)
    states: set[tuple[Any, ...]] = field(default_factory=set)

    def add(self, observed: list[tuple[Run, Result]]) -> int:
        """Fold in one example's runs; return how much of it was new."""
        new = 0
        for r, result in observed:
            v = self.variants.setdefault(r.variant, _PerVariant())
            for e in result.trace:
                if e.context == "mem":
                    continue
                v.labels[e.label] += 1
                pair = (e.label, e.context)
                if pair not in v.contexts:
                    v.contexts.add(pair)
                    new += 1
            for kind, label, _ in nmi_hits(r, result):
                v.nmi_sites[f"{label} ({kind})"] += 1
            for site, _ in fault_hits(r, result):
                v.fault_sites[site] += 1
            for p in concurrent_pairs(result.trace, unfinished(r, result)):
                self.op_pairs[p] += 1
            fresh = concurrent_functions(result.trace, unfinished(r, result)) - self.fn_pairs
            new += len(fresh)
            self.fn_pairs |= fresh
            state = (
                r.variant,
                result.ended,
                tuple(sorted(result.invariants)),
                tuple(sorted(set(result.op_results))),
                tuple(len(c) for c in result.caches.values()),
            )
            if state not in self.states:
                self.states.add(state)
                new += 1
        return new

    def merge(self, doc: dict[str, Any]) -> None:
        """Fold in another process' :meth:`to_json` (counts add up)."""
        for name, d in doc.get("variants", {}).items():
            v = self.variants.setdefault(name, _PerVariant())
            v.labels.update(d.get("labels", {}))
            v.nmi_sites.update(d.get("nmi_sites", {}))
            v.fault_sites.update(d.get("fault_sites", {}))
        for key, n in doc.get("op_pairs", {}).items():
            a, _, b = key.partition(" || ")
            self.op_pairs[(a, b)] += n

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"variants": {}, "op_pairs": {}}
        for name, v in sorted(self.variants.items()):
            known = _catalogue(name)
            reached = set(v.labels)
            functions = {_fn(label) for label in reached}
            out["variants"][name] = {
                "functions_reached": len(functions),
                "functions_total": len({_fn(label) for label in known | reached}),
                "labels_reached": len(reached),
                "labels_total": len(known | reached),
                "labels": dict(sorted(v.labels.items())),
                "unreached_functions": sorted({_fn(lb) for lb in known} - functions),
                "unreached_labels": sorted(known - reached),
                "nmi_sites": dict(sorted(v.nmi_sites.items())),
                "fault_sites": dict(sorted(v.fault_sites.items())),
                "unreached_fault_sites": sorted(set(SITES) - set(v.fault_sites)),
            }
        out["op_pairs"] = {f"{a} || {b}": n for (a, b), n in sorted(self.op_pairs.items())}
        return out


def _catalogue(variant: str) -> frozenset[str]:
    try:
        return variant_labels(variant)
    except Exception:  # a plug-in that no longer loads: report what was reached
        return frozenset()


@dataclass
class Stats:
    """What an engine accumulates over a campaign: shape counts and the coverage map."""

    shapes: Counter[str] = field(default_factory=Counter)
    coverage: CoverageMap = field(default_factory=CoverageMap)
    examples: int = 0

    def add(self, observed: list[tuple[Run, Result]]) -> tuple[list[str], int]:
        """Count one example; returns its shapes and its novelty."""
        self.examples += 1
        found = shapes(observed)
        self.shapes.update(found)
        return found, self.coverage.add(observed)

    def shapes_json(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "counts": dict(sorted(self.shapes.items(), key=lambda kv: (-kv[1], kv[0]))),
        }

    def merge(self, shapes_doc: dict[str, Any], coverage_doc: dict[str, Any]) -> None:
        self.examples += int(shapes_doc.get("examples", 0))
        self.shapes.update(shapes_doc.get("counts", {}))
        self.coverage.merge(coverage_doc)
