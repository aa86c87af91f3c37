"""Replay a scenario's schedule, NMIs and faults: the semantics of every format.

* an anchored schedule (format v4, :mod:`.anchored`): each run's CPU steps while
  it can and has not executed its anchor, then the next run applies;
* step-indexed ``schedule`` entries are consumed one per point where more than one option exists;
  an entry naming nothing possible is consumed and the default applies (buffered
  stores first, then the lowest runnable CPU); once used up, the default applies.
* an NMI fires before the ``nth`` execution of its label on its CPU;
* a preemption at the ``nth`` execution of its preemption point on its CPU;
* a fault fires at the ``nth`` occurrence of its site (on its CPU when it names one).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..machine.faults import FaultSpec
from ..sched import NmiSpec, PreemptSpec, RunEntry
from .anchored import run_choice
from .base import Chooser, FaultCounts, Stint, default_choice


class ReplayChooser(Chooser):
    def __init__(
        self,
        schedule: Sequence[int | str | RunEntry] = (),
        nmis: Sequence[NmiSpec] = (),
        faults: Sequence[FaultSpec] = (),
        preempts: Sequence[PreemptSpec] = (),
    ) -> None:
        super().__init__()
        self.entries: list[int | str] = [e for e in schedule if not isinstance(e, RunEntry)]
        self.runs: list[RunEntry] = [e for e in schedule if isinstance(e, RunEntry)]
        self.pos = 0
        self.counted = frozenset(r.until for r in self.runs if r.until is not None)
        self.nmis = list(nmis)
        self.faults = tuple(faults)
        self.preempts = list(preempts)
        # The faults of each site, in scenario order (fault() is asked at every
        # fallible site: a dict lookup, not a scan of every fault).
        self._faults_at: dict[str, list[FaultSpec]] = {}
        for f in self.faults:
            self._faults_at.setdefault(f.site, []).append(f)

    @property
    def nmi_labels(self) -> frozenset[str] | None:
        return frozenset(s.before for i, s in enumerate(self.nmis) if i not in self.nmi_fired)

    @property
    def preempt_labels(self) -> frozenset[str] | None:
        return frozenset(s.at for i, s in enumerate(self.preempts) if i not in self.preempt_fired)

    @property
    def counted_labels(self) -> frozenset[str] | None:
        return self.counted

    def schedule(self, runnable: list[int], actions: list[str]) -> int | str:
        if self.runs:
            assert self.core is not None
            self.pos = run_choice(self.core, self.runs, self.pos, runnable)
            if self.pos < len(self.runs):
                return self.runs[self.pos].cpu
            return default_choice(runnable, actions)
        if self.pos < len(self.entries):
            want = self.entries[self.pos]
            self.pos += 1
            if want in runnable or want in actions:
                return want
        return default_choice(runnable, actions)

    def stint(self, cpu: int) -> Stint | None:
        """The current run's CPU holds until its anchor; a step-indexed schedule
        holds for the entries after this one that name the same CPU."""
        if self.runs:
            if self.pos < len(self.runs) and self.runs[self.pos].cpu == cpu:
                r = self.runs[self.pos]
                return Stint(r.until, r.nth)
            return None
        entries, end = self.entries, self.pos
        while end < len(entries) and entries[end] == cpu:
            end += 1
        return Stint(points=end - self.pos) if end > self.pos else None

    def stinted(self, cpu: int, points: int) -> None:
        if not self.runs:
            self.pos += points

    def nmi(self, cpu: int, label: str, nth: int) -> str | None:
        for i, spec in enumerate(self.nmis):
            if i in self.nmi_fired or spec.cpu != cpu or spec.before != label or spec.nth != nth:
                continue
            self.nmi_fired.add(i)
            return spec.kind
        return None

    def preempt(self, cpu: int, label: str, nth: int) -> int | None:
        if not self.preempts:
            return None  # asked at every preemption point: most scenarios have none
        for i, spec in enumerate(self.preempts):
            if i in self.preempt_fired or spec.cpu != cpu or spec.at != label or spec.nth != nth:
                continue
            self.preempt_fired.add(i)
            return spec.to
        return None

    def fault(self, site: str, cpu: int, counts: FaultCounts) -> FaultSpec | None:
        for f in self._faults_at.get(site, ()):
            if f.cpu is not None and f.cpu != cpu:
                continue
            if counts[(site, f.cpu)] == f.nth:
                return f
        return None
