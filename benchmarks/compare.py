"""The working tree against a base commit: throughput, explore and campaign rates.

    python benchmarks/compare.py BASE_REV [--rounds 3] [--seconds 3]

Each benchmark runs in a fresh subprocess per side -- the base commit (a temporary
git worktree, ``benchmarks/basetree.py``) and the working tree -- alternating
``base, tree, base, tree, ...`` so both see the same machine load; the best of the
rounds is kept per side and the table prints tree/base ratios.  Only APIs that exist
on both sides are used (``scenario.load``, ``executor.run``, ``differential``,
``campaign.judge``, ``explore.Explorer``, ``engines.strategies.scenarios``).

* ``replay``: model steps/s replaying the ``examples/`` both sides can read (no
  trace; ``benchmarks/sampling.py``), per variant, and the
  bare-generator floor measured in the same process: a generator yielding one label
  per step, driven by ``send`` (the least a step can cost); ``floor/steps`` is how
  many times slower than that floor a model step is.
* ``differential``: scenarios/s of ``run_both`` (reference, patched; no trace) on
  the fixed 380-scenario sample stored with the goldens (``tests/goldens/sample.json``:
  Hypothesis draws, NMIs, faults, weak memory) -- the same inputs on both sides, so
  this isolates the executor from changes to the strategies.
* ``explore``: states/s of ``vmxfuzz explore`` on the seed program with 1 NMI and the
  setup fixed (the documented bound), with its state and run counts (which must be
  equal on both sides).
* ``campaign``: examples/s of a counted Hypothesis campaign (fixed seed, 100
  examples): draw a scenario with ``scenarios()`` and judge it on both variants, as
  ``vmxfuzz fuzz`` does.  Each side uses its own strategy, so this includes what
  the strategies spend on drawing (pre-runs for NMI placement, windows).
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ("replay", "differential", "explore", "campaign")


# ---- the worker: one benchmark, in whatever vmxfuzz is on the import path -------------
def _floor(seconds: float) -> float:
    def flow(n: int) -> Any:
        for _ in range(n):
            yield "list_add:publish"

    steps = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        gen = flow(10_000)
        send = gen.send
        try:
            while True:
                send(None)
                steps += 1
        except StopIteration:
            pass
    return steps / (time.perf_counter() - t0)


def bench_replay(seconds: float) -> dict[str, Any]:
    from sampling import examples, steps_per_second

    names = os.environ.get("VMXFUZZ_BENCH_EXAMPLES")
    scs = examples(names.split(",") if names else None)
    out: dict[str, Any] = {"floor": _floor(min(1.0, seconds)), "examples": len(scs)}
    for variant in ("reference", "patched"):
        out[variant], out[f"{variant}_runs"] = steps_per_second(variant, seconds, scs)
    return out


def loadable() -> dict[str, Any]:
    """The example files this side's vmxfuzz reads (the replay uses those both read)."""
    from sampling import example_names

    return {"names": example_names()}


def bench_differential(seconds: float) -> dict[str, Any]:
    from vmxfuzz.differential import run_both
    from vmxfuzz.scenario import from_json

    docs = json.loads((ROOT / "tests" / "goldens" / "sample.json").read_text())
    scs = [from_json(d, f"sample/{i}") for i, d in enumerate(docs)]
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for sc in scs:
            run_both(sc, keep_trace=False)
            n += 1
    return {"scenarios/s": n / (time.perf_counter() - t0)}


def bench_explore(seconds: float) -> dict[str, Any]:
    from dataclasses import replace

    from sampling import examples

    from vmxfuzz.explore import Bound, Explorer

    (sc,) = examples(["seed-nmi-in-list-add.json"])
    program = replace(sc, schedule=(), nmis=(), faults=())
    out: dict[str, Any] = {}
    for variant in ("reference", "patched"):
        t0 = time.perf_counter()
        ex = Explorer(program, variant, Bound(nmis=1, setup=4))
        done = ex.explore()
        dt = time.perf_counter() - t0
        out[variant] = ex.stats.states / dt
        out[f"{variant}_states"] = ex.stats.states
        out[f"{variant}_runs"] = ex.stats.runs
        out[f"{variant}_complete"] = done
    return out


