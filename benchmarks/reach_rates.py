"""Examples to detect each finding class, and CPU time per example: the generator's
reach measured independently of the machine's load.

    python benchmarks/reach_rates.py [--examples 2000] [--seed 1]

Draws ``--examples`` scenarios with the Hypothesis strategies (generation phase only,
no shrinking, no database), judges each on the default differential (``both``), and
prints per class of :mod:`time_to_detect` (one per root cause of docs/findings.md) how
many examples showed it, the examples per hit, and the CPU seconds one example took
(drawing, its recorded pre-runs and the judging).  On a shared machine wall-clock
time-to-detect mostly measures the load; CPU time per example times examples per hit
is what an idle core would take.  To compare two trees, run the script under each
(``PYTHONPATH=<checkout of the other tree> python benchmarks/reach_rates.py``) with
the same ``--examples`` and ``--seed``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

from time_to_detect import CLASSES

from vmxfuzz.campaign import judge
from vmxfuzz.engines.strategies import scenarios
from vmxfuzz.scenario import Scenario


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--label", default="this tree")
    args = ap.parse_args()
    hits: Counter[str] = Counter()
    first: dict[str, int] = {}
    count = [0]

    @seed(args.seed)
    @settings(
        max_examples=args.examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(scenarios())
    def probe(sc: Scenario) -> None:
        count[0] += 1
        found = {name for h in judge(sc, "both") for name, pred in CLASSES.items() if pred(h)}
        for name in found:
            hits[name] += 1
            first.setdefault(name, count[0])

    cpu = time.process_time()
    probe()
    cpu = time.process_time() - cpu
    n = count[0]
    per = cpu / n
    print(f"{args.label}: {n} examples, {per * 1000:.1f} ms CPU per example (seed {args.seed})")
    print("| class | examples with it | examples per hit | first at example | CPU s per hit |")
    print("|---|---|---|---|---|")
    for name in CLASSES:
        k = hits[name]
        if k:
            print(f"| {name} | {k} | {n / k:.0f} | {first[name]} | {per * n / k:.1f} |")
        else:
            print(f"| {name} | 0 | > {n} | - | > {per * n:.0f} |")


if __name__ == "__main__":
    main()
