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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..machine.faults import FaultSpec

if TYPE_CHECKING:
    from ..sched import NmiSpec, PreemptSpec, Scheduler

FaultCounts = Mapping[tuple[str, "int | None"], int]


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
