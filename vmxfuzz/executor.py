"""Run one scenario on one variant and return a plain-data :class:`Result`.

The one executor every engine uses (replay, Hypothesis, atheris, exhaustive
search): engines only choose scenarios.  Operations start in scenario order; an op
marked ``parallel`` starts together with the one before it, and the next group
starts when every op of the current group has finished.  All interleaving inside
and between groups comes from the scenario's schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from .choosers.base import Chooser
from .choosers.replay import ReplayChooser
from .kernel.crash import nmi_handler
from .kernel.ops import L1_EXITS
from .kernel.state import ERRNO_NAMES, Kernel
from .labels import has_label
from .machine import weakmem
from .machine.errors import MachineFault
from .machine.faults import FaultPlan
from .machine.weakmem import WeakMemory
from .oracle import Oracle, Violation
from .scenario import Op, Scenario
from .sched import RunEntry, Scheduler, Task, TraceEvent
from .variants import build


@dataclass
class Result:
    variant: str
    violations: list[Violation]
    op_results: list[str]
    ended: str
    trace: list[TraceEvent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    steps: int = 0
    kexec_checked: bool = False
    nmis_fired: list[int] = field(default_factory=list)
    faults_fired: list[int] = field(default_factory=list)
    # Each CPU's VMCS cache when the run ended (at kexec, that is the crash state).
    caches: dict[int, list[str]] = field(default_factory=dict)
    # Scenario entries whose anchor (a step label) this variant does not have, as
    # "FIELD/INDEX: LABEL" (docs/scenarios.md, "Anchors"): not applicable here.
    not_applicable: list[str] = field(default_factory=list)

    @property
    def invariants(self) -> set[str]:
        return {v.invariant for v in self.violations}

    def observable(self) -> dict[str, Any]:
        """What the differential runner compares when no invariant differs."""
        return {"op_results": self.op_results, "ended": self.ended}

    def to_json(self, trace: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "variant": self.variant,
            "violations": [v.to_json() for v in self.violations],
            "op_results": self.op_results,
            "ended": self.ended,
            "kexec_checked": self.kexec_checked,
            "steps": self.steps,
            "warnings": self.warnings,
            "nmis_fired": self.nmis_fired,
            "caches": {str(c): v for c, v in self.caches.items()},
            "faults_fired": self.faults_fired,
            "not_applicable": self.not_applicable,
        }
        if trace:
            d["trace"] = [e.as_list() for e in self.trace]
        return d


def render(value: Any) -> str:
    if isinstance(value, MachineFault):
        return "oops"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return ERRNO_NAMES.get(value, str(value))
    if value is None:
        return "0"
    return str(value)


def op_flow(k: Kernel, op: Op) -> Any:
    f = k.f
    name = op.op
    if name in (
        "module_load",
        "module_unload",
        "suspend",
        "reboot",
        "kexec",
        "panic",
        "emergency_restart",
    ):
        return getattr(f, f"op_{name}")(k)
    if name in ("create_vm", "destroy_vm"):
        return getattr(f, f"op_{name}")(k, op.vm)
    if name == "create_vcpu":
        return f.op_create_vcpu(k, op.vm, op.vcpu)
    if name == "run_vcpu":
        return f.op_run_vcpu(k, op.vcpu)
    if name in L1_EXITS:
        return f.op_nested(k, op.vcpu, name)
    if name in ("cpu_online", "cpu_offline"):
        return getattr(f, f"op_{name}")(k, op.target)
    raise ValueError(f"unknown op {name!r}")


def groups(ops: tuple[Op, ...]) -> list[list[int]]:
    out: list[list[int]] = []
    for i, op in enumerate(ops):
        if op.parallel and out:
            out[-1].append(i)
        else:
            out.append([i])
    return out


class _Driver:
    """Starts op groups as earlier ones finish."""

    def __init__(self, k: Kernel, sched: Scheduler, ops: tuple[Op, ...]) -> None:
        self.k = k
        self.sched = sched
        self.ops = ops
        self.results = ["not run"] * len(ops)
        self.groups = groups(ops)
        self.next_group = 0
        self.pending = 0

    def start_next(self) -> None:
        while self.next_group < len(self.groups) and self.sched.ended is None:
            group = self.groups[self.next_group]
            self.next_group += 1
            for i in group:
                op = self.ops[i]
                cpu = self.k.hw.cpus[op.cpu]
                if cpu.halted or not cpu.online:
                    self.results[i] = "cpu offline"
                    continue
                self.results[i] = "running"
                self.pending += 1
                self.sched.submit(op.cpu, self._task(i, op))
            if self.pending:
                return

    def _task(self, i: int, op: Op) -> Task:
        def factory() -> Any:
            return op_flow(self.k, op)

        def finished(value: Any) -> None:
            self.done(i, value)

        return Task(op.op, factory, on_done=finished, on_oops=finished)

    def done(self, i: int, value: Any) -> None:
        self.results[i] = render(value)
        self.pending -= 1
        if self.pending == 0:
            self.start_next()


# Called with every finished run, trace included (:func:`run` traces while an
# observer is registered, even where its caller drops the trace): how campaigns see
# what their runs covered without a second execution.
OBSERVERS: list[Callable[[Run, Result], None]] = []


@dataclass
class Run:
    """One run being set up or stepped: the machine, its scheduler and the op driver.

    :func:`run` is ``start(...).finish()``; the exhaustive explorer starts runs the
    same way with its own scheduler subclass and fault plan, so every engine executes
    scenarios through this one code path.
    """

    scenario: Scenario
    variant: str
    k: Kernel
    sched: Scheduler
    driver: _Driver
    oracle: Oracle
    faults: FaultPlan
    not_applicable: list[str] = field(default_factory=list)

    def finish(self, *, keep_trace: bool = True) -> Result:
        """Step until the machine ends (unless already ended) and collect the result."""
        try:
            ended = self.sched.ended or self.sched.run()
        finally:
            release(self)
        results = ["interrupted" if r == "running" else r for r in self.driver.results]
        k, sched, faults = self.k, self.sched, self.faults
        result = Result(
            variant=self.variant,
            violations=list(self.oracle.violations),
            op_results=results,
            ended=ended,
            trace=sched.trace if keep_trace or OBSERVERS else [],
            warnings=k.warnings,
            steps=sched.steps,
            kexec_checked=self.oracle.kexec_checked,
            nmis_fired=sorted(sched.nmi_fired),
            faults_fired=sorted({faults.faults.index(spec) for spec, _ in faults.fired}),
            caches={c.id: [v.describe() for v in c.cache] for c in k.hw.cpus},
            not_applicable=self.not_applicable,
        )
        for observe in OBSERVERS:  # coverage and shape statistics (vmxfuzz.coverage)
            observe(self, result)
        if not keep_trace:
            result.trace = []
        return result


def replay_chooser(scenario: Scenario) -> Chooser:
    """The chooser that replays ``scenario``: step-indexed or anchored schedule."""
    return ReplayChooser(scenario.schedule, scenario.nmis, scenario.faults, scenario.preempts)


def not_applicable(scenario: Scenario, functions: SimpleNamespace) -> list[str]:
    """The scenario's anchors (NMI labels, anchored runs' labels) this variant lacks."""
    out = [
        f"nmis/{i}: {m.before}"
        for i, m in enumerate(scenario.nmis)
        if not has_label(functions, m.before)
    ]
    out += [
        f"schedule/{i}: {e.until}"
        for i, e in enumerate(scenario.schedule)
        if isinstance(e, RunEntry) and e.until is not None and not has_label(functions, e.until)
    ]
    return out


def release(r: Run) -> None:
    """The run is over (or abandoned): new objects are no longer its memory's."""
    if r.k.mem is not None and weakmem.ACTIVE is r.k.mem:
        weakmem.ACTIVE = None


