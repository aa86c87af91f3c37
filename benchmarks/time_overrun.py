"""How well ``vmxfuzz fuzz --time T`` keeps to T: wall time of the whole command.

    python benchmarks/time_overrun.py [--times 10,60,180] [--engines hypothesis,atheris]
                                      [--seed 0] [--variant both]

Each run is ``python -m vmxfuzz fuzz --engine E --time T --out NEW_DIR`` in a child
process, timed from before it starts to its exit (interpreter start-up, imports, the
libFuzzer harness start-up, minimisation and the final summary included: what a user
times).  The table gives the wall time, the overrun ``wall / T - 1`` (the goal is at
most 5%), the findings and how many of them the deadline left not yet minimised
(``"minimised": false``: the next run on the folder finishes them).  The machine is
shared, so the load average at the start of each run is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one(engine: str, budget: float, seed: int, variant: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        cmd = [sys.executable, "-m", "vmxfuzz", "fuzz", "--engine", engine]
        cmd += ["--time", f"{budget:g}", "--seed", str(seed), "--variant", variant]
        cmd += ["--out", str(out), "--json"]
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        try:
            findings = json.loads((out / "summary.json").read_text())["findings"]
        except (OSError, ValueError, KeyError):
            findings = []
    return {
        "engine": engine,
        "time": budget,
        "wall": wall,
        "overrun": wall / budget - 1,
        "exit": p.returncode,
        "findings": len(findings),
        "unminimised": sum(1 for f in findings if f.get("minimised") is False),
        "load": load,
        "stderr": p.stderr[-300:] if p.returncode not in (0, 1) else "",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--times", default="10,60,180", help="comma-separated --time values")
    ap.add_argument("--engines", default="hypothesis,atheris")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", default="both")
    a = ap.parse_args()
    rows = []
    print("| engine | --time s | wall s | overrun | exit | findings | not yet minimised | load |")
    print("|---|---|---|---|---|---|---|---|")
    for t in (float(x) for x in a.times.split(",")):
        for e in a.engines.split(","):
            r = one(e, t, a.seed, a.variant)
            rows.append(r)
            print(
                f"| {e} | {t:g} | {r['wall']:.2f} | {r['overrun']:+.1%} | {r['exit']} "
                f"| {r['findings']} | {r['unminimised']} | {r['load']:.1f} |",
                flush=True,
            )
            if r["stderr"]:
                print(f"  stderr: {r['stderr']}", flush=True)
    worst = max(float(str(r["overrun"])) for r in rows)
    print(f"\nworst overrun {worst:+.1%} (goal: at most +5%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
