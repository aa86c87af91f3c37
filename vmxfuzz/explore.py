"""Bounded exhaustive exploration: every schedule, NMI placement and injected fault of
a program within a stated bound, with state hashing and sleep sets.

How it fits the rest: the explorer does not have its own copy of the model or of the
checks.  It starts ordinary runs through :func:`vmxfuzz.executor.start` with a
chooser (:class:`vmxfuzz.choosers.dfs.DfsChooser`) that takes every choice from the
explorer instead of from a scenario, so the stepping core keeps its fast path, and
every choice it makes is recorded in scenario terms (schedule entry,
:class:`NmiSpec`, :class:`FaultSpec`).  A finding is therefore a
plain scenario that ``vmxfuzz replay`` runs through the one executor, and the oracle
that judged it is the same.

Search: depth-first over decision sequences, by re-execution (generator flows cannot
be copied, so a branch is a fresh run that replays its prefix).  At each scheduling
decision the whole machine state is fingerprinted (:mod:`vmxfuzz.statehash`) together
with the remaining NMI/fault budget; a state seen before is not expanded again (its
futures were, or are being, explored from the first visit).  Sleep sets avoid even
re-running the commuted order of two independent steps: after exploring CPU ``a``'s
step from a state, CPU ``b``'s branch does not try ``a`` first again if the two steps
touched disjoint memory (footprints are recorded while the step runs; see
:mod:`vmxfuzz.footprint`).

The bound is the program (ops per CPU, CPUs, vCPUs: fixed by the scenario or by the
enumeration in :func:`programs`), the number of NMIs (each panic or benign, at any
step of any CPU that is running kernel code), and the number of injected faults (at
any fallible site).  "No finding" is a statement about exactly that bound.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import astuple, dataclass, field, replace
from typing import Any

from . import footprint
from .choosers.dfs import Asleep, Decision, DfsChooser, DivergentReplay, Path, Prune, Sleep
from .executor import OBSERVERS, Result, release, start
from .kernel.state import Config
from .oracle import Violation
from .scenario import Op, Scenario

__all__ = ["Bound", "Decision", "DivergentReplay", "Explorer", "Finding", "Stats"]

NMI_KINDS = ("panic", "benign")


@dataclass(frozen=True)
class Bound:
    """What is explored: the limits a "nothing found" verdict is about."""

    nmis: int = 1
    nmi_kinds: tuple[str, ...] = NMI_KINDS
    faults: int = 0
    fault_sites: tuple[str, ...] = ()  # () = every site
    setup: int = 0  # the first ops run with no choices at all (a deterministic prefix)
    store_buffer: int = 2  # weak-memory programs: stores a CPU buffers before it stalls
    # Instead of "up to N NMIs of these kinds anywhere": exactly these NMIs, each
    # (cpu, function, kind), placed before any step of that function on that CPU; and
    # these faults, each (site, kind), at any occurrence of the site.  Used to search
    # the schedules of one program with the same injections (behaviour confirmation).
    nmi_menu: tuple[tuple[int, str, str], ...] | None = None
    fault_menu: tuple[tuple[str, str], ...] | None = None
    preempts: int = 0  # preemptions inside vCPU ioctls (each at any point, to any CPU)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "nmis": self.nmis,
            "nmi_kinds": list(self.nmi_kinds),
            "faults": self.faults,
            "fault_sites": list(self.fault_sites) or "all",
            "setup_ops": self.setup,
            "store_buffer": self.store_buffer,
            "preempts": self.preempts,
        }
        if self.nmi_menu is not None:
            out["nmi_menu"] = [list(m) for m in self.nmi_menu]
        if self.fault_menu is not None:
            out["fault_menu"] = [list(m) for m in self.fault_menu]
        return out

    @staticmethod
    def menus(nmis: tuple[tuple[int, str, str], ...], faults: tuple[tuple[str, str], ...]) -> Bound:
        """The bound of exactly these injections (see ``nmi_menu``), setup included."""
        return Bound(
            nmis=len(nmis),
            nmi_kinds=tuple(sorted({k for _, _, k in nmis})),
            faults=len(faults),
            fault_sites=tuple(sorted({s for s, _ in faults})),
            setup=0,
            nmi_menu=tuple(sorted(nmis)),
            fault_menu=tuple(sorted(faults)),
        )


@dataclass
class Stats:
    states: int = 0
    transitions: int = 0
    runs: int = 0
    pruned: int = 0
    slept: int = 0
    programs: int = 0

    def merged(self, other: Stats) -> Stats:
        return Stats(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass
class _Node:
    """A decision point on the DFS stack: the prefix that reaches it and the
    alternatives not yet run, with what is asleep there."""

    prefix: list[Decision]
    todo: list[Decision]
    sleep: Sleep
    done: Sleep = field(default_factory=list)


@dataclass
class Finding:
    violation: Violation
    scenario: Scenario
    seconds: float


@dataclass
class Explorer:
    """Depth-first exploration of one program on one variant."""

    program: Scenario
    variant: str
    bound: Bound
    deadline: float = float("inf")
    on_finding: Callable[[Finding], None] | None = None
    sleep_sets: bool = True
    # NMI raises commute with other CPUs' plain steps (see DfsChooser._measure).  Off
    # by default: sound (same states), but on the documented bounds it saves 8 runs
    # in about 6,000 and costs a tracking walk at every NMI branch point (about 7%
    # more walks on the seed bound), so it is slower; docs/performance.md.
    fine_nmis: bool = False
    # Called with every run that finished (not cut by hashing or sleep sets): the
    # scenario and its result, e.g. to compare observable results with another variant.
    on_leaf: Callable[[Scenario, Result], None] | None = None
    # Observe op results: they become part of a state (see ``Path.budget``), so a
    # state seen before is cut only if its results so far are the same too.
    observe: bool = False
    # A budget counted in runs (None: none): explore() stops after this many; unlike
    # the deadline, the same on any machine, so tests and measurements use it.
    max_runs: int | None = None
    # Polled before every run: True stops the search with KeyboardInterrupt, as if the
    # signal had raised it here.  A signal handler's own exception is lost when the
    # signal lands in a finaliser (a model generator closed by the garbage collector
    # prints "Exception ignored" and swallows it), so the command's SIGTERM handler
    # also sets a flag this reads.
    stop: Callable[[], bool] | None = None
    stats: Stats = field(default_factory=Stats)
    started: float = field(default_factory=time.monotonic)
    visited: dict[bytes, frozenset[Decision]] = field(default_factory=dict)
    seen: set[tuple[str, str]] = field(default_factory=set)
    findings: list[Finding] = field(default_factory=list)
    complete: bool = False
    tick: Callable[[], None] | None = None
    paused: float = 0.0  # time spent in callbacks (minimising, writing): not search time

    def elapsed(self) -> float:
        """Search time so far (callbacks excluded)."""
        return time.monotonic() - self.started - self.paused

    def _base(self) -> Scenario:
        return replace(self.program, schedule=(), nmis=(), faults=(), preempts=())

    def run_path(self, prefix: list[Decision], branch_sleep: Sleep) -> Path:
        base = self._base()
        path = Path(self, prefix, branch_sleep)
        chooser = DfsChooser(path)
        # A trace only for the observers of finished runs (coverage): none is read here.
        tracing = self.on_leaf is not None and bool(OBSERVERS)
        r = start(base, self.variant, chooser=chooser, keep_trace=tracing)
        chooser.driver = r.driver
        sched = r.sched
        self.stats.runs += 1
        complete = False
        try:
            sched.run()
            complete = True
        except Prune:
            self.stats.pruned += 1
        except Asleep:
            pass
        finally:
            footprint.end()
            release(r)
        self.stats.transitions += sched.steps

        def scenario() -> Scenario:
            return replace(
                base,
                schedule=tuple(path.schedule),
                nmis=tuple(path.nmis),
                preempts=tuple(path.preempts),
                faults=tuple(path.faults),
            )

        if complete and self.on_leaf is not None:
            t0 = time.monotonic()
            self.on_leaf(scenario(), r.finish(keep_trace=False))
            self.paused += time.monotonic() - t0
        for v in r.oracle.violations:
            key = (v.invariant, v.site)
            if key not in self.seen:
                self.seen.add(key)
                f = Finding(v, scenario(), self.elapsed())
                self.findings.append(f)
                if self.on_finding is not None:
                    t0 = time.monotonic()
                    self.on_finding(f)
                    self.paused += time.monotonic() - t0
        return path

    def explore(self) -> bool:
        """Explore until done (True) or the deadline passes or ``max_runs`` runs are
        spent (False)."""
        root = _Node([], [], [])
        stack: list[_Node] = []
        self._run(root, [], [])
        stack.extend(self._nodes)
        while stack:
            if time.monotonic() > self.deadline:
                return False
            if self.stop is not None and self.stop():
                raise KeyboardInterrupt
            if self.max_runs is not None and self.stats.runs >= self.max_runs:
                return False
            node = stack[-1]
            if not node.todo:
                stack.pop()
                continue
            alt = node.todo.pop(0)
            self._run(node, [*node.prefix, alt], node.sleep + node.done)
            stack.extend(self._nodes)
        self.complete = True
        return True

    def _run(self, parent: _Node, prefix: list[Decision], branch_sleep: Sleep) -> None:
        path = self.run_path(prefix, branch_sleep)
        if self.tick is not None:
            t0 = time.monotonic()
            self.tick()
            self.paused += time.monotonic() - t0
        if prefix:
            parent.done.append((prefix[-1], path.points[len(prefix) - 1].canonical_step()))
        chosen = [p.chosen for p in path.points]
        nodes = []
        for j in range(len(prefix), len(path.points)):
            p = path.points[j]
            node = _Node(chosen[:j], list(p.todo), p.sleep)
            node.done.append((p.chosen, p.canonical_step()))
            nodes.append(node)
        self._nodes = nodes


# ---- programs ------------------------------------------------------------------------


def setup_ops(cpus: int, vcpus: int) -> list[Op]:
    """Load the module, create one VM and ``vcpus`` vCPUs spread over the CPUs."""
    ops = [Op("module_load", 0), Op("create_vm", 0, vm="vm0")]
    ops += [Op("create_vcpu", i % cpus, vm="vm0", vcpu=f"vcpu{i}") for i in range(vcpus)]
    return ops


def alphabet(cpus: int, vcpus: int) -> list[Op]:
    """The workload ops an enumerated program draws from."""
    ops = [Op("run_vcpu", c, vcpu=f"vcpu{v}") for v in range(vcpus) for c in range(cpus)]
    ops += [Op("cpu_offline", 0, target=t) for t in range(1, cpus)]
    ops += [Op("cpu_online", 0, target=t) for t in range(1, cpus)]
    ops += [
        Op("destroy_vm", 0, vm="vm0"),
        Op("module_unload", 0),
        Op("suspend", 0),
        Op("reboot", 0),
        Op("kexec", 0),
        Op("emergency_restart", 0),
    ]
    return ops


def programs(cpus: int, vcpus: int, max_ops: int, weak: bool = False) -> Iterator[Scenario]:
    """Every program of ``setup_ops`` plus 0..``max_ops`` workload ops, shortest
    first; an op may run in parallel with the one before it when on another CPU."""
    setup = setup_ops(cpus, vcpus)
    alpha = alphabet(cpus, vcpus)
    config = Config(cpus=cpus, weak_memory=weak)
    for n in range(max_ops + 1):
        for seq in itertools.product(alpha, repeat=n):
            for par in itertools.product((False, True), repeat=max(n - 1, 0)):
                ops = [seq[0]] if n else []
                ok = True
                for i in range(1, n):
                    op = seq[i]
                    if par[i - 1]:
                        if op.cpu == seq[i - 1].cpu:
                            ok = False
                            break
                        op = replace(op, parallel=True)
                    ops.append(op)
                if ok:
                    name = "explore-" + "-".join(o.op for o in ops) if ops else "explore-setup"
                    yield Scenario(tuple(setup + ops), config, name=name)


# ---- a kill search for the mutant matrix ------------------------------------------------

# (workload ops, bound) stages tried in order by :func:`kill_search`: cheap and wide
# first; each stage explores the programs of exactly that many workload ops.  A bound
# with ``setup=0`` explores the setup ops too (faults during module load and VM
# creation, where VMXON runs); otherwise the setup runs without choices.
_SETUP = -1  # "the setup ops run without choices"
KILL_PLAN: tuple[tuple[int, Bound], ...] = (
    (0, Bound(nmis=1, setup=_SETUP)),
    (0, Bound(nmis=0, faults=1, setup=0)),
    (1, Bound(nmis=1, setup=_SETUP)),
    (1, Bound(nmis=0, faults=1, setup=_SETUP)),
    (2, Bound(nmis=0, setup=_SETUP)),
    (0, Bound(nmis=1, faults=1, setup=0)),
    (2, Bound(nmis=1, setup=_SETUP)),
    (1, Bound(nmis=1, faults=1, setup=_SETUP)),
)


def kill_search(
    pair: str,
    seconds: float,
    *,
    cpus: int = 2,
    vcpus: int = 2,
    max_runs: int | None = None,
) -> tuple[Any, Scenario, float] | None:
    """Explore the second variant of ``pair`` (``base,mutant``) bound by bound until a
    violation shows that the first variant does not have on the same scenario (a
    ``regression`` of the pair), or a finished run whose observable results differ
    from the first variant's on the same schedule (``behaviour``).  Returns (hit,
    scenario, seconds) or None.

    Invariants are judged on every explored state; behaviour only on the runs that go
    to the end (a run cut at a known state has no results of its own to compare).
    ``max_runs`` bounds the runs of the whole search (the same on any machine).
    """
    from .campaign import judge
    from .executor import run
    from .variants import split_pair

    names = split_pair(pair)
    if names is None:
        raise ValueError(f"{pair!r}: kill_search wants a pair BASE,MUTANT")
    started = time.monotonic()
    deadline = started + seconds
    killed: list[tuple[Any, Scenario, float]] = []
    runs = 0  # of the programs explored so far (``max_runs`` counts them all)

    class _Killed(Exception):
        pass

    def on_finding(f: Finding) -> None:
        for hit in judge(f.scenario, pair):
            if hit.cls == "regression":
                killed.append((hit, f.scenario, time.monotonic() - started))
                raise _Killed

    def on_leaf(sc: Scenario, mine: Result) -> None:
        """Behaviour: the base variant on the same finished schedule (a cheap check
        first; the differential judges only when the results differ)."""
        other = run(sc, names[0], keep_trace=False)
        if other.observable() == mine.observable():
            return
        for hit in judge(sc, pair):
            if hit.cls in ("regression", "behaviour"):
                killed.append((hit, sc, time.monotonic() - started))
                raise _Killed

    for ops, bound in KILL_PLAN:
        setup = len(setup_ops(cpus, vcpus))
        for program in programs(cpus, vcpus, ops):
            if len(program.ops) - setup != ops:
                continue  # each stage of the plan is one program length
            if max_runs is not None and runs >= max_runs:
                return None
            ex = Explorer(
                program,
                names[1],
                replace(bound, setup=setup) if bound.setup == _SETUP else bound,
                deadline=deadline,
                on_finding=on_finding,
                on_leaf=on_leaf,
                max_runs=None if max_runs is None else max_runs - runs,
            )
            try:
                if not ex.explore():
                    return None
            except _Killed:
                return killed[0]
            runs += ex.stats.runs
    return None
