"""PCT: probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010).

Each CPU gets a random priority; at every choice point the runnable CPU with the
highest priority steps; at ``d - 1`` random change points the CPU that would step
drops below every other priority.  A bug of depth ``d`` (``d`` ordering constraints)
is hit with probability at least ``1 / (n k^(d-1))`` per run, which is why a few
change points reach the deep races a uniform random schedule almost never does:
one CPU runs far into its flow, stops exactly where the change point put it, and the
others run through the half-done state.

It is a schedule *generator*: the scenario is run once with the priorities taking the
choices, and what was chosen at each choice point is written down as an ordinary
schedule list, which replays exactly through the executor like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..executor import start
from ..scenario import Scenario
from ..sched import Scheduler


@dataclass(frozen=True)
class Pct:
    """Priorities (``priorities[c]`` for CPU ``c``, higher runs first) and the choice
    points (0-based, counted over the run) at which the choosing CPU is demoted."""

    priorities: tuple[int, ...]
    changes: tuple[int, ...] = ()

    @property
    def depth(self) -> int:
        return len(self.changes) + 1


class PctScheduler(Scheduler):
    """Takes every choice from the priorities and records it."""

    pct: Pct

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: list[tuple[int | str, int | str]] = []  # (choice, default)
        self._prio: dict[int, int] = {}
        self._demoted = 0

    def _choose(self, runnable: list[int], commits: list[str]) -> int | str:
        if len(runnable) + len(commits) <= 1:
            return super()._choose(runnable, commits)  # not a choice point: no entry read
        if not self._prio:
            n = len(self.pct.priorities)
            self._prio = {c: self.pct.priorities[c % n] for c in range(self.ncpus)}
        sb = [a for a in commits if a.startswith("sb")]
        default: int | str = sb[0] if sb else runnable[0]
        if not runnable:
            choice: int | str = default
        else:
            best = max(runnable, key=lambda c: (self._prio[c], -c))
            if len(self.recorded) in self.pct.changes:
                self._demoted += 1
                self._prio[best] = -self._demoted  # below every initial priority
                best = max(runnable, key=lambda c: (self._prio[c], -c))
            choice = best
        self.recorded.append((choice, default))
        return choice


def pct_schedule(base: Scenario, variant: str, pct: Pct) -> tuple[int | str, ...]:
    """The schedule list PCT chooses for ``base`` on ``variant``.

    Trailing entries that equal the executor's default are dropped: the list replays
    the same run without them.
    """
    r = start(replace(base, schedule=()), variant, sched_cls=PctScheduler)
    sched = r.sched
    assert isinstance(sched, PctScheduler)
    sched.pct = pct
    r.finish(keep_trace=False)
    out = list(sched.recorded)
    while out and out[-1][0] == out[-1][1]:
        out.pop()
    return tuple(choice for choice, _ in out)
