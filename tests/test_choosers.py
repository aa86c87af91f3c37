"""The chooser interface: any strategy, recorded, replays as a plain scenario."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from vmxfuzz.choosers import Chooser, RecordingChooser
from vmxfuzz.choosers.base import FaultCounts
from vmxfuzz.executor import run, start
from vmxfuzz.machine.faults import SITES, FaultSpec
from vmxfuzz.scenario import load

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
