"""Anchored schedules: interleavings that keep their meaning when a patch moves steps.

Why: a step-indexed schedule (format v1..v3) is consumed one entry per choice point,
so a patch that adds, removes or reorders steps shifts every later entry and the same
scenario interleaves differently in the two variants of a differential -- a
``behaviour`` divergence that is an artefact.  An anchored schedule (format v4) is a
list of *runs* between synchronisation points::

    {"cpu": 1, "until": "vmx_vcpu_load_vmcs:vmptrld", "nth": 2}

"CPU 1 runs until it has executed its 2nd ``vmx_vcpu_load_vmcs:vmptrld``" (counted
per CPU over all its contexts).  ``until`` is a step label or one of the steps that
execute no label: the delivery of an NMI or IPI (``nmi>NAME``, ``ipi>NAME``), the
start of a queued task (``task>OP``), the resumption of a migrated one
(``resume>OP``), an NMI raised before a step (``nmi@LABEL``).  Without ``until`` the
run lasts while the CPU can step.  Semantics, at each point where more than one CPU
could step: the current run's CPU steps if it can and has not yet executed its
anchor; otherwise the run is over and the next one is looked at; after the last
run, the lowest runnable CPU steps.  Steps a patch adds or removes inside a run
change nothing.  A run whose anchor label does not exist in a variant lasts, there,
while its CPU can step -- and is reported in that variant's
:attr:`~vmxfuzz.executor.Result.not_applicable`, never moved silently.

:class:`AnchorRecorder` converts a step-indexed run into its anchored form exactly:
replaying the recorded runs on the same variant makes the same decision at every
choice point (a test checks every shipped scenario).
"""

from __future__ import annotations

from ..sched import RunEntry, Scheduler
from .base import Chooser, Wrapping


def run_choice(core: Scheduler, runs: list[RunEntry], pos: int, runnable: list[int]) -> int:
    """The anchored schedule's answer at a choice point: the index of the run that
    applies (``len(runs)``: none left).  A run applies while its CPU can step and
    has not yet executed its anchor."""
    while pos < len(runs):
        r = runs[pos]
        if r.cpu in runnable and (r.until is None or core.counts[(r.cpu, r.until)] < r.nth):
            return pos
        pos += 1
    return pos


class AnchorRecorder(Wrapping):
    """Wraps a chooser and writes its CPU decisions down as anchored runs.

    A stint of the inner chooser passes through: under it the choice never changes,
    so no run ends inside it."""

    def __init__(self, inner: Chooser) -> None:
        super().__init__(inner)
        self.runs: list[RunEntry] = []
        self._cpu: int | None = None

    @property
    def counted_labels(self) -> frozenset[str] | None:
        return None  # any label can become an anchor: count them all

    def schedule(self, runnable: list[int], actions: list[str]) -> int | str:
        choice = self.inner.schedule(runnable, actions)
        if len(runnable) + len(actions) > 1 and isinstance(choice, int) and choice != self._cpu:
            self._close(runnable)
            self._cpu = choice
        return choice

    def _close(self, runnable: list[int]) -> None:
        """The current run ends here: anchor it on its CPU's latest step (exact: the
        count of that key reaches ``nth`` at that step, not before)."""
        c = self._cpu
        if c is None:
            return
        core = self.core
        assert core is not None
        key = core.last[c]
        assert key is not None, "a run's CPU has stepped"
        self.runs.append(RunEntry(c, key, core.counts[(c, key)]))

    def finish(self) -> list[RunEntry]:
        """The runs recorded, the last one open-ended."""
        if self._cpu is not None:
            self.runs.append(RunEntry(self._cpu))
            self._cpu = None
        return self.runs
