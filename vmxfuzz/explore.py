"""Bounded exhaustive exploration: every schedule, NMI placement and injected fault of
a program within a stated bound, with state hashing and sleep sets.

How it fits the rest: the explorer does not have its own copy of the model or of the
checks.  It starts ordinary runs through :func:`vmxfuzz.executor.start` with a
scheduler subclass and a fault plan that take their choices from the explorer
instead of from a scenario, and every choice it makes is recorded in scenario terms
(schedule entry, :class:`NmiSpec`, :class:`FaultSpec`).  A finding is therefore a
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
from .executor import Result, Run, release, start
from .footprint import EVERYTHING, Footprint
from .kernel.state import Config
from .machine.faults import SITES, FaultPlan, FaultSpec
from .oracle import Violation
from .scenario import Op, Scenario
from .sched import Migrate, NmiSpec, PreemptSpec, Scheduler, Wait
from .statehash import fingerprint_map

NMI_KINDS = ("panic", "benign")

# A decision: ("cpu", c) | ("nmi", c, kind) | ("mem", "sbC.I") | ("fault", kind or None)
Decision = tuple[Any, ...]


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


class _Prune(Exception):
    """Raised out of a run when it reaches a state explored before."""


class _Asleep(Exception):
    """Raised out of a run when every enabled step is in the sleep set."""


class DivergentReplay(RuntimeError):
    """A prefix replayed differently: the model is not deterministic (a bug)."""


Sleep = list[tuple[Decision, Footprint]]


@dataclass
class _Point:
    """A decision point of one run: what was possible, taken, and still to explore."""

    options: list[Decision]
    chosen: Decision
    todo: list[Decision]  # alternatives left for later runs
    sleep: Sleep  # the sleep set on arrival here (scheduling points)
    step: Footprint = EVERYTHING  # what the step after the decision touched (ids)
    ids: dict[int, int] | None = None  # object id -> canonical number at this state

    def canonical_step(self) -> Footprint:
        """The step's footprint in this state's canonical numbering (for other runs)."""
        return self.step.translate(self.ids) if self.ids is not None else EVERYTHING


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


class _Path:
    """The decisions of one run: a replayed prefix, then new ones (recorded)."""

    def __init__(self, ex: Explorer, prefix: list[Decision], branch_sleep: Sleep) -> None:
        self.ex = ex
        self.prefix = prefix
        self.branch_sleep = branch_sleep  # asleep where the last prefix decision is taken
        self.sleep: Sleep = []
        self.points: list[_Point] = []
        self.schedule: list[int | str] = []
        self.nmis: list[NmiSpec] = []
        self.faults: list[FaultSpec] = []
        self.nmis_left = ex.bound.nmis
        self.faults_left = ex.bound.faults
        self.nmi_menu = list(ex.bound.nmi_menu or ())  # what is left of the menus
        self.fault_menu = list(ex.bound.fault_menu or ())
        self.preempts: list[PreemptSpec] = []
        self.preempts_left = ex.bound.preempts
        self.measure: int | None = None  # the point whose step footprint is wanted

    def budget(self, results: list[str]) -> Any:
        """What a state's future depends on besides the machine: the injections left
        and, when the explorer observes results, the op results so far (history
        otherwise, but two runs that reach one machine state with different results
        end with different observable behaviour)."""
        left: Any = (self.nmis_left, self.faults_left, self.preempts_left)
        if self.ex.bound.nmi_menu is not None or self.ex.bound.fault_menu is not None:
            left = (left, tuple(sorted(self.nmi_menu)), tuple(sorted(self.fault_menu)))
        return (left, tuple(results)) if self.ex.observe else left

    def nmi_kinds(self, c: int, label: str) -> list[str]:
        """The NMI kinds that may hit CPU ``c`` before ``label``."""
        if self.ex.bound.nmi_menu is None:
            return list(self.ex.bound.nmi_kinds)
        fn = label.split(":", 1)[0]
        return sorted({k for cc, f, k in self.nmi_menu if cc == c and f == fn})

    @property
    def replaying(self) -> bool:
        return len(self.points) < len(self.prefix)

    def replay(self, options: list[Decision], ids: dict[int, int] | None = None) -> Decision:
        j = len(self.points)
        choice = self.prefix[j]
        if choice not in options:
            raise DivergentReplay(f"decision {j}: {choice} not among {options}")
        self.points.append(_Point(options, choice, [], [], ids=ids))
        return choice

    def fresh(
        self,
        options: list[Decision],
        fp: bytes | None,
        sched: bool,
        ids: dict[int, int] | None = None,
    ) -> Decision:
        """A new decision point: state caching with sleep sets (Godefroid)."""
        ex = self.ex
        asleep = {t for t, _ in self.sleep} if sched else set()
        if fp is not None:
            old = ex.visited.get(fp)
            if old is None:
                ex.visited[fp] = frozenset(asleep)
                ex.stats.states += 1
                want = [o for o in options if o not in asleep]
            else:
                need = old - asleep  # asleep at the earlier visit, awake now
                if not need:
                    raise _Prune
                ex.visited[fp] = old & asleep
                want = [o for o in options if o in need]
        else:
            want = [o for o in options if o not in asleep]
        ex.stats.slept += len(options) - len(want)
        if not want:
            raise _Asleep
        # Nodes keep the sleep set in this state's canonical numbering: a later run
        # reaching the same state numbers the same objects the same way.
        kept = [(t, f.translate(ids)) for t, f in self.sleep] if sched and ids is not None else []
        self.points.append(_Point(options, want[0], want[1:], kept, ids=ids))
        return want[0]

    def stepped(self, j: int, fp: Footprint) -> None:
        """The step after decision ``j`` ran and touched ``fp``: update the sleep set."""
        point = self.points[j]
        point.step = fp
        if j == len(self.prefix) - 1:
            alt = self.prefix[j]
            back = {n: i for i, n in (point.ids or {}).items()}
            base = [(t, f.translate(back)) for t, f in self.branch_sleep if t != alt]
        else:
            base = self.sleep
        self.sleep = [(t, f) for t, f in base if f.independent(fp)]


class ExploreScheduler(Scheduler):
    """The scheduler with the explorer taking every choice the scenario would."""

    path: _Path
    run_ref: Run

    def _active(self) -> bool:
        res = self.run_ref.driver.results
        return all(r not in ("not run", "running") for r in res[: self.path.ex.bound.setup])

    def _nmi_able(self, c: int) -> str | None:
        """The label CPU ``c`` would execute next if stepped, when an NMI can hit it
        there (it is inside a flow and not already handling an NMI)."""
        st = self.stacks[c]
        if not st or self.nmi_pending[c] or self.in_nmi(c):
            return None
        if self._deliverable_ipi(c) or self._preemptible(c):
            return None
        if self._resumable(c):
            return None
        p = st[-1].pending
        label = p.label if isinstance(p, (Wait, Migrate)) else p
        return label if isinstance(label, str) else None

    def _choose(self, runnable: list[int], commits: list[str]) -> int | str:
        path = self.path
        path.measure = None
        if not self._active():  # the setup: no choices, but the scenario's schedule
            default = super()._choose(runnable, commits)  # must still say what was
            if len(runnable) + len(commits) > 1:  # picked wherever it is read
                path.schedule.append(default)
            return default
        # The executor reads a schedule entry wherever it has a choice: record one there.
        recorded = len(runnable) + len(commits) > 1
        mem = self.k.mem
        if mem is not None:  # a CPU whose store buffer is full stalls until a commit
            depth = path.ex.bound.store_buffer
            full = [c for c in runnable if mem.depth(c) >= depth]
            if full and len(full) + len(commits) > 0:
                runnable = [c for c in runnable if c not in full]
        options: list[Decision] = [("cpu", c) for c in runnable]
        options += [("mem", a) for a in commits if a.startswith("sb")]
        options += [("late", int(a[4:])) for a in commits if a.startswith("late")]
        options = [o for o in options if o[0] != "late" or o[1] in runnable]
        labels: dict[int, str] = {}
        if path.nmis_left > 0:
            for c in runnable:
                label = self._nmi_able(c)
                if label is not None:
                    labels[c] = label
                    options += [("nmi", c, kind) for kind in path.nmi_kinds(c, label)]
        if len(options) == 1:
            only: int | str = runnable[0] if runnable else commits[0]
            if recorded:
                path.schedule.append(only)
            return only
        j = len(path.points)
        sleeping = path.ex.sleep_sets
        if path.replaying:
            ids = None
            if sleeping and j == len(path.prefix) - 1:  # the branch point: track from here
                ids = fingerprint_map(self._roots(), track=True)[1]
            choice = path.replay(options, ids)
        else:
            budget = path.budget(self.run_ref.driver.results)
            fp, ids2 = fingerprint_map(self._roots(), budget, track=sleeping)
            choice = path.fresh(options, fp, True, ids2 if sleeping else None)
        if sleeping and j >= len(path.prefix) - 1:
            path.measure = j
        if choice[0] == "mem":  # commit() measures what the store touches
            path.schedule.append(choice[1])
            return str(choice[1])
        if choice[0] == "late":  # step() measures the flow's step
            path.schedule.append(f"late{choice[1]}")
            return f"late{choice[1]}"
        c = choice[1]
        if recorded:
            path.schedule.append(c)
        if choice[0] == "nmi":
            label = labels[c]
            spec = NmiSpec(c, label, self.counts[(c, label)] + 1, choice[2])
            self.nmis.append(spec)
            path.nmis.append(spec)
            path.nmis_left -= 1
            if path.ex.bound.nmi_menu is not None:
                path.nmi_menu.remove((c, label.split(":", 1)[0], choice[2]))
        return int(c)

    def preempt_target(self, c: int) -> int | None:
        """``need_resched()`` is a choice within the preemption budget: not preempted,
        or preempted and resumed on any online CPU (recorded as a PreemptSpec)."""
        path = self.path
        if path.preempts_left <= 0 or not self._active():
            return None
        footprint.poison_everything()  # the outcome is a choice: no commuting
        options: list[Decision] = [("preempt", None)]
        options += [("preempt", t) for t in self.k.online_cpus()]
        decided = path.replay(options) if path.replaying else path.fresh(options, None, False)
        to = decided[1]
        if to is None:
            return None
        label = self.stacks[c][-1].label
        spec = PreemptSpec(c, label, self.counts[(c, label)], int(to))
        self.preempts.append(spec)
        self.preempt_fired.add(len(self.preempts) - 1)
        path.preempts.append(spec)
        path.preempts_left -= 1
        return int(to)

    def commit(self, action: str) -> None:
        path = self.path
        j = path.measure
        if j is None:
            super().commit(action)
            return
        path.measure = None
        footprint.begin()
        try:
            super().commit(action)
        finally:
            fp = footprint.end()
        path.stepped(j, fp)

    def _roots(self) -> tuple[Any, ...]:
        return (self.k, self, self.run_ref.driver)

    def _plain_advance(self, c: int, late: bool = False) -> bool:
        """Stepping ``c`` runs the next step of its current flow (nothing else)."""
        st = self.stacks[c]
        if not st or (self.nmi_pending[c] and not self.in_nmi(c)) or self._resumable(c):
            return False
        if isinstance(st[-1].pending, Migrate):
            return False  # a context switch moves the task: no footprint covers it
        return not ((self._deliverable_ipi(c) and not late) or self._preemptible(c))

    def step(self, c: int, late: bool = False) -> None:
        path = self.path
        j = path.measure
        if j is None:
            super().step(c, late)
            return
        path.measure = None
        point = path.points[j]
        if point.chosen[0] not in ("cpu", "late") or not self._plain_advance(c, late):
            super().step(c, late)
            path.stepped(j, EVERYTHING)
            return
        footprint.begin()
        try:
            p = self.stacks[c][-1].pending
            if isinstance(p, Wait):
                p.cond()  # what the spin reads decides whether it can complete
            super().step(c, late)
        finally:
            fp = footprint.end()
        path.stepped(j, fp)

    def _finish(self, ctx: Any, value: Any) -> None:
        footprint.poison_everything()  # completion callbacks start ops, wake waiters
        super()._finish(ctx, value)

    def _oops(self, ctx: Any, fault: Any) -> None:
        footprint.poison_everything()
        super()._oops(ctx, fault)


class ExploreFaults(FaultPlan):
    """The fault plan with the explorer choosing each outcome within the budget."""

    path: _Path
    sched: ExploreScheduler

    def check(self, site: str, cpu: int) -> str | None:
        self.counts[(site, None)] += 1
        self.counts[(site, cpu)] += 1
        path = self.path
        sites = path.ex.bound.fault_sites
        if path.faults_left <= 0 or (sites and site not in sites) or not self.sched._active():
            return None
        kinds = list(SITES[site][0])
        if path.ex.bound.fault_menu is not None:
            kinds = [k for k in kinds if (site, k) in path.fault_menu]
            if not kinds:
                return None
        footprint.poison_everything()  # the step's outcome is a choice: no commuting
        options: list[Decision] = [("fault", None)] + [("fault", k) for k in kinds]
        decided = path.replay(options) if path.replaying else path.fresh(options, None, False)
        kind = decided[1]
        if kind is None:
            return None
        spec = FaultSpec(site, self.counts[(site, cpu)], cpu, kind)
        self.faults = (*self.faults, spec)
        self.fired.append((spec, cpu))
        path.faults.append(spec)
        path.faults_left -= 1
        if path.ex.bound.fault_menu is not None:
            path.fault_menu.remove((site, str(kind)))
        return str(kind)


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
    # Called with every run that finished (not cut by hashing or sleep sets): the
    # scenario and its result, e.g. to compare observable results with another variant.
    on_leaf: Callable[[Scenario, Result], None] | None = None
    # Observe op results: they become part of a state (see ``_Path.budget``), so a
    # state seen before is cut only if its results so far are the same too.
    observe: bool = False
    # A budget counted in runs (None: none): explore() stops after this many; unlike
    # the deadline, the same on any machine, so tests and measurements use it.
    max_runs: int | None = None
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

    def run_path(self, prefix: list[Decision], branch_sleep: Sleep) -> _Path:
        base = self._base()
        path = _Path(self, prefix, branch_sleep)
        plan = ExploreFaults(())
        r = start(base, self.variant, sched_cls=ExploreScheduler, faults=plan)
        sched = r.sched
        assert isinstance(sched, ExploreScheduler)
        sched.path = path
        sched.run_ref = r
        plan.path = path
        plan.sched = sched
        self.stats.runs += 1
        complete = False
        try:
            sched.run()
            complete = True
        except _Prune:
            self.stats.pruned += 1
        except _Asleep:
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
    pair: str, seconds: float, *, cpus: int = 2, vcpus: int = 2
) -> tuple[Any, Scenario, float] | None:
    """Explore the second variant of ``pair`` (``base,mutant``) bound by bound until a
    violation shows that the first variant does not have on the same scenario (a
    ``regression`` of the pair), or a finished run whose observable results differ
    from the first variant's on the same schedule (``behaviour``).  Returns (hit,
    scenario, seconds) or None.

    Invariants are judged on every explored state; behaviour only on the runs that go
    to the end (a run cut at a known state has no results of its own to compare).
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
            ex = Explorer(
                program,
                names[1],
                replace(bound, setup=setup) if bound.setup == _SETUP else bound,
                deadline=deadline,
                on_finding=on_finding,
                on_leaf=on_leaf,
            )
            try:
                if not ex.explore():
                    return None
            except _Killed:
                return killed[0]
    return None