def bench_campaign(seconds: float) -> dict[str, Any]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    from vmxfuzz.campaign import judge
    from vmxfuzz.engines.strategies import scenarios

    n = 100
    count = [0]

    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @hseed(1)
    @given(scenarios())
    def campaign(sc: Any) -> None:
        judge(sc, "both")
        count[0] += 1

    t0 = time.perf_counter()
    campaign()
    dt = time.perf_counter() - t0
    return {"examples/s": count[0] / dt, "examples": count[0]}


def worker(bench: str, seconds: float) -> None:
    if bench == "loadable":
        print(json.dumps(loadable()))
        return
    fn = {
        "replay": bench_replay,
        "differential": bench_differential,
        "explore": bench_explore,
        "campaign": bench_campaign,
    }[bench]
    print(json.dumps(fn(seconds)))


# ---- the driver ------------------------------------------------------------------------
def measure(env: dict[str, str], cwd: Path, bench: str, seconds: float) -> dict[str, Any]:
    p = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", bench, str(seconds)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if p.returncode != 0:
        raise SystemExit(f"{bench} failed: {p.stderr.strip().splitlines()[-1:]}")
    doc: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return doc


def best(a: dict[str, Any] | None, b: dict[str, Any], rate_keys: list[str]) -> dict[str, Any]:
    if a is None:
        return b
    return b if sum(b[k] for k in rate_keys) > sum(a[k] for k in rate_keys) else a


RATES = {
    "replay": ["reference", "patched"],
    "differential": ["scenarios/s"],
    "explore": ["reference", "patched"],
    "campaign": ["examples/s"],
}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], float(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="base commit (e.g. 155cb2b)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--only", default=",".join(BENCHES))
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from basetree import BaseTree, import_env, import_farm

    with BaseTree(args.base) as base, tempfile.TemporaryDirectory() as tmp:
        tree_env = import_env(import_farm(ROOT, Path(tmp) / "import"))
        sides = {"base": (base.env(), base.tmp), "tree": (tree_env, Path(tmp))}
        # The examples both sides read (a newer format is left out of the replay).
        both = set.intersection(
            *(set(measure(env, cwd, "loadable", 0)["names"]) for env, cwd in sides.values())
        )
        for env, _ in sides.values():
            env["VMXFUZZ_BENCH_EXAMPLES"] = ",".join(sorted(both))
        results: dict[str, dict[str, dict[str, Any] | None]] = {}
        for bench in args.only.split(","):
            results[bench] = {"base": None, "tree": None}
            for _ in range(args.rounds):
                for side, (env, cwd) in sides.items():
                    got = measure(env, cwd, bench, args.seconds)
                    results[bench][side] = best(results[bench][side], got, RATES[bench])
        report(args.base, results)
    return 0


def report(rev: str, results: dict[str, dict[str, dict[str, Any] | None]]) -> None:
    print(f"{'benchmark':34} {rev:>14} {'working tree':>14} {'ratio':>7}")
    for bench, sides in results.items():
        b, t = sides["base"], sides["tree"]
        assert b is not None and t is not None
        for key in RATES[bench]:
            label = f"{bench} {key}" + (" steps/s" if bench == "replay" else "")
            label += " states/s" if bench == "explore" else ""
            print(f"{label:34} {b[key]:>14,.0f} {t[key]:>14,.0f} {t[key] / b[key]:>6.2f}x")
        if bench == "replay":
            print(f"  {t['examples']} examples both sides read")
            for side, d in (("base", b), ("tree", t)):
                ratios = ", ".join(f"{v} {d['floor'] / d[v]:.1f}x" for v in RATES[bench])
                floor = f"{d['floor']:,.0f}"
                print(f"  {side}: bare-generator floor {floor} steps/s; floor/steps {ratios}")
        if bench == "explore":
            for v in RATES[bench]:
                print(
                    f"  {v}: states {b[f'{v}_states']} -> {t[f'{v}_states']}, "
                    f"runs {b[f'{v}_runs']} -> {t[f'{v}_runs']}, "
                    f"complete {b[f'{v}_complete']} -> {t[f'{v}_complete']}"
                )


if __name__ == "__main__":
    sys.exit(main())
