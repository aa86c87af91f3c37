"""Draws shared by the benchmarks and the golden results: one way to take a fixed
sample of Hypothesis scenarios, and one way to load the shipped examples.

Both run with whichever vmxfuzz is importable (the working tree, or a base commit's
through ``basetree.py``), so they use only APIs every side has: the
``scenarios()`` strategy, ``scenario.from_json`` and ``executor.run``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def derandomised(n: int) -> list[Any]:
    """The first ``n`` scenarios Hypothesis draws from ``scenarios()`` with
    ``derandomize=True``: the same list on every run of the same strategy."""
    from hypothesis import HealthCheck, given, settings

    from vmxfuzz.engines.strategies import scenarios

    out: list[Any] = []

    @settings(
        max_examples=n,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(scenarios())
    def collect(sc: Any) -> None:
        out.append(sc)

    collect()
    return out


def examples(names: list[str] | None = None) -> list[Any]:
    """The shipped ``examples/*.json`` (their ``expect`` blocks dropped: an older
    vmxfuzz may not know every field there), or only the files ``names``; a file
    this vmxfuzz cannot load (a newer format) is left out."""
    return [sc for _, sc in _examples(names)]


def example_names() -> list[str]:
    """The file names of the examples this vmxfuzz loads."""
    return [name for name, _ in _examples(None)]


def _examples(names: list[str] | None) -> list[tuple[str, Any]]:
    from vmxfuzz.scenario import from_json

    out = []
    for p in sorted((ROOT / "examples").glob("*.json")):
        if names is not None and p.name not in names:
            continue
        doc = json.loads(p.read_text())
        doc.pop("expect", None)
        try:
            out.append((p.name, from_json(doc, p.name)))
        except Exception:  # a format this side does not read
            continue
    return out


def steps_per_second(variant: str, seconds: float, scenarios: list[Any]) -> tuple[float, float]:
    """Model steps/s and runs/s replaying ``scenarios`` on ``variant`` (no trace kept)
    for about ``seconds``."""
    from vmxfuzz.executor import run

    steps = runs = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for sc in scenarios:
            steps += run(sc, variant, keep_trace=False).steps
            runs += 1
    dt = time.perf_counter() - t0
    return steps / dt, runs / dt
