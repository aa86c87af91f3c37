"""Confirm a ``behaviour`` divergence before it is reported: is it the patch, or the
schedule?

Why: a scenario's schedule is indexed by step and its NMIs and faults by (label, nth
occurrence), so when a patch adds, removes or moves steps the same scenario
interleaves differently in the two variants, and op results that depend on the
interleaving differ although neither variant does anything the other cannot.  A
divergence is real only if the second variant *cannot* produce the first variant's
observable behaviour (op results and how the run ended) on the same program.

How: the first variant's run gives the target behaviour and the injections that
fired in it, each by kind and function (an NMI as (CPU, function of the step it
preceded, kind); a fault as (site, kind)).  The explorer then searches the second
variant's schedules of the same ops and machine with exactly those injections, placed
before any step of the same function (faults: at any occurrence of the site), the op
results so far being part of every state so that state caching never cuts a run whose
outcome could still match.  A run that ends with the target behaviour and has fired
every injection is a witness: the divergence is a scheduling artefact (unconfirmed).
No witness within the bound confirms it; the bound (complete or a run limit) is
stated in the finding.

Before it, :data:`SAMPLES` random schedules of the second variant are tried, with
the injections that fired in the first variant's run.  Depth-first search varies
the last decisions of a run first, so within a run limit a long program keeps its
early interleaving fixed: a panic racing an op on another CPU is never moved before
or after that op, although half of all schedules would show the other outcome.
Random schedules (runs of one CPU of random length) vary every part of the run at
once; a match is a witness like any other.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from .executor import Result, run
from .explore import Bound, Explorer
from .scenario import Scenario

DEFAULT_MAX_RUNS = 5_000
SAMPLES = 200  # random schedules tried after an incomplete search (seeded: deterministic)


class _Witness(Exception):
    """Raised out of the search by the first matching run."""


@dataclass
class Confirmation:
    """The outcome of one confirmation search."""

    confirmed: bool
    searched: str  # the variant whose schedules were searched
    bound: Bound
    complete: bool  # every schedule within the bound was searched
    runs: int
    states: int
    seconds: float
    witness: Scenario | None = None  # a schedule of ``searched`` with the target behaviour

    def to_json(self) -> dict[str, Any]:
        b = self.bound
        return {
            "confirmed": self.confirmed,
            "searched": self.searched,
            "bound": {
                "ops": "the scenario's",
                "nmis": [list(m) for m in b.nmi_menu or ()],
                "faults": [list(m) for m in b.fault_menu or ()],
                "store_buffer": b.store_buffer,
                "complete": self.complete,
            },
            "runs": self.runs,
            "states": self.states,
            "seconds": round(self.seconds, 3),
            "witness": None if self.witness is None else self.witness.to_json(),
            "statement": self.describe(),
        }

    def describe(self) -> str:
        """The verdict and its bound in one sentence, for the finding's explanation."""
        b = self.bound
        if not self.confirmed:
            return (
                f"unconfirmed: a schedule of {self.searched} shows the same behaviour "
                f"(found after {self.runs} runs): a scheduling artefact"
            )
        parts = [f"NMI({k}) on CPU {c} in {f}" for c, f, k in b.nmi_menu or ()]
        parts += [f"fault {k} at {s}" for s, k in b.fault_menu or ()]
        inj = " with " + ", ".join(parts) if parts else " without injections"
        scope = "every schedule" if self.complete else f"the first {self.runs} runs"
        return (
            f"confirmed: {scope} of {self.searched} on this program{inj} "
            f"({self.states} states) shows no run with this behaviour"
        )


def injections(
    sc: Scenario, r: Result
) -> tuple[tuple[tuple[int, str, str], ...], tuple[tuple[str, str], ...]]:
    """The NMIs and faults that fired in ``r`` (a run of ``sc``), by kind and function."""
    nmis = tuple(
        (sc.nmis[i].cpu, sc.nmis[i].before.split(":", 1)[0], sc.nmis[i].kind) for i in r.nmis_fired
    )
    faults = tuple((sc.faults[i].site, str(sc.faults[i].kind)) for i in r.faults_fired)
    return nmis, faults


def confirm_behaviour(
    scenario: Scenario,
    pair: tuple[str, str],
    bound: int = DEFAULT_MAX_RUNS,
    deadline: float = float("inf"),
) -> Confirmation:
    """Search ``pair[1]``'s schedules of ``scenario``'s program (at most ``bound``
    runs, and not past ``deadline`` on the monotonic clock: a campaign's budget) for
    ``pair[0]``'s observable behaviour; confirmed if none shows it."""
    t0 = time.monotonic()
    first = run(scenario, pair[0], keep_trace=False)
    target = first.observable()
    nmis, faults = injections(scenario, first)
    b = replace(Bound.menus(nmis, faults), store_buffer=Bound().store_buffer)
    program = replace(scenario, schedule=(), nmis=(), faults=())
    witness: list[Scenario] = []

    def on_leaf(sc: Scenario, r: Result) -> None:
        every = len(sc.nmis) == len(nmis) and len(sc.faults) == len(faults)
        if every and r.observable() == target:
            witness.append(sc)
            raise _Witness

    # Random schedules first (cheap; seeded), with the injections that fired in the
    # first variant's run, then the depth-first search.
    fired = replace(
        scenario,
        nmis=tuple(scenario.nmis[i] for i in first.nmis_fired),
        faults=tuple(scenario.faults[i] for i in first.faults_fired),
    )
    sampled = 0
    for sc in _random_schedules(fired, first.steps, deadline):
        sampled += 1
        r = run(sc, pair[1], keep_trace=False)
        if r.observable() == target and _fired(r) == (len(nmis), len(faults)):
            witness.append(sc)
            break
    ex = Explorer(
        program, pair[1], b, on_leaf=on_leaf, observe=True, max_runs=bound, deadline=deadline
    )
    complete = False
    if not witness:
        try:
            complete = ex.explore()
        except _Witness:
            complete = False
    return Confirmation(
        confirmed=not witness,
        searched=pair[1],
        bound=b,
        complete=complete,
        runs=ex.stats.runs + sampled,
        states=ex.stats.states,
        seconds=time.monotonic() - t0,
        witness=witness[0] if witness else None,
    )


def _fired(r: Result) -> tuple[int, int]:
    return len(r.nmis_fired), len(r.faults_fired)


def _random_schedules(sc: Scenario, steps: int, deadline: float) -> Iterator[Scenario]:
    """:data:`SAMPLES` step-indexed schedules of ``sc``'s program, each a sequence of
    runs of one CPU for 1..64 choice points, as long as the first run had steps; the
    generator is seeded, so a confirmation gives the same verdict every time."""
    rng = random.Random(0)
    cpus = sc.config.cpus
    for _ in range(SAMPLES):
        if time.monotonic() > deadline:
            return
        schedule: list[int] = []
        while len(schedule) < steps:
            schedule += [rng.randrange(cpus)] * rng.choice((1, 2, 4, 8, 16, 32, 64))
        yield replace(sc, schedule=tuple(schedule))
