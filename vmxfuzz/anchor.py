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

:func:`lower` goes the other way for consumers that only speak step indices (the
libFuzzer byte layout): an anchored scenario becomes the step-indexed schedule it
has on one variant, recorded by a :class:`~vmxfuzz.choosers.recording.RecordingChooser`
around its replay.  That form means the same run on that variant only.
"""

from __future__ import annotations

from dataclasses import replace

from . import executor
from .choosers.anchored import AnchorRecorder
from .choosers.base import Chooser, Stint, default_choice
from .choosers.recording import RecordingChooser
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


class _LoweringRecorder(RecordingChooser):
    """Records like its base and remembers where the trailing run of default choices
    starts: a step-indexed schedule that is used up applies the default, so that tail
    need not be written (it would only eat into the byte layout's schedule length)."""

    def __init__(self, inner: Chooser) -> None:
        super().__init__(inner)
        self.needed = 0  # entries up to the last one that differs from the default

    def schedule(self, runnable: list[int], actions: list[str]) -> int | str:
        choice = super().schedule(runnable, actions)
        if len(runnable) + len(actions) > 1 and choice != default_choice(runnable, actions):
            self.needed = len(self.entries)
        return choice

    def stint(self, cpu: int) -> Stint | None:
        return None  # every choice is compared with its default, one by one


def lower(scenario: Scenario, variant: str) -> tuple[Scenario, Result]:
    """The step-indexed form of an anchored ``scenario`` on ``variant``, and its result.

    Replays the scenario on ``variant`` and writes every decision down by step index,
    so the result replays to the identical run there (the trailing default choices
    are left out: a used-up schedule applies them).  Anything not anchored is returned
    as it is, with a plain run."""
    if not scenario.anchored:
        return scenario, run(scenario, variant, keep_trace=False)
    rec = _LoweringRecorder(replay_chooser(scenario))
    tracing = bool(executor.OBSERVERS)  # as run(): observers see traces
    result = start(scenario, variant, chooser=rec, keep_trace=tracing).finish(keep_trace=False)
    lowered = rec.scenario(scenario)
    return replace(lowered, schedule=lowered.schedule[: rec.needed]), result
