"""The exhaustive explorer's chooser: one run of a depth-first search over decisions.

Why a chooser (the shape of shuttle's DFS scheduler): the explorer used to subclass
the stepping core and so ran every step through the slow path.  As a chooser it
plugs into the core like replay does, and the core runs a lone CPU in its tight loop
(:meth:`vmxfuzz.sched.Scheduler._run_alone`), asking :meth:`DfsChooser.nmi` before
each step only while NMIs are in the bound.

A decision point of the search is the same as before the split, so the explored state
sets are identical (``tests/test_explore.py`` pins them): where several CPUs (or, in
weak-memory mode, commits and late IPIs) can step, :meth:`schedule` chooses among
all of them *and* every NMI that could hit one of them before its next step; where
one CPU alone can step, :meth:`nmi` chooses between its step and an NMI before it.
Preemptions and fault outcomes are decision points too (:meth:`preempt`,
:meth:`fault`).  Every decision is recorded in scenario terms (schedule entry,
:class:`NmiSpec`, :class:`PreemptSpec`, :class:`FaultSpec`) so a run is a plain
scenario that replays through :class:`~vmxfuzz.choosers.replay.ReplayChooser`.

One run replays its decision prefix (``Path.prefix``) and then decides afresh: at each
fresh scheduling point the state is fingerprinted; a state seen before with nothing
newly awake in its sleep set cuts the run (:class:`Prune`).  The step after a decision
has its footprint measured (for sleep sets) through the core's ``after_step`` hook;
a context ending inside it (``on_context_end``) makes it dependent on everything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import footprint
from ..footprint import EVERYTHING, Footprint
from ..machine.faults import SITES, FaultSpec
from ..sched import Migrate, NmiSpec, PreemptSpec, Wait
from ..statehash import fingerprint_map
from .base import Chooser, FaultCounts, default_choice

if TYPE_CHECKING:
    from ..sched import Scheduler

# A decision: ("cpu", c) | ("nmi", c, kind) | ("mem", "sbC.I") | ("late", c)
# | ("fault", kind or None) | ("preempt", cpu or None)
Decision = tuple[Any, ...]
Sleep = list[tuple[Decision, Footprint]]

# Pseudo-locations of the footprints of NMI raises (see :meth:`DfsChooser._measure`):
# a CPU's control flow (on its ``Cpu`` object: what its next step is) and the NMI
# budget (on the kernel object).  Attribute names no model field can have.
CONTROL = "<control>"
NMI_BUDGET = "<nmis left>"


class Prune(Exception):
    """Raised out of a run when it reaches a state explored before."""


class Asleep(Exception):
    """Raised out of a run when every enabled step is in the sleep set."""


class DivergentReplay(RuntimeError):
    """A prefix replayed differently: the model is not deterministic (a bug)."""


class Point:
    """A decision point of one run: what was possible, taken, and still to explore."""

    __slots__ = ("chosen", "ids", "options", "sleep", "step", "todo")

    def __init__(
        self,
        options: list[Decision],
        chosen: Decision,
        todo: list[Decision],
        sleep: Sleep,
        ids: dict[int, int] | None = None,
    ) -> None:
        self.options = options
        self.chosen = chosen
        self.todo = todo  # alternatives left for later runs
        self.sleep = sleep  # the sleep set on arrival here (scheduling points)
        self.step: Footprint = EVERYTHING  # what the step after the decision touched
        self.ids = ids  # object id -> canonical number at this state

    def canonical_step(self) -> Footprint:
        """The step's footprint in this state's canonical numbering (for other runs)."""
        return self.step.translate(self.ids) if self.ids is not None else EVERYTHING


class Path:
    """The decisions of one run: a replayed prefix, then new ones (recorded).

    ``ex`` is the exploration (:class:`vmxfuzz.explore.Explorer`): its bound, its
    table of visited states and its statistics are shared by every run."""

    def __init__(self, ex: Any, prefix: list[Decision], branch_sleep: Sleep) -> None:
        self.ex = ex
        self.prefix = prefix
        self.branch_sleep = branch_sleep  # asleep where the last prefix decision is taken
        self.sleep: Sleep = []
        self.points: list[Point] = []
        self.schedule: list[int | str] = []
        self.nmis: list[NmiSpec] = []
        self.faults: list[FaultSpec] = []
        self.nmis_left: int = ex.bound.nmis
        self.faults_left: int = ex.bound.faults
        self.nmi_menu = list(ex.bound.nmi_menu or ())  # what is left of the menus
        self.fault_menu = list(ex.bound.fault_menu or ())
        self.preempts: list[PreemptSpec] = []
        self.preempts_left: int = ex.bound.preempts

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
        self.points.append(Point(options, choice, [], [], ids=ids))
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
                    raise Prune
                ex.visited[fp] = old & asleep
                want = [o for o in options if o in need]
        else:
            want = [o for o in options if o not in asleep]
        ex.stats.slept += len(options) - len(want)
        if not want:
            raise Asleep
        # Nodes keep the sleep set in this state's canonical numbering: a later run
        # reaching the same state numbers the same objects the same way.
        kept = [(t, f.translate(ids)) for t, f in self.sleep] if sched and ids is not None else []
        self.points.append(Point(options, want[0], want[1:], kept, ids=ids))
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


class DfsChooser(Chooser):
    """The choices of one explorer run, taken from (and recorded into) its ``Path``.

    ``driver`` (the op driver of the run, set once the run is built) tells when the
    deterministic setup is over: before that there are no choices, only the defaults
    a scenario without entries would give."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        ex = path.ex
        self.bound = ex.bound
        self.sleeping: bool = ex.sleep_sets
        self.fine_nmis: bool = ex.fine_nmis and self.bound.nmis > 0
        self.driver: Any = None
        self.active = self.bound.setup == 0
        self.asked_at = -1  # the step at which schedule() decided (nmi() must not)
        self.nmi_now: tuple[int, int, int] | None = None  # (step, cpu, spec index)
        # (point, footprint begun, or the step's footprint known in advance)
        self.measuring: tuple[int, bool, Footprint | None] | None = None

    def attach(self, core: Scheduler) -> None:
        super().attach(core)
        core.on_context_end = footprint.poison_everything  # completion callbacks start
        # ops, wake waiters; an oops kills: no footprint covers a context's end

    # ---- what the core needs to know ------------------------------------------------
    @property
    def nmi_labels(self) -> frozenset[str] | None:
        return None if self.bound.nmis > 0 else frozenset()

    @property
    def preempt_labels(self) -> frozenset[str] | None:
        return None if self.bound.preempts > 0 else frozenset()

    @property
    def counted_labels(self) -> frozenset[str] | None:
        return None  # NMIs and preemptions are recorded as (label, nth)

    def _active(self) -> bool:
        """The setup ops are over (once over, always over)."""
        if not self.active:
            res = self.driver.results[: self.bound.setup]
            self.active = "not run" not in res and "running" not in res
        return self.active

    def roots(self) -> tuple[Any, ...]:
        core = self.core
        assert core is not None
        return (core.k, core, self.driver)

    def _nmi_able(self, c: int) -> str | None:
        """The label CPU ``c`` would execute next if stepped, when an NMI can hit it
        there (it is inside a flow and not already handling an NMI)."""
        core = self.core
        assert core is not None
        st = core.stacks[c]
        if not st or core.nmi_pending[c] or core.in_nmi(c):
            return None
        if core._deliverable_ipi(c) or core._preemptible(c) or core._resumable(c):
            return None
        p = st[-1].pending
        label = p.label if isinstance(p, (Wait, Migrate)) else p
        return label if isinstance(label, str) else None

    def _plain_advance(self, c: int, late: bool = False) -> bool:
        """Stepping ``c`` runs the next step of its current flow (nothing else)."""
        core = self.core
        assert core is not None
        st = core.stacks[c]
        if not st or (core.nmi_pending[c] and not core.in_nmi(c)) or core._resumable(c):
            return False
        if isinstance(st[-1].pending, Migrate):
            return False  # a context switch moves the task: no footprint covers it
        return not ((core._deliverable_ipi(c) and not late) or core._preemptible(c))

    # ---- deciding -------------------------------------------------------------------
    def _decide(self, options: list[Decision]) -> Decision:
        """A scheduling decision point: replayed, or fresh (fingerprinted)."""
        path = self.path
        j = len(path.points)
        if path.replaying:
            ids = None
            if self.sleeping and j == len(path.prefix) - 1 and self._measurable(path.prefix[j]):
                # The branch point: track objects (its step's footprint is measured)
                # and number them (the footprint and the sleep set are kept in this
                # state's canonical numbering).  A step that depends on everything
                # needs neither: its footprint is EVERYTHING in any numbering and
                # wakes the whole sleep set.
                ids = fingerprint_map(self.roots(), track=True)[1]
            return path.replay(options, ids)
        budget = path.budget(self.driver.results)
        fp, ids2 = fingerprint_map(self.roots(), budget, track=self.sleeping)
        return path.fresh(options, fp, True, ids2 if self.sleeping else None)

    def _measurable(self, choice: Decision) -> bool:
        """The step after ``choice`` has a footprint finer than EVERYTHING (see
        :meth:`_measure`): a commit, an NMI raise, or a plain advance of the chosen
        CPU's flow."""
        if choice[0] == "mem":
            return True
        if choice[0] == "nmi":
            return self.fine_nmis
        if choice[0] in ("cpu", "late"):
            return self._plain_advance(int(choice[1]), choice[0] == "late")
        return False

    def _measure(
        self, j: int, plain: int | None, late: bool = False, nmi: int | None = None
    ) -> None:
        """Measure the footprint of the step after decision ``j`` (sleep sets): the
        step of CPU ``plain`` if it is a plain advance of its flow, else (None, or
        not plain) it depends on everything.  ``plain=-1``: a store-buffer commit.

        ``nmi``: the step raises an NMI on that CPU.  It runs no model code: it queues
        the NMI (delivered at the CPU's next step, a step of its own) and spends the
        budget.  Its footprint (with ``fine_nmis``) writes that CPU's control flow and
        the budget, and reads the CPU's IRQ flag (whether an IPI there would be taken
        first); every plain step of a CPU writes its control flow.  So an NMI raise
        commutes with other CPUs' plain steps and with commits, and not with the
        CPU's own steps or another NMI.  Without ``fine_nmis`` it depends on
        everything (the reduction before; tests compare the two)."""
        if not self.sleeping or j < len(self.path.prefix) - 1:
            return
        core = self.core
        assert core is not None
        if nmi is not None and self.fine_nmis:
            cpu = core.k.hw.cpus[nmi]
            fixed = Footprint({(id(cpu), "irqs_enabled")}, {(id(cpu), CONTROL)})
            fixed.writes.add((id(core.k), NMI_BUDGET))
            self.measuring = (j, False, fixed)
            core.after_step = self._stepped
            return
        begun = plain == -1 or (plain is not None and self._plain_advance(plain, late))
        self.measuring = (j, begun, None)
        core.after_step = self._stepped
        if begun:
            control = None
            if self.fine_nmis and plain is not None and plain >= 0:
                control = (id(core.k.hw.cpus[plain]), CONTROL)
            fp = footprint.begin()
            if control is not None:
                fp.writes.add(control)
            if plain is not None and plain >= 0:
                p = core.stacks[plain][-1].pending
                if isinstance(p, Wait):
                    p.cond()  # what the spin reads decides whether it can complete

    def _stepped(self) -> None:
        """The core's ``after_step``: the measured step is over."""
        m = self.measuring
        assert m is not None
        self.measuring = None
        j, begun, fixed = m
        if fixed is None:
            fixed = footprint.end() if begun else EVERYTHING
        self.path.stepped(j, fixed)

    def schedule(self, runnable: list[int], actions: list[str]) -> int | str:
        core = self.core
        assert core is not None
        path = self.path
        self.asked_at = core.steps
        if not self._active():  # the setup: no choices, but the scenario's schedule
            default = default_choice(runnable, actions)  # must still say what was
            path.schedule.append(default)  # picked wherever it is read
            return default
        mem = core.k.mem
        if mem is not None:  # a CPU whose store buffer is full stalls until a commit
            depth = self.bound.store_buffer
            full = [c for c in runnable if mem.depth(c) >= depth]
            if full and len(full) + len(actions) > 0:
                runnable = [c for c in runnable if c not in full]
        options: list[Decision] = [("cpu", c) for c in runnable]
        options += [("mem", a) for a in actions if a.startswith("sb")]
        options += [("late", int(a[4:])) for a in actions if a.startswith("late")]
        options = [o for o in options if o[0] != "late" or o[1] in runnable]
        labels: dict[int, str] = {}
        if path.nmis_left > 0:
            for c in runnable:
                label = self._nmi_able(c)
                if label is not None:
                    labels[c] = label
                    options += [("nmi", c, kind) for kind in path.nmi_kinds(c, label)]
        if len(options) == 1:
            only: int | str = runnable[0] if runnable else actions[0]
            path.schedule.append(only)
            return only
        j = len(path.points)
        choice = self._decide(options)
        if choice[0] == "mem":  # the commit's footprint: what the store touches
            self._measure(j, -1)
            path.schedule.append(choice[1])
            return str(choice[1])
        if choice[0] == "late":
            self._measure(j, int(choice[1]), late=True)
            path.schedule.append(f"late{choice[1]}")
            return f"late{choice[1]}"
        c = int(choice[1])
        path.schedule.append(c)
        if choice[0] == "nmi":
            self._measure(j, None, nmi=c)
            self._raise_nmi(c, labels[c], str(choice[2]))
        else:
            self._measure(j, c)
        return c

    def _raise_nmi(self, c: int, label: str, kind: str) -> None:
        """Record the NMI chosen before CPU ``c``'s next ``label``; :meth:`nmi` fires
        it when the core asks at that step."""
        core = self.core
        assert core is not None
        path = self.path
        spec = NmiSpec(c, label, core.counts[(c, label)] + 1, kind)
        self.nmis.append(spec)
        path.nmis.append(spec)
        path.nmis_left -= 1
        if self.bound.nmi_menu is not None:
            path.nmi_menu.remove((c, label.split(":", 1)[0], kind))
        self.nmi_now = (core.steps, c, len(self.nmis) - 1)

    def nmi(self, cpu: int, label: str, nth: int) -> str | None:
        core = self.core
        assert core is not None
        now = self.nmi_now
        if now is not None:
            self.nmi_now = None
            if now[0] == core.steps and now[1] == cpu:
                self.nmi_fired.add(now[2])
                return self.nmis[now[2]].kind
        if self.asked_at == core.steps:
            return None  # schedule() decided this step (a CPU, not an NMI)
        path = self.path
        if path.nmis_left <= 0 or not self._active():
            return None
        if self._nmi_able(cpu) is None:
            return None
        # One CPU alone can step: its step, or an NMI before it.
        options: list[Decision] = [("cpu", cpu)]
        options += [("nmi", cpu, kind) for kind in path.nmi_kinds(cpu, label)]
        if len(options) == 1:
            return None
        j = len(path.points)
        choice = self._decide(options)
        if choice[0] == "cpu":
            self._measure(j, cpu)
            return None
        self._measure(j, None, nmi=cpu)
        self._raise_nmi(cpu, label, str(choice[2]))
        self.nmi_now = None
        self.nmi_fired.add(len(self.nmis) - 1)
        return str(choice[2])

    def preempt(self, cpu: int, label: str, nth: int) -> int | None:
        """``need_resched()`` is a choice within the preemption budget: not preempted,
        or preempted and resumed on any online CPU (recorded as a PreemptSpec)."""
        core = self.core
        assert core is not None
        path = self.path
        if path.preempts_left <= 0 or not self._active():
            return None
        footprint.poison_everything()  # the outcome is a choice: no commuting
        options: list[Decision] = [("preempt", None)]
        options += [("preempt", t) for t in core.k.online_cpus()]
        decided = path.replay(options) if path.replaying else path.fresh(options, None, False)
        to = decided[1]
        if to is None:
            return None
        spec = PreemptSpec(cpu, label, nth, int(to))
        self.preempts.append(spec)
        self.preempt_fired.add(len(self.preempts) - 1)
        path.preempts.append(spec)
        path.preempts_left -= 1
        return int(to)

    def fault(self, site: str, cpu: int, counts: FaultCounts) -> FaultSpec | None:
        path = self.path
        sites = self.bound.fault_sites
        if path.faults_left <= 0 or (sites and site not in sites) or not self._active():
            return None
        kinds = list(SITES[site][0])
        if self.bound.fault_menu is not None:
            kinds = [k for k in kinds if (site, k) in path.fault_menu]
            if not kinds:
                return None
        footprint.poison_everything()  # the step's outcome is a choice: no commuting
        options: list[Decision] = [("fault", None)] + [("fault", k) for k in kinds]
        decided = path.replay(options) if path.replaying else path.fresh(options, None, False)
        kind = decided[1]
        if kind is None:
            return None
        spec = FaultSpec(site, counts[(site, cpu)], cpu, kind)
        path.faults.append(spec)
        path.faults_left -= 1
        if self.bound.fault_menu is not None:
            path.fault_menu.remove((site, str(kind)))
        return spec
