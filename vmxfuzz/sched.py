"""The stepping core: per-CPU contexts stepped, every choice asked of a chooser.

Every model function is a generator; a flow yields a step label (``str``) *before*
each observable action, or a :class:`Wait` when it spins.  This module is mechanism
only; the run's nondeterminism is decided by one :class:`~vmxfuzz.choosers.base.Chooser`
(replaying a scenario by default, :mod:`vmxfuzz.choosers.replay`):

* which runnable CPU executes its next step (asked only where more than one could);
* whether an NMI arrives before a step (asked only before the labels it names);
* whether a task is preempted at a preemption point, and where it resumes (the model
  asks :meth:`Scheduler.preempt_target` where the kernel reads ``need_resched()``, and
  switches with a :class:`Migrate` step);
* fault outcomes (the kernel's :class:`FaultPlan` asks the same chooser);
* in weak-memory mode, store-buffer commits and IPIs taken late.

Most steps are not choice points: while one CPU alone can step, the core runs it in a
tight loop (:meth:`Scheduler._run_on`), also while other CPUs could step if the
chooser said how long its answer stands (:meth:`~vmxfuzz.choosers.base.Chooser.stint`);
trace events are recorded as tuples, and only when a trace is wanted.

Each CPU has a stack of contexts: a task, then IPI handlers (only while the CPU's
IRQs are enabled) and NMI handlers (unless already in one: then it is latched) pushed
on top.  The crash shootdown halts a CPU, discarding its stack: the interrupted code
never resumes.  A fault escaping a context is an oops; what follows is the kernel's
``oops_end`` policy (see :meth:`Scheduler._oops`).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .machine.errors import MachineFault
from .machine.memory import obj_name
from .machine.weakmem import action_cpu

if TYPE_CHECKING:
    from .choosers.base import Chooser, Stint

Flow = Generator[Any, Any, Any]
FlowFactory = Callable[[], Flow]


@dataclass
class Wait:
    """Spin until ``cond()``; with ``timeout`` the wait may give up (bounded wait)."""

    label: str
    cond: Callable[[], bool]
    what: str = ""
    timeout: bool = False
    sleeping: bool = False  # a mutex/completion wait: the CPU may run another task


@dataclass
class NmiSpec:
    cpu: int
    before: str
    nth: int = 1
    kind: str = "panic"  # "panic" | "benign"


@dataclass(frozen=True)
class RunEntry:
    """One run of an anchored schedule (format v4): CPU ``cpu`` runs until it has
    executed its ``nth`` ``until`` (see :mod:`vmxfuzz.choosers.anchored`)."""

    cpu: int
    until: str | None = None
    nth: int = 1

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {"cpu": self.cpu}
        if self.until is not None:
            d["until"] = self.until
            d["nth"] = self.nth
        return d


@dataclass
class PreemptSpec:
    """Preempt the task at the ``nth`` execution (on CPU ``cpu``) of the preemption
    point labelled ``at``; it resumes on CPU ``to`` (the same CPU: no migration)."""

    cpu: int
    at: str
    nth: int = 1
    to: int = 0


@dataclass
class Migrate:
    """A context switch (``__schedule`` -> ``context_switch``): executing this step
    takes the task off its CPU; it resumes on CPU ``to`` (once that CPU is idle or its
    task sleeps), where its first step is ``resume``."""

    label: str
    to: int
    resume: str


@dataclass(eq=False)  # a context is itself: stacks find and remove it by identity
class Context:
    kind: str  # "task" | "ipi" | "nmi"
    name: str
    cpu: int
    gen: Flow
    on_done: Callable[[Any], None] | None = None
    on_oops: Callable[[MachineFault], None] | None = None
    pending: Any = None
    label: str = ""
    saved_irqs: bool = True
    crash: bool = False  # running the crash (kdump) path
    send_value: Any = None
    preempt_count: int = 0  # preempt_disable() depth of this task
    preempt_notifier: Any = None  # the vCPU whose preempt notifier this task registered

    @property
    def context_kind(self) -> str:
        return "crash" if self.crash else self.kind


@dataclass
class IpiRequest:
    target: int
    name: str
    factory: FlowFactory
    done: bool = False
    sender: int = -1


@dataclass
class TraceEvent:
    seq: int
    cpu: int
    context: str
    name: str
    label: str
    nth: int

    def as_list(self) -> list[Any]:
        return [self.cpu, self.context, self.name, self.label, self.nth]


@dataclass
class Task:
    name: str
    factory: FlowFactory
    on_done: Callable[[Any], None] | None = None
    on_oops: Callable[[MachineFault], None] | None = None
    preempt: bool = False  # a stopper/hotplug thread: runs over a sleeping task


class Scheduler:
    """The stepping core: runs all CPUs' flows deterministically, one step at a time.

    Mechanism only.  Every nondeterministic decision is asked of ``chooser`` (see
    :mod:`vmxfuzz.choosers`); without one, the core replays ``schedule`` and ``nmis``
    (:class:`~vmxfuzz.choosers.replay.ReplayChooser`).  Subclasses that override
    ``_choose``/``step``/``_advance`` (the explorer's, until it plugs a chooser) keep
    working: the core then asks at every step and never takes the fast path.
    """

    def __init__(
        self,
        k: Any,
        ncpus: int,
        schedule: list[int | str] | None = None,
        nmis: list[NmiSpec] | None = None,
        max_steps: int = 200_000,
        preempts: list[PreemptSpec] | None = None,
        *,
        chooser: Chooser | None = None,
        trace: bool = True,
    ) -> None:
        if chooser is None:
            from .choosers.replay import ReplayChooser

            chooser = ReplayChooser(schedule or (), nmis or (), preempts=preempts or ())
        self.k = k
        self.ncpus = ncpus
        self.stacks: list[list[Context]] = []
        self.ipis: list[deque[IpiRequest]] = []
        self.nmi_pending: list[deque[tuple[str, FlowFactory]]] = []
        self.tasks: list[deque[Task]] = []
        # Task contexts migrated here from a CPU that went offline, waiting to resume.
        self.migrated: list[deque[Context]] = []
        for _ in range(ncpus):  # one loop: built for every run, comprehensions cost
            self.stacks.append([])
            self.ipis.append(deque())
            self.nmi_pending.append(deque())
            self.tasks.append(deque())
            self.migrated.append(deque())
        self.chooser: Chooser = chooser
        # Per-CPU step counts by label or key (missing: 0; see :meth:`run` for which).
        self.counts: defaultdict[tuple[int, str], int] = defaultdict(int)
        # Trace events as tuples (cpu, context, name, label, nth); see :attr:`trace`.
        self.events: list[tuple[int, str, str, str, int]] = []
        self.tracing = trace
        self.ended: str | None = None
        self.max_steps = max_steps
        self.steps = 0
        self.nmi_handler: Callable[[str], FlowFactory] | None = None
        # Per CPU, the step its code was at when the latest NMI arrived (crash sites).
        self.interrupted: dict[int, str] = {}
        # Set by every service that can make another CPU runnable or end a context:
        # the fast path (:meth:`_run_on`) stops at it.
        self.changed = False
        # Per CPU, the key of its latest step (a label or a :meth:`_did` key); kept up
        # to date where every label is counted (a trace, or ``counted_labels`` None).
        self.last: list[str | None] = [None] * ncpus
        # Hooks for a chooser that observes steps (the explorer measures the footprint
        # of the step after each decision): ``after_step`` is called once, right after
        # the next step (it is cleared first); ``on_context_end`` whenever a context
        # finishes or is killed.  None: nothing observes (no cost).
        self.after_step: Callable[[], None] | None = None
        self.on_context_end: Callable[[], None] | None = None
        chooser.attach(self)

    # ---- the chooser's account, in scenario terms (read by explore and Result) ---------
    @property
    def nmis(self) -> list[NmiSpec]:
        return self.chooser.nmis

    @property
    def nmi_fired(self) -> set[int]:
        return self.chooser.nmi_fired

    @property
    def preempts(self) -> list[PreemptSpec]:
        return self.chooser.preempts

    @preempts.setter
    def preempts(self, specs: list[PreemptSpec]) -> None:
        self.chooser.preempts = list(specs)

    @property
    def preempt_fired(self) -> set[int]:
        return self.chooser.preempt_fired

    @property
    def schedule(self) -> list[int | str]:
        return list(getattr(self.chooser, "entries", ()))

    @property
    def trace(self) -> list[TraceEvent]:
        """The recorded steps as :class:`TraceEvent` objects (built on demand)."""
        return [TraceEvent(i, *e) for i, e in enumerate(self.events)]

    # ---- services for model code ----------------------------------------------------
    def submit(self, cpu: int, task: Task) -> None:
        self.changed = True
        if task.preempt:
            self.tasks[cpu].appendleft(task)
        else:
            self.tasks[cpu].append(task)

    def _preemptible(self, c: int) -> bool:
        """A preempting task is queued and the CPU's current task is asleep."""
        q = self.tasks[c]
        if not q or not q[0].preempt:
            return False
        st = self.stacks[c]
        return not st or (
            st[-1].kind == "task" and isinstance(st[-1].pending, Wait) and st[-1].pending.sleeping
        )

    def send_ipi(self, target: int, name: str, factory: FlowFactory) -> IpiRequest:
        req = IpiRequest(target, name, factory, sender=self.k.cpu)
        self.changed = True
        self.ipis[target].append(req)
        return req

    def send_nmi(self, target: int, name: str, factory: FlowFactory) -> None:
        self.changed = True
        self.nmi_pending[target].append((name, factory))

    def migrate_tasks(self, dying: int, to: int) -> None:
        """``sched_cpu_dying``: move the sleeping task contexts off a dying CPU.

        Only tasks below the running context (asleep when the stopper preempted them)
        move; each resumes on ``to`` when that CPU is free, and code after the move
        sees ``smp_processor_id() == to``.
        """
        self.changed = True
        st = self.stacks[dying]
        keep = st[-1:] if st else []
        for ctx in st[:-1]:
            if ctx.kind == "task":
                ctx.cpu = to
                self.migrated[to].append(ctx)
        self.stacks[dying] = keep

    def preempt_target(self, c: int) -> int | None:
        """``need_resched()`` at the preemption point CPU ``c``'s task just executed
        (its current label): the CPU it is to resume on if the scenario preempts it
        here, else None.  Each spec fires once."""
        ctx = self.stacks[c][-1]
        return self.chooser.preempt(c, ctx.label, self.counts[(c, ctx.label)])

    def _switch(self, ctx: Context, m: Migrate) -> None:
        """The task leaves its CPU; the next one there starts with IRQs on (its
        ``finish_task_switch``)."""
        src = ctx.cpu
        self._fence(src)
        self.stacks[src].remove(ctx)
        self.k.hw.cpus[src].irqs_enabled = True
        ctx.cpu = m.to
        ctx.pending = m.resume
        self.migrated[m.to].append(ctx)

    def _resumable(self, c: int) -> bool:
        """A task migrated here can resume: the CPU is idle or its task sleeps."""
        if not self.migrated[c]:
            return False
        st = self.stacks[c]
        return not st or (
            st[-1].kind == "task" and isinstance(st[-1].pending, Wait) and st[-1].pending.sleeping
        )

    def in_nmi(self, cpu: int) -> bool:
        return any(c.kind == "nmi" for c in self.stacks[cpu])

    def current(self) -> Context | None:
        st = self.stacks[self.k.cpu]
        return st[-1] if st else None

    def halt(self, cpu: int) -> None:
        """Halt forever: the stack is discarded and nothing on this CPU runs again."""
        self.changed = True
        self.stacks[cpu] = []
        self.ipis[cpu].clear()
        self.nmi_pending[cpu].clear()
        self.tasks[cpu].clear()
        self.k.hw.cpus[cpu].halted = True

    def end(self, reason: str) -> None:
        self.changed = True
        if self.ended is None:
            self.ended = reason

    def idle(self) -> bool:
        """A quiescent point: no CPU is inside any flow (queued ops have not started)."""
        return (
            not any(self.stacks)
            and not any(self.ipis)
            and not any(self.nmi_pending)
            and not any(self.migrated)
        )

    # ---- stepping ----------------------------------------------------------------------
    def _where(self, c: int) -> str:
        """What CPU ``c`` is doing now: the label its top context is about to run."""
        st = self.stacks[c]
        if not st:
            return "idle"
        p = st[-1].pending
        return str(p.label if isinstance(p, (Wait, Migrate)) else p)

    def _deliverable_ipi(self, c: int) -> bool:
        return bool(self.ipis[c]) and self.k.hw.cpus[c].irqs_enabled and not self.in_nmi(c)

    def can_step(self, c: int) -> bool:
        if self.k.hw.cpus[c].halted:
            return False
        q = self.tasks[c]
        if self.nmi_pending[c] or self.ipis[c] or self.migrated[c] or (q and q[0].preempt):
            return self._can_step_rules(c)
        # Nothing to deliver, resume or preempt with: only the current flow (or a
        # queued task, on an idle CPU) can step -- the common case, decided at once.
        st = self.stacks[c]
        if st:
            p = st[-1].pending
            return not isinstance(p, Wait) or bool(p.cond())
        return bool(q)

    def _can_step_rules(self, c: int) -> bool:
        if self.nmi_pending[c] and not self.in_nmi(c):
            return True
        if self._deliverable_ipi(c):
            return True
        if self._preemptible(c):
            return True
        st = self.stacks[c]
        if self._resumable(c):
            return True
        if st:
            p = st[-1].pending
            return not isinstance(p, Wait) or bool(p.cond())
        return bool(self.tasks[c])

    def _choose(self, runnable: list[int], commits: list[str]) -> int | str:
        """Ask the chooser where there is a choice: a CPU to step or, in weak-memory
        mode, a store-buffer commit (``"sbC"``/``"sbC.I"``) or a step that leaves a
        deliverable IPI pending (``"lateC"``).  With one option, that option (unless
        the chooser wants to see every step)."""
        if len(runnable) + len(commits) > 1 or self.chooser.every_step:
            return self.chooser.schedule(runnable, commits)
        return commits[0] if commits else runnable[0]

    def commit(self, action: str) -> None:
        """A buffered store becomes visible to the other CPUs (weak-memory mode); the
        trace shows it in the storing CPU's lane, so a timeline says when it landed."""
        mem = self.k.mem
        assert mem is not None
        store = mem.commit(action)
        label = f"commit:{store.attr}"
        c = action_cpu(action)
        self.counts[(c, label)] += 1
        n = self.counts[(c, label)]
        what = f"{obj_name(store.obj)}.{store.attr} = {obj_name(store.value)}"
        if self.tracing:
            self.events.append((c, "mem", what, label, n))

    def _fence(self, c: int) -> None:
        """A full barrier on CPU ``c`` (weak-memory mode): context switches and IPI
        entry/exit order everything the CPU stored before."""
        mem = self.k.mem
        if mem is not None:
            mem.fence(c)

    def _push(self, ctx: Context) -> None:
        self.changed = True
        if ctx.kind != "nmi":
            self._fence(ctx.cpu)
        self.stacks[ctx.cpu].append(ctx)
        self._advance(ctx, first=True)

    def _record(self, c: int, ctx: Context, label: str) -> int:
        key = (c, label)
        n = self.counts[key] + 1
        self.counts[key] = n
        self.last[c] = label
        if self.tracing:
            self.events.append((c, "crash" if ctx.crash else ctx.kind, ctx.name, label, n))
        return n

    def _advance(self, ctx: Context, first: bool = False) -> None:
        """Run ``ctx`` up to its next yield (the pending step is executed first)."""
        k = self.k
        k.cpu = ctx.cpu
        k.ctx = ctx
        if not first:
            p = ctx.pending
            label = p.label if isinstance(p, (Wait, Migrate)) else p
            ctx.label = label
            self._record(ctx.cpu, ctx, label)
            if isinstance(p, Migrate):
                self._switch(ctx, p)
                return
        value, ctx.send_value = ctx.send_value, None
        try:
            ctx.pending = ctx.gen.send(value) if not first else next(ctx.gen)
        except StopIteration as stop:
            self._finish(ctx, stop.value)
        except MachineFault as fault:
            self._oops(ctx, fault)

    def _finish(self, ctx: Context, value: Any) -> None:
        self.changed = True
        if self.on_context_end is not None:
            self.on_context_end()
        if ctx.kind != "nmi":
            self._fence(ctx.cpu)
        st = self.stacks[ctx.cpu]
        if ctx in st:
            st.remove(ctx)
        if ctx.kind == "ipi":
            self.k.hw.cpus[ctx.cpu].irqs_enabled = ctx.saved_irqs
        if ctx.on_done is not None:
            ctx.on_done(value)

    def _oops(self, ctx: Context, fault: MachineFault) -> None:
        """``oops_end``: kill a task; panic in interrupt context; a crash path dies."""
        k = self.k
        self.changed = True
        if self.on_context_end is not None:
            self.on_context_end()
        k.oracle.fault(k, ctx, fault)
        st = self.stacks[ctx.cpu]
        if ctx.crash:
            # Oops (or hang) while dumping: the kdump kernel is never reached.
            self.end(f"oops in crash path on CPU {ctx.cpu}")
            return
        if ctx in st:
            idx = st.index(ctx)
            del st[idx:]
        if ctx.kind in ("ipi", "nmi") or ctx.name == "cpu_bringup":
            # in_interrupt(): panic("Fatal exception in interrupt") on this CPU; the
            # STARTING callbacks of CPU bring-up run in the idle task, which cannot be
            # killed: that panics too ("Attempted to kill the idle task!").
            panic = Context(ctx.kind, "panic(fatal exception)", ctx.cpu, k.f.panic(k, "oops"))
            self._push(panic)
            return
        k.hw.cpus[ctx.cpu].irqs_enabled = True  # do_exit() re-enables IRQs
        if ctx.on_oops is not None:
            ctx.on_oops(fault)

    def late_ipis(self) -> list[str]:
        """Weak-memory mode: IPI delivery is asynchronous too.  ``"lateC"`` steps
        CPU C's current flow although an IPI is deliverable there (it arrives later);
        a plain ``C`` takes the IPI first, as without weak memory."""
        if self.k.mem is None:
            return []
        out = []
        for c in range(self.ncpus):
            st = self.stacks[c]
            if not self.ipis[c] or not st:
                continue  # asked before every step: IPIs are rarely pending
            if not self._deliverable_ipi(c) or self.k.hw.cpus[c].halted:
                continue
            if self.nmi_pending[c] and not self.in_nmi(c):
                continue
            p = st[-1].pending
            if not isinstance(p, Wait) or p.cond():
                out.append(f"late{c}")
        return out

    def step(self, c: int, late: bool = False) -> None:
        k = self.k
        cpu = k.hw.cpus[c]
        st = self.stacks[c]
        if self.nmi_pending[c] and not self.in_nmi(c):
            name, factory = self.nmi_pending[c].popleft()
            self._did(c, f"nmi>{name}")
            k.cpu = c
            self.interrupted[c] = self._where(c)
            self._push(Context("nmi", name, c, factory()))
            return
        if self._deliverable_ipi(c) and not late:
            req = self.ipis[c].popleft()
            self._did(c, f"ipi>{req.name}")
            k.cpu = c
            saved = cpu.irqs_enabled
            cpu.irqs_enabled = False

            def done(_: Any, req: IpiRequest = req) -> None:
                req.done = True

            ctx = Context("ipi", req.name, c, req.factory(), on_done=done, saved_irqs=saved)
            self._push(ctx)
            return
        if self._resumable(c):
            ctx = self.migrated[c].popleft()
            self._did(c, f"resume>{ctx.name}")
            self.stacks[c].append(ctx)  # resumes at its next step
            return
        if not st or self._preemptible(c):
            task = self.tasks[c].popleft()
            self._did(c, f"task>{task.name}")
            if not cpu.online and not task.preempt:
                # Queued before its CPU went offline: the task migrates away in the
                # kernel; in the scenario the op did not run on this CPU.
                if task.on_done is not None:
                    task.on_done("cpu offline")
                return
            k.cpu = c
            self._push(Context("task", task.name, c, task.factory(), task.on_done, task.on_oops))
            return
        ctx = st[-1]
        p = ctx.pending
        label = p.label if isinstance(p, (Wait, Migrate)) else p
        if isinstance(label, str) and self._nmi_trigger(c, label):
            self._did(c, f"nmi@{label}")
            return  # the NMI runs first (for a spin: just before the spin completes)
        self._advance(ctx)

    def _did(self, c: int, key: str) -> None:
        """CPU ``c``'s step was ``key`` (not a flow's label): the delivery of an NMI
        or IPI (``nmi>NAME``, ``ipi>NAME``), the start of a queued task
        (``task>OP``), the resumption of a migrated one (``resume>OP``), or an NMI
        raised before ``label`` (``nmi@LABEL``).  Counted per CPU like labels, so
        every step of a CPU is nameable as "its n-th KEY" (anchors)."""
        n = self.counts[(c, key)] + 1
        self.counts[(c, key)] = n
        self.last[c] = key

    def _nmi_trigger(self, c: int, label: str) -> bool:
        """Ask the chooser whether NMIs arrive before CPU ``c``'s next ``label``; the
        first one runs before the step (one raised inside an NMI handler is latched)."""
        n = self.counts[(c, label)] + 1
        while (kind := self.chooser.nmi(c, label, n)) is not None:
            assert self.nmi_handler is not None
            self.changed = True
            self.nmi_pending[c].append((f"NMI({kind})", self.nmi_handler(kind)))
            if not self.in_nmi(c):
                return True  # delivered before the step; the step runs after it
        return False

    def run(self) -> str:
        """Step until the machine ends or nothing can run; returns how it ended."""
        k = self.k
        cls = type(self)
        chooser = self.chooser
        fast = (
            not chooser.every_step
            and cls._choose is Scheduler._choose
            and cls.step is Scheduler.step
            and cls._advance is Scheduler._advance
            and cls._record is Scheduler._record
            and cls._nmi_trigger is Scheduler._nmi_trigger
        )
        watch = chooser.nmi_labels
        sets = (watch, chooser.preempt_labels, chooser.counted_labels)
        # Labels the fast path counts: all of them (a trace, or a chooser that reads
        # any), else only those a chooser may ask about.
        count_all = self.tracing or any(x is None for x in sets)
        counted: frozenset[str] = frozenset().union(*(x for x in sets if x is not None))
        ncpus = range(self.ncpus)
        can_step = self.can_step
        while self.ended is None:
            runnable = [c for c in ncpus if can_step(c)]
            commits = k.mem.actions() + self.late_ipis() if k.mem is not None else []
            if not runnable and not commits:
                if self._expire_timeout():
                    continue
                blocked = [
                    (c, st[-1])
                    for c, st in enumerate(self.stacks)
                    if st and not k.hw.cpus[c].halted
                ]
                if blocked:
                    k.oracle.hang(k, blocked)
                    self.end("hang")
                    break
                if any(self.tasks[c] or self.ipis[c] for c in ncpus):
                    stuck = [c for c in ncpus if self.tasks[c] or self.ipis[c]]
                    k.oracle.hang_undeliverable(k, stuck)
                    self.end("hang")
                    break
                self.end("idle")
                break
            self.steps += 1
            if self.steps > self.max_steps:
                self.end("step limit")
                break
            asked = len(runnable) + len(commits) > 1
            choice = self._choose(runnable, commits)
            if isinstance(choice, str) and choice.startswith("late"):
                self.step(int(choice[4:]), late=True)
            elif isinstance(choice, str):
                self.commit(choice)
                if self.after_step is not None:
                    self._observed()
                continue
            else:
                self.step(choice)
            if self.after_step is not None:
                self._observed()
            if self.idle() and self.ended is None:
                k.oracle.quiescent(k)
            elif fast and isinstance(choice, int):
                stint = chooser.stint(choice) if asked else None
                if stint is not None or len(runnable) == 1:
                    self._run_on(choice, watch, count_all, counted, stint)
        return self.ended or "idle"

    def _static_can_step(self, d: int) -> Callable[[], bool] | bool:
        """Whether CPU ``d`` can step, as :meth:`can_step` decides it, for as long as
        ``d`` itself does not step and nothing sets :attr:`changed`: a bool, or the
        condition of the :class:`Wait` its answer hangs on (another CPU's steps can
        change that one)."""
        if self.k.hw.cpus[d].halted:
            return False
        q = self.tasks[d]
        st = self.stacks[d]
        if self.nmi_pending[d] or self.ipis[d] or self.migrated[d] or (q and q[0].preempt):
            if self.nmi_pending[d] and not self.in_nmi(d):
                return True
            if self._deliverable_ipi(d) or self._preemptible(d) or self._resumable(d):
                return True
        if st:
            p = st[-1].pending
            return p.cond if isinstance(p, Wait) else True
        return bool(q)

    def _run_on(
        self,
        c: int,
        watch: frozenset[str] | None,
        count_all: bool,
        counted: frozenset[str],
        stint: Stint | None,
    ) -> None:
        """The fast path: step CPU ``c`` in a tight loop until a step where a choice
        could matter.

        Exactly what :meth:`run` would do step by step, without recomputing who is
        runnable.  Every other CPU's runnability is fixed while it does not step
        (:meth:`_static_can_step`) except for the :class:`Wait` conditions it hangs
        on, which are re-checked before each step; anything that could change the
        rest (an IPI, NMI or task sent, a context pushed, finished or killed, a halt,
        the end) sets :attr:`changed` and ends the loop, as does a pending that is
        neither a plain step nor a spin whose condition holds, and the step limit.
        A step where another CPU could step too is a choice point: without a
        ``stint`` the loop ends there (the chooser is asked); under one, ``c`` is
        chosen while the stint holds (its anchor not yet reached, its points not used
        up) and the points used are reported to the chooser.  The chooser is asked
        about an NMI before the labels in ``watch`` (every label: None), as
        :meth:`step` does; labels are counted when ``count_all`` or in ``counted``
        (someone reads those counts).  In weak-memory mode the loop runs only while
        every store buffer is empty and no IPI is pending (a buffered store's commit
        and a late IPI are options too): the step that buffers a store ends it.
        """
        st = self.stacks[c]
        if self.ended is not None or not st or self.ipis[c] or self.nmi_pending[c]:
            return
        k = self.k
        mem = k.mem
        if mem is not None and (any(mem.buffers) or any(self.ipis)):
            return  # weak memory: a commit or a late IPI is an option at every step
        others = 0
        conds: list[Callable[[], bool]] = []
        for d in range(self.ncpus):
            if d != c:
                how = self._static_can_step(d)
                if how is True:
                    others += 1
                elif how is not False:
                    conds.append(how)
        if others and stint is None:
            return
        until, nth, points = stint if stint is not None else (None, 0, None)
        used = 0
        ctx = st[-1]
        send = ctx.gen.send
        counts = self.counts
        events = self.events
        tracing = self.tracing
        last = self.last
        limit = self.max_steps
        steps = self.steps
        every = watch is None
        if watch is None:
            watch = frozenset()
        c = ctx.cpu
        k.cpu = c
        k.ctx = ctx
        self.changed = False
        pending = ctx.pending
        try:
            while True:
                if type(pending) is str:
                    label = pending
                elif type(pending) is Wait and pending.cond():
                    label = pending.label  # a spin whose condition holds: a step
                else:
                    return  # a blocked spin, a context switch: the general path
                if others or conds:
                    point = others > 0
                    if not point:
                        for cond in conds:
                            if cond():
                                point = True
                                break
                    if point:
                        if stint is None:
                            return
                        if until is not None and counts[(c, until)] >= nth:
                            return
                        if points is not None and used >= points:
                            return
                        used += 1
                steps += 1
                if steps > limit:
                    self.steps = steps
                    self.end("step limit")
                    return
                observed = False
                if every or label in watch:
                    self.steps = steps
                    if self._nmi_trigger(c, label):
                        self._did(c, f"nmi@{label}")
                        if self.after_step is not None:
                            self._observed()
                        return  # the NMI runs first: the next step delivers it
                    observed = self.after_step is not None
                ctx.label = label
                if count_all:
                    key = (c, label)
                    n = counts[key] + 1
                    counts[key] = n
                    last[c] = label
                    if tracing:
                        events.append((c, "crash" if ctx.crash else ctx.kind, ctx.name, label, n))
                elif label in counted:
                    counts[(c, label)] += 1
                value, ctx.send_value = ctx.send_value, None
                try:
                    pending = ctx.pending = send(value)
                except StopIteration as stop:
                    self.steps = steps
                    self._finish(ctx, stop.value)
                except MachineFault as fault:
                    self.steps = steps
                    self._oops(ctx, fault)
                if observed:
                    self._observed()
                if mem is not None and mem.buffers[c]:
                    self.changed = True  # a buffered store: its commit is an option
                if self.changed:
                    self.steps = steps
                    if self.idle() and self.ended is None:
                        k.oracle.quiescent(k)
                    return
        finally:
            self.steps = steps
            if used:
                self.chooser.stinted(c, used)

    def _observed(self) -> None:
        """The step a chooser asked to observe is over: call its ``after_step``."""
        probe, self.after_step = self.after_step, None
        if probe is not None:
            probe()

    def _expire_timeout(self) -> bool:
        for c, st in enumerate(self.stacks):
            if st and isinstance(st[-1].pending, Wait) and st[-1].pending.timeout:
                if self.k.hw.cpus[c].halted:
                    continue
                ctx = st[-1]
                ctx.send_value = "timeout"
                self._advance(ctx)
                return True
        return False
