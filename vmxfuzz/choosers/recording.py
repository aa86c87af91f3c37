"""A chooser that writes another chooser's decisions down as a scenario.

Why: an engine that decides live (a DFS, PCT, a random walk) must hand back a plain
scenario that replays through :class:`~vmxfuzz.choosers.replay.ReplayChooser` to the
identical run.  Recording is exact because the replay rules mirror the core's: a
schedule entry is written wherever the core asked (more than one option), an NMI as
``(cpu, label, nth)`` of the step it preceded, a fault as ``(site, nth on that CPU,
cpu, kind)``.
"""

from __future__ import annotations

from dataclasses import replace

from ..machine.faults import SITES, FaultSpec
from ..scenario import Scenario
from ..sched import NmiSpec, PreemptSpec
from .base import Chooser, FaultCounts, Wrapping


class RecordingChooser(Wrapping):
    def __init__(self, inner: Chooser) -> None:
        super().__init__(inner)
        self.entries: list[int | str] = []
        self.faults: list[FaultSpec] = []
        # Its own account: the decisions as it writes them down (see nmi, preempt).
        self.nmis, self.nmi_fired = [], set()
        self.preempts, self.preempt_fired = [], set()

    def schedule(self, runnable: list[int], actions: list[str]) -> int | str:
        choice = self.inner.schedule(runnable, actions)
        if len(runnable) + len(actions) > 1:
            self.entries.append(choice)
        return choice

    def stinted(self, cpu: int, points: int) -> None:
        """Choice points decided under a stint are entries like any other."""
        self.inner.stinted(cpu, points)
        self.entries += [cpu] * points

    def nmi(self, cpu: int, label: str, nth: int) -> str | None:
        kind = self.inner.nmi(cpu, label, nth)
        if kind is not None:
            self.nmi_fired.add(len(self.nmis))
            self.nmis.append(NmiSpec(cpu, label, nth, kind))
        return kind

    def preempt(self, cpu: int, label: str, nth: int) -> int | None:
        to = self.inner.preempt(cpu, label, nth)
        if to is not None:
            self.preempt_fired.add(len(self.preempts))
            self.preempts.append(PreemptSpec(cpu, label, nth, to))
        return to

    def fault(self, site: str, cpu: int, counts: FaultCounts) -> FaultSpec | None:
        spec = self.inner.fault(site, cpu, counts)
        if spec is not None:
            spec = FaultSpec(site, counts[(site, cpu)], cpu, spec.kind or SITES[site][0][0])
            self.faults.append(spec)
        return spec

    def scenario(self, base: Scenario) -> Scenario:
        """``base`` with the decisions made so far as its schedule, NMIs, faults and
        preemptions."""
        return replace(
            base,
            schedule=tuple(self.entries),
            nmis=tuple(self.nmis),
            faults=tuple(self.faults),
            preempts=tuple(self.preempts),
        )
