"""Shared checks for campaign output (used by the Hypothesis and atheris tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vmxfuzz.campaign import keys
from vmxfuzz.fuzzcmd import fuzz
from vmxfuzz.scenario import load


def campaign(
    out: Path, engine: str, variant: str, budget: float, seed: int, workers: int = 1
) -> tuple[int, dict[str, Any]]:
    """Run a short campaign quietly; return its exit code and summary."""
    code = fuzz(
        engine=engine,
        variant=variant,
        budget=budget,
        seed_value=seed,
        out=out,
        workers=workers,
        as_json=True,
    )
    return code, json.loads((out / "summary.json").read_text())


def assert_summary_sound(out: Path, doc: dict[str, Any], code: int, variant: str) -> None:
    """Exit code agrees, keys are unique, one file per finding, every finding replays."""
    assert code == (1 if doc["findings"] else 0)
    found = [(f["class"], f["invariant"], f["site"]) for f in doc["findings"]]
    assert len(found) == len(set(found)), "no duplicates"
    files = [p for p in out.glob("*.json") if p.name != "summary.json"]
    assert len(files) == len(found), "one reproducer per finding, nothing lost"
    for f, key in zip(doc["findings"], found, strict=True):
        assert key in keys(load(f["reproducer"]), variant), "every finding replays"
