"""Per-CPU contexts stepped under an explicit schedule.

Every model function is a generator; a flow yields a step label (``str``) *before*
each observable action, or a :class:`Wait` when it spins.  The scheduler owns the only
nondeterminism of a run, and takes every choice from the scenario:

* which runnable CPU executes its next step (``schedule``, consumed only where more
  than one CPU could step; afterwards the lowest runnable CPU steps);
* NMIs "before the n-th execution of label L on CPU c" (benign or panic);
* preemptions "at the n-th execution of preemption point L on CPU c, the task
  resumes on CPU d" (:class:`PreemptSpec`; the model asks :meth:`Scheduler.preempt_target`
  where the kernel reads ``need_resched()``, and switches with a :class:`Migrate` step);
* fault outcomes (through the kernel's :class:`FaultPlan`, not here).

Each CPU has a stack of contexts: a task, then IPI handlers (only while the CPU's
IRQs are enabled) and NMI handlers (unless already in one: then it is latched) pushed
on top.  The crash shootdown halts a CPU, discarding its stack: the interrupted code
never resumes.  A fault escaping a context is an oops; what follows is the kernel's
``oops_end`` policy (see :meth:`Scheduler._oops`).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from .machine.errors import MachineFault
from .machine.memory import obj_name
from .machine.weakmem import action_cpu

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


@dataclass
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
    """Runs all CPUs' flows, one step at a time, deterministically."""

    def __init__(
        self,
        k: Any,
        ncpus: int,
        schedule: list[int | str] | None = None,
        nmis: list[NmiSpec] | None = None,
        max_steps: int = 200_000,
        preempts: list[PreemptSpec] | None = None,
    ) -> None:
        self.k = k
        self.ncpus = ncpus
        self.stacks: list[list[Context]] = [[] for _ in range(ncpus)]
        self.ipis: list[deque[IpiRequest]] = [deque() for _ in range(ncpus)]
        self.nmi_pending: list[deque[tuple[str, FlowFactory]]] = [deque() for _ in range(ncpus)]
        self.tasks: list[deque[Task]] = [deque() for _ in range(ncpus)]
        # Task contexts migrated here from a CPU that went offline, waiting to resume.
        self.migrated: list[deque[Context]] = [deque() for _ in range(ncpus)]
        self.schedule: list[int | str] = list(schedule or [])
        self.schedule_pos = 0
        self.nmis = list(nmis or [])
        self.nmi_fired: set[int] = set()
        self.preempts = list(preempts or [])
        self.preempt_fired: set[int] = set()
        self.counts: Counter[tuple[int, str]] = Counter()
        self.trace: list[TraceEvent] = []
        self.ended: str | None = None
        self.max_steps = max_steps
        self.steps = 0
        self.nmi_handler: Callable[[str], FlowFactory] | None = None
        # Per CPU, the step its code was at when the latest NMI arrived (crash sites).
        self.interrupted: dict[int, str] = {}

    # ---- services for model code ----------------------------------------------------
    def submit(self, cpu: int, task: Task) -> None:
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
        self.ipis[target].append(req)
        return req

    def send_nmi(self, target: int, name: str, factory: FlowFactory) -> None:
        self.nmi_pending[target].append((name, factory))

    def migrate_tasks(self, dying: int, to: int) -> None:
        """``sched_cpu_dying``: move the sleeping task contexts off a dying CPU.

        Only tasks below the running context (asleep when the stopper preempted them)
        move; each resumes on ``to`` when that CPU is free, and code after the move
        sees ``smp_processor_id() == to``.
        """
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
        n = self.counts[(c, ctx.label)]
        for i, spec in enumerate(self.preempts):
            if i in self.preempt_fired or spec.cpu != c or spec.at != ctx.label or spec.nth != n:
                continue
            self.preempt_fired.add(i)
            return spec.to
        return None

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
        self.stacks[cpu] = []
        self.ipis[cpu].clear()
        self.nmi_pending[cpu].clear()
        self.tasks[cpu].clear()
        self.k.hw.cpus[cpu].halted = True

    def end(self, reason: str) -> None:
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
        cpu = self.k.hw.cpus[c]
        if cpu.halted:
            return False
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
        """The scenario's next schedule entry where there is a choice: a CPU to step
        or, in weak-memory mode, a store-buffer commit (``"sbC"``/``"sbC.I"``) or a
        step that leaves a deliverable IPI pending (``"lateC"``).  With the entries
        used up (or naming nothing possible): buffered stores commit first, then the
        lowest runnable CPU steps (taking a deliverable IPI first)."""
        if len(runnable) + len(commits) > 1 and self.schedule_pos < len(self.schedule):
            want = self.schedule[self.schedule_pos]
            self.schedule_pos += 1
            if want in runnable or want in commits:
                return want
        sb = [a for a in commits if a.startswith("sb")]
        return sb[0] if sb else runnable[0]

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
        self.trace.append(TraceEvent(len(self.trace), c, "mem", what, label, n))

    def _fence(self, c: int) -> None:
        """A full barrier on CPU ``c`` (weak-memory mode): context switches and IPI
        entry/exit order everything the CPU stored before."""
        mem = self.k.mem
        if mem is not None:
            mem.fence(c)

    def _push(self, ctx: Context) -> None:
        if ctx.kind != "nmi":
            self._fence(ctx.cpu)
        self.stacks[ctx.cpu].append(ctx)
        self._advance(ctx, first=True)

    def _record(self, c: int, ctx: Context, label: str) -> int:
        self.counts[(c, label)] += 1
        n = self.counts[(c, label)]
        self.trace.append(TraceEvent(len(self.trace), c, ctx.context_kind, ctx.name, label, n))
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
            if not st or not self._deliverable_ipi(c) or self.k.hw.cpus[c].halted:
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
            k.cpu = c
            self.interrupted[c] = self._where(c)
            self._push(Context("nmi", name, c, factory()))
            return
        if self._deliverable_ipi(c) and not late:
            req = self.ipis[c].popleft()
            k.cpu = c
            saved = cpu.irqs_enabled
            cpu.irqs_enabled = False

            def done(_: Any, req: IpiRequest = req) -> None:
                req.done = True

            ctx = Context("ipi", req.name, c, req.factory(), on_done=done, saved_irqs=saved)
            self._push(ctx)
            return
        if self._resumable(c):
            self.stacks[c].append(self.migrated[c].popleft())  # resumes at its next step
            return
        if not st or self._preemptible(c):
            task = self.tasks[c].popleft()
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
            return  # the NMI runs first (for a spin: just before the spin completes)
        self._advance(ctx)

    def _nmi_trigger(self, c: int, label: str) -> bool:
        n = self.counts[(c, label)] + 1
        for i, spec in enumerate(self.nmis):
            if i in self.nmi_fired or spec.cpu != c or spec.before != label or spec.nth != n:
                continue
            self.nmi_fired.add(i)
            assert self.nmi_handler is not None
            self.nmi_pending[c].append((f"NMI({spec.kind})", self.nmi_handler(spec.kind)))
            if not self.in_nmi(c):
                return True  # delivered before the step; the step runs after it
        return False

    def run(self) -> str:
        """Step until the machine ends or nothing can run; returns how it ended."""
        k = self.k
        while self.ended is None:
            runnable = [c for c in range(self.ncpus) if self.can_step(c)]
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
                if any(self.tasks[c] or self.ipis[c] for c in range(self.ncpus)):
                    stuck = [c for c in range(self.ncpus) if self.tasks[c] or self.ipis[c]]
                    k.oracle.hang_undeliverable(k, stuck)
                    self.end("hang")
                    break
                self.end("idle")
                break
            self.steps += 1
            if self.steps > self.max_steps:
                self.end("step limit")
                break
            choice = self._choose(runnable, commits)
            if isinstance(choice, str) and choice.startswith("late"):
                self.step(int(choice[4:]), late=True)
            elif isinstance(choice, str):
                self.commit(choice)
                continue
            else:
                self.step(choice)
            if self.idle() and self.ended is None:
                k.oracle.quiescent(k)
        return self.ended or "idle"

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
