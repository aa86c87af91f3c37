"""How far `vmxfuzz explore` gets in a budget: for each bound and variant, whether the
exploration finishes, with states, runs, states/s and what sleep sets save.

    python benchmarks/explore_bounds.py [--budget 60] [--sleep-ratio] [--workers N] [--wide]

Each row is one `vmxfuzz explore --json` subprocess (one core). The machine is shared,
so only ratios measured in the same run are compared (sleep sets on/off); absolute
states/s are indicative.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BOUNDS: list[tuple[str, list[str]]] = [
    ("seed program, 1 NMI", [str(ROOT / "examples/seed-nmi-in-list-add.json"), "--setup", "4"]),
    ("2 CPUs, 2 vCPUs, 1 op, 1 NMI", ["--cpus", "2", "--vcpus", "2", "--ops", "1"]),
    (
        "2 CPUs, 2 vCPUs, 1 op, 1 NMI, 1 fault",
        ["--cpus", "2", "--vcpus", "2", "--ops", "1", "--faults", "1"],
    ),
    ("2 CPUs, 2 vCPUs, 2 ops, 0 NMI", ["--cpus", "2", "--vcpus", "2", "--ops", "2", "--nmis", "0"]),
]


WIDE = [
    (
        "2 CPUs, 2 vCPUs, 2 ops, 1 NMI (goal: <= 60 s)",
        ["--cpus", "2", "--vcpus", "2", "--ops", "2"],
    ),
]
WORKERS = 1


def explore(args: list[str], variant: str, budget: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "vmxfuzz", "explore", *args, "--variant", variant]
        cmd += ["--time", str(budget), "--out", str(Path(tmp) / "x"), "--json"]
        cmd += ["--workers", str(WORKERS)]
        t0 = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if p.returncode not in (0, 1, 3):
            raise SystemExit(f"explore failed ({p.returncode}): {p.stderr.strip()}")
        doc: dict[str, object] = json.loads(p.stdout)
        doc["wall"] = time.monotonic() - t0
        return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60.0)
    ap.add_argument("--sleep-ratio", action="store_true", help="also run without sleep sets")
    ap.add_argument("--workers", type=int, default=1, help="explore --workers N")
    ap.add_argument("--wide", action="store_true", help="also the wide bound of the goals")
    args = ap.parse_args()
    global WORKERS
    WORKERS = args.workers
    print(f"{'bound':40} {'variant':9} {'done':5} {'states':>8} {'runs':>7} {'s':>7} {'st/s':>6}")
    for label, bound in BOUNDS + (WIDE if args.wide else []):
        for variant in ("reference", "patched"):
            d = explore(bound, variant, args.budget)
            print(
                f"{label:40} {variant:9} {d['complete']!s:5} {d['states']:>8} "
                f"{d['runs']:>7} {d['seconds']:>7} {d['states_per_s']!s:>6}"
            )
    if args.sleep_ratio:
        bound = BOUNDS[-1][1]
        on = explore(bound, "patched", 600)
        off = explore([*bound, "--no-sleep-sets"], "patched", 600)
        print(
            f"sleep sets ({BOUNDS[-1][0]}, patched): runs {off['runs']} -> {on['runs']} "
            f"({off['runs'] / max(1, on['runs']):.2f}x fewer), "  # type: ignore[operator]
            f"time {off['seconds']}s -> {on['seconds']}s, states {off['states']} = {on['states']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
