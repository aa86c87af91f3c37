"""Model throughput and test-suite parallel speedup, measured in one run.

    python benchmarks/throughput.py [--seconds 5] [--xdist]

* model steps per second, per variant, replaying the shipped examples (no trace kept);
* differential scenarios per second on a fixed sample of generated scenarios;
* with ``--xdist``: wall time of the default test run with 1 and 2 xdist workers, and
  the speedup.  Ratios are taken within the run: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from sampling import derandomised, examples, steps_per_second

from vmxfuzz.differential import run_both
from vmxfuzz.scenario import Scenario

ROOT = Path(__file__).resolve().parent.parent


def differential_rate(scs: list[Scenario]) -> float:
    t0 = time.perf_counter()
    for sc in scs:
        run_both(sc, keep_trace=False)
    return len(scs) / (time.perf_counter() - t0)


def pytest_wall(workers: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", workers, "-p", "no:cacheprovider"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--xdist", action="store_true")
    args = ap.parse_args()
    scs = examples()
    ref_steps, ref_runs = steps_per_second("reference", args.seconds, scs)
    pat_steps, pat_runs = steps_per_second("patched", args.seconds, scs)
    print(
        f"model steps/s: reference {ref_steps:,.0f} ({ref_runs:.0f} runs/s), "
        f"patched {pat_steps:,.0f} ({pat_runs:.0f} runs/s), ratio {pat_steps / ref_steps:.2f}"
    )
    scs = derandomised(200)
    print(
        f"differential (both variants) on 200 generated scenarios: "
        f"{differential_rate(scs):.0f} scenarios/s"
    )
    if args.xdist:
        one, two = pytest_wall("1"), pytest_wall("2")
        print(
            f"default test run: 1 worker {one:.1f}s, 2 workers {two:.1f}s, speedup {one / two:.2f}x"
        )


if __name__ == "__main__":
    main()
