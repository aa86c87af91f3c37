"""The chooser interface: any strategy, recorded, replays as a plain scenario."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from vmxfuzz.anchor import anchor
from vmxfuzz.choosers import Chooser, RecordingChooser
from vmxfuzz.choosers.base import FaultCounts, Stint, Wrapping
from vmxfuzz.executor import replay_chooser, run, start
from vmxfuzz.machine.faults import SITES, FaultSpec
from vmxfuzz.scenario import Scenario, from_json, load

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted((ROOT / "examples").glob("*.json")) + sorted(
    (ROOT / "tests" / "regressions").glob("*.json")
)


class RandomChooser(Chooser):
    """A seeded random walk over every decision (asks at every step)."""

    every_step = True

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.nmis_left = 1
        self.faults_left = 1

    @property
    def nmi_labels(self) -> frozenset[str] | None:
        return None  # any step

    def schedule(self, runnable: list[int], actions: list[str]) -> int | str:
        return self.rng.choice([*runnable, *actions])

    def nmi(self, cpu: int, label: str, nth: int) -> str | None:
        if self.nmis_left and self.rng.random() < 0.01:
            self.nmis_left -= 1
            return self.rng.choice(("panic", "benign"))
        return None

    def fault(self, site: str, cpu: int, counts: FaultCounts) -> FaultSpec | None:
        if self.faults_left and self.rng.random() < 0.05:
            self.faults_left -= 1
            return FaultSpec(site, kind=self.rng.choice(SITES[site][0]))
        return None


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_a_recorded_random_walk_replays_to_the_same_run(path: Path) -> None:
    base = replace(load(path), schedule=(), nmis=(), faults=())
    for seed in range(3):
        for variant in ("reference", "patched"):
            rec = RecordingChooser(RandomChooser(seed))
            live = start(base, variant, chooser=rec).finish()
            again = run(rec.scenario(base), variant)
            assert again.to_json(trace=True) == live.to_json(trace=True)


def test_the_default_chooser_takes_no_choice() -> None:
    """No NMI, no fault, lowest CPU first: the schedule-free replay of a scenario."""
    sc = load(ROOT / "examples" / "seed-nmi-in-list-add.json")
    bare = replace(sc, schedule=(), nmis=(), faults=())
    for variant in ("reference", "patched"):
        got = start(sc, variant, chooser=Chooser()).finish()
        assert got.to_json(trace=True) == run(bare, variant).to_json(trace=True)


class _AskEveryTime(Wrapping):
    """The wrapped chooser without stints: asked at every choice point."""

    def stint(self, cpu: int) -> Stint | None:
        return None


def _sample(every: int) -> list[Scenario]:
    docs = json.loads((ROOT / "tests" / "goldens" / "sample.json").read_text())
    return [from_json(d, f"sample/{i}") for i, d in enumerate(docs) if i % every == 0]


@pytest.mark.parametrize("form", ["step-indexed", "anchored"])
def test_stints_decide_as_asking_at_every_choice_point_would(form: str) -> None:
    """A stint (the core running one CPU on without asking, where other CPUs could
    step) changes nothing: every run equals the run that asks the replay chooser at
    each choice point, trace and all, in both schedule forms; and a recording taken
    under stints has one entry per choice point, as one taken without them."""
    checked = stinted = 0
    weak = sorted((ROOT / "tests" / "weak-memory").glob("*.json"))
    for sc in [*_sample(3), *(load(p) for p in [*FILES, *weak])]:
        for variant in ("reference", "patched"):
            if form == "anchored":
                sc = anchor(sc, "reference")[0]
            fast = replay_chooser(sc)
            got = start(sc, variant, chooser=fast).finish()
            slow = _AskEveryTime(replay_chooser(sc))
            want = start(sc, variant, chooser=slow).finish()
            assert got.to_json(trace=True) == want.to_json(trace=True), (sc.name, variant)
            a = RecordingChooser(replay_chooser(sc))
            b = RecordingChooser(_AskEveryTime(replay_chooser(sc)))
            start(sc, variant, chooser=a).finish(keep_trace=False)
            start(sc, variant, chooser=b).finish(keep_trace=False)
            assert a.entries == b.entries, (sc.name, variant)
            checked += 1
            stinted += len(sc.schedule) > 0
    assert checked > 100 and stinted > 50
