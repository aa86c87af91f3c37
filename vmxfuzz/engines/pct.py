"""PCT: probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010).

Each CPU gets a random priority; at every choice point the runnable CPU with the
highest priority steps; at ``d - 1`` random change points the CPU that would step
drops below every other priority.  A bug of depth ``d`` (``d`` ordering constraints)
is hit with probability at least ``1 / (n k^(d-1))`` per run, which is why a few
change points reach the deep races a uniform random schedule almost never does:
one CPU runs far into its flow, stops exactly where the change point put it, and the
others run through the half-done state.

It is a chooser (:mod:`vmxfuzz.choosers`): the scenario is run once with the
priorities taking the choices, and what was chosen at each choice point is written
down as an ordinary schedule list, which replays exactly through the executor like
any other scenario (the replay rules are the core's: an entry wherever more than one
option exists).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..choosers.base import default_choice
from ..choosers.replay import ReplayChooser
from ..executor import start
from ..scenario import Scenario


@dataclass(frozen=True)
class Pct:
    """Priorities (``priorities[c]`` for CPU ``c``, higher runs first) and the choice
    points (0-based, counted over the run) at which the choosing CPU is demoted."""

    priorities: tuple[int, ...]
    changes: tuple[int, ...] = ()

    @property
    def depth(self) -> int:
        return len(self.changes) + 1


class PctChooser(ReplayChooser):
    """Takes every scheduling choice from the priorities (faults replay the
    scenario's) and writes each down with the default it replaced."""

    def __init__(self, base: Scenario, pct: Pct) -> None:
        super().__init__((), (), base.faults)
        self.pct = pct
        self.recorded: list[tuple[int | str, int | str]] = []  # (choice, default)
        self._prio: dict[int, int] = {}
        self._demoted = 0

    def schedule(self, runnable: list[int], actions: list[str]) -> int | str:
        default = default_choice(runnable, actions) if runnable or actions else 0
        if len(runnable) + len(actions) <= 1:
            return default  # not a choice point: the replay reads no entry here
        if not self._prio:
            n = len(self.pct.priorities)
            ncpus = self.core.ncpus if self.core is not None else n
            self._prio = {c: self.pct.priorities[c % n] for c in range(ncpus)}
        choice: int | str = default
        if runnable:
            best = max(runnable, key=lambda c: (self._prio[c], -c))
            if len(self.recorded) in self.pct.changes:
                self._demoted += 1
                self._prio[best] = -self._demoted  # below every initial priority
                best = max(runnable, key=lambda c: (self._prio[c], -c))
            choice = best
        self.recorded.append((choice, default))
        return choice


def pct_schedule(base: Scenario, variant: str, pct: Pct) -> tuple[int | str, ...]:
    """The schedule list PCT chooses for ``base`` (without its NMIs) on ``variant``.

    Trailing entries that equal the executor's default are dropped: the list replays
    the same run without them.
    """
    chooser = PctChooser(base, pct)
    start(replace(base, schedule=(), nmis=()), variant, chooser=chooser, keep_trace=False).finish(
        keep_trace=False
    )
    out = list(chooser.recorded)
    while out and out[-1][0] == out[-1][1]:
        out.pop()
    return tuple(choice for choice, _ in out)
