"""Convert a scenario to its anchored form (format v4) by running it once.

Why: the differential must run both variants with the same meaning, and a
step-indexed schedule (format v1..v3) has a meaning in one variant only -- the one
whose steps it counts.  :func:`anchor` runs the scenario on the first variant of a
pair with an :class:`~vmxfuzz.choosers.anchored.AnchorRecorder` and returns the
runs it hit (each "CPU c runs until it has executed its n-th LABEL") in place of the
schedule, together with that run's result: the anchored form replays to the same
run on that variant (exact, tested on every shipped scenario), and in the second
variant each run stops at the same kernel point whatever steps a patch added or
removed around it.  NMIs, faults and preemptions are anchored already (label and
per-CPU count, site and count) and are kept.

Not converted: already anchored scenarios (returned as they are, with a plain run)
and weak-memory scenarios, whose store-buffer entries are step-indexed by nature.
"""

from __future__ import annotations

from dataclasses import replace

from . import executor
from .choosers.anchored import AnchorRecorder
from .executor import Result, replay_chooser, run, start
from .scenario import Scenario


def anchorable(scenario: Scenario) -> bool:
    return not scenario.anchored and not scenario.config.weak_memory


def anchor(
    scenario: Scenario, variant: str, *, keep_trace: bool = False
) -> tuple[Scenario, Result]:
    """The anchored form of ``scenario`` and its result on ``variant``."""
    if not anchorable(scenario):
        return scenario, run(scenario, variant, keep_trace=keep_trace)
    rec = AnchorRecorder(replay_chooser(scenario))
    tracing = keep_trace or bool(executor.OBSERVERS)  # as run(): observers see traces
    result = start(scenario, variant, chooser=rec, keep_trace=tracing).finish(keep_trace=keep_trace)
    return replace(scenario, schedule=tuple(rec.finish())), result