def start(
    scenario: Scenario,
    variant: str,
    *,
    functions: SimpleNamespace | None = None,
    sched_cls: type[Scheduler] = Scheduler,
    faults: FaultPlan | None = None,
    chooser: Chooser | None = None,
    keep_trace: bool = True,
) -> Run:
    """Build the machine for ``scenario`` on ``variant`` and queue the first op group.

    ``chooser`` takes every decision of the run (default: replay the scenario's
    schedule, NMIs and faults); ``keep_trace=False`` records no trace events."""
    f = functions if functions is not None else build(variant)
    oracle = Oracle()
    if chooser is None:
        chooser = replay_chooser(scenario)
    plan = faults if faults is not None else FaultPlan(tuple(scenario.faults))
    if plan.chooser is None:
        plan.chooser = chooser
    mem = WeakMemory(scenario.config.cpus) if scenario.config.weak_memory else None
    weakmem.ACTIVE = mem  # objects created from here on belong to this run's memory
    k = Kernel(scenario.config, f, plan, oracle)
    k.mem = mem
    if mem is not None:
        mem.k = k
    oracle.bind(k)
    sched = sched_cls(k, scenario.config.cpus, chooser=chooser, trace=keep_trace)
    sched.nmi_handler = nmi_handler(k)
    plan.clock = lambda: len(sched.events)
    k.sched = sched
    driver = _Driver(k, sched, scenario.ops)
    driver.start_next()
    return Run(scenario, variant, k, sched, driver, oracle, plan, not_applicable(scenario, f))


def run(
    scenario: Scenario,
    variant: str,
    *,
    keep_trace: bool = True,
    functions: SimpleNamespace | None = None,
) -> Result:
    """Run ``scenario`` on ``variant`` deterministically.

    ``functions`` replaces the variant's function namespace (tests build small
    variants this way: ``SimpleNamespace(**{**vars(build("patched")), "fn": new})``).
    """
    tracing = keep_trace or bool(OBSERVERS)  # an observer sees every run's trace
    r = start(scenario, variant, functions=functions, keep_trace=tracing)
    return r.finish(keep_trace=keep_trace)
