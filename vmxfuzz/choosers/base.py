"""The one interface through which a run's nondeterminism is decided.

Why one interface: the stepping core (:mod:`vmxfuzz.sched`) is mechanism only --
per-CPU context stacks, stepping, IPI/NMI delivery, quiescent points.  Every choice a
run depends on is asked of one :class:`Chooser` (the shape of shuttle's ``Scheduler``
trait and loom's runtime): which CPU steps, in weak-memory mode whether a buffered
store commits or a deliverable IPI is taken late, whether an NMI arrives before a
step, whether a fallible site faults.  Replaying a scenario, drawing with Hypothesis,
decoding libFuzzer bytes, exploring by DFS or sampling a PCT schedule are each a small
chooser; wrappers (:mod:`.recording`) are choosers too.

Every chooser also keeps its account in scenario terms: ``nmis`` is the list of NMIs
it has decided so far (a replaying chooser: the scenario's list) and ``nmi_fired``
the indices of those that fired, so a run's :class:`~vmxfuzz.executor.Result` says
which scenario entries took effect whatever decided them.

Speed: the core only asks where the answer can matter.  :meth:`Chooser.schedule` is
called where more than one option exists (or at every step when ``every_step`` is
set); :meth:`Chooser.nmi` only before steps whose label is in ``nmi_labels`` (``None``
asks before every step), so the core runs a lone CPU in a tight loop between them.
A chooser that knows how long its answer stands says so with :meth:`Chooser.stint`
("CPU c, until it has executed its n-th LABEL", or "for the next k choice points"):
the core then runs that CPU in the same tight loop although other CPUs could step,
and asks again only where the answer changes.  Wrappers (:class:`Wrapping`) pass
every question to the chooser they wrap unless they override it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

from ..machine.faults import FaultSpec

if TYPE_CHECKING:
    from ..sched import NmiSpec, PreemptSpec, Scheduler

FaultCounts = Mapping[tuple[str, "int | None"], int]


class Stint(NamedTuple):
    """How long a :meth:`Chooser.schedule` answer stands (see :meth:`Chooser.stint`):
    at every later choice point the same CPU is chosen, without asking, while it can
    step, has executed fewer than ``nth`` of its ``until`` steps (``None``: no such
    bound) and fewer than ``points`` choice points have passed (``None``: no bound)."""

    until: str | None = None
    nth: int = 0
    points: int | None = None


class Chooser:
    """Default answers: lowest runnable CPU, buffered stores first, no NMI, no fault.

    Subclasses override what they decide; the defaults are the "no more choices"
    behaviour every strategy falls back to."""

    #: ask :meth:`schedule` at every step, even where only one option exists
    every_step: bool = False

    def __init__(self) -> None:
        self.nmis: list[NmiSpec] = []
        self.nmi_fired: set[int] = set()
        self.preempts: list[PreemptSpec] = []
        self.preempt_fired: set[int] = set()
        self.core: Scheduler | None = None

    def attach(self, core: Scheduler) -> None:
        """Called once when the core is built, before the first step."""
        self.core = core

    @property
    def nmi_labels(self) -> frozenset[str] | None:
        """Step labels before which :meth:`nmi` may fire (``None``: any step)."""
        return frozenset()

    @property
    def preempt_labels(self) -> frozenset[str] | None:
        """Preemption-point labels at which :meth:`preempt` may answer (``None``: any).
        Both label sets must hold every label the chooser may answer for during the
        run: between them the core does not count steps (without a trace)."""
        return frozenset()

    @property
    def counted_labels(self) -> frozenset[str] | None:
        """Labels whose per-CPU counts (``core.counts``) the chooser reads (``None``:
        all).  Fixed for the run, like the two label sets above."""
        return frozenset()

    def schedule(self, runnable: list[int], actions: list[str]) -> int | str:
        """Which CPU steps next (one of ``runnable``) or, in weak-memory mode, which
        action happens (``"sbC"``/``"sbC.I"``: a buffered store commits; ``"lateC"``:
        CPU C steps although an IPI is deliverable there)."""
        return default_choice(runnable, actions)

    def stint(self, cpu: int) -> Stint | None:
        """Asked right after :meth:`schedule` chose CPU ``cpu`` at a choice point: how
        long that answer stands, or None (ask at the next choice point, the default).

        A stint is a promise: at each later choice point it covers, :meth:`schedule`
        would have answered ``cpu`` (``cpu`` being runnable there).  The core keeps
        ``cpu`` stepping without asking and then reports, through :meth:`stinted`, how
        many choice points it decided that way -- a chooser whose answers consume
        something (a step-indexed schedule, a recording) accounts for them there."""
        return None

    def stinted(self, cpu: int, points: int) -> None:
        """The core chose ``cpu`` at ``points`` choice points under the last stint,
        without calling :meth:`schedule` (called before the next :meth:`schedule`)."""

    def nmi(self, cpu: int, label: str, nth: int) -> str | None:
        """Before CPU ``cpu`` executes its ``nth`` ``label``: the kind of an NMI that
        arrives first (``"panic"``/``"benign"``), or None.  Asked again at the same
        step after an NMI was raised there, until it answers None."""
        return None

    def preempt(self, cpu: int, label: str, nth: int) -> int | None:
        """CPU ``cpu``'s task has just executed its ``nth`` preemption point ``label``
        (``need_resched()``): the CPU it resumes on if it is preempted here, or None."""
        return None

    def fault(self, site: str, cpu: int, counts: FaultCounts) -> FaultSpec | None:
        """A fallible site is reached on ``cpu`` (``counts`` already include this
        occurrence, per site ``(site, None)`` and per site and CPU): the fault that
        fires here (its ``kind`` None = the site's first kind), or None."""
        return None


def default_choice(runnable: list[int], actions: list[str]) -> int | str:
    """With no (more) choices: buffered stores commit first (sequential consistency
    by default), then the lowest runnable CPU steps, taking a deliverable IPI first."""
    for a in actions:
        if a.startswith("sb"):
            return a
    return runnable[0]


class Wrapping(Chooser):
    """A chooser around another one: every question goes to ``inner`` unless the
    wrapper overrides it (recorders write the answers down, the anchor recorder turns
    them into runs).  The account of NMIs and preemptions (``nmis``, ``nmi_fired``,
    ...) is the inner chooser's unless the wrapper keeps its own (a recorder does)."""

    def __init__(self, inner: Chooser) -> None:
        super().__init__()
        self.inner = inner
        self.every_step = inner.every_step
        self.nmis = inner.nmis
        self.nmi_fired = inner.nmi_fired
        self.preempts = inner.preempts
        self.preempt_fired = inner.preempt_fired

    def attach(self, core: Scheduler) -> None:
        super().attach(core)
        self.inner.attach(core)

    @property
    def nmi_labels(self) -> frozenset[str] | None:
        return self.inner.nmi_labels

    @property
    def preempt_labels(self) -> frozenset[str] | None:
        return self.inner.preempt_labels

    @property
    def counted_labels(self) -> frozenset[str] | None:
        return self.inner.counted_labels

    def schedule(self, runnable: list[int], actions: list[str]) -> int | str:
        return self.inner.schedule(runnable, actions)

    def stint(self, cpu: int) -> Stint | None:
        return self.inner.stint(cpu)

    def stinted(self, cpu: int, points: int) -> None:
        self.inner.stinted(cpu, points)

    def nmi(self, cpu: int, label: str, nth: int) -> str | None:
        return self.inner.nmi(cpu, label, nth)

    def preempt(self, cpu: int, label: str, nth: int) -> int | None:
        return self.inner.preempt(cpu, label, nth)

    def fault(self, site: str, cpu: int, counts: FaultCounts) -> FaultSpec | None:
        return self.inner.fault(site, cpu, counts)
