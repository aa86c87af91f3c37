"""What random byte strings decode to: how plausible libFuzzer's raw material is.

libFuzzer starts from short random inputs and keeps what adds coverage; it gets deep
only if most byte strings, short ones included, already decode to programs that do
something.  This draws ``--n`` random inputs of 0..``--max-len`` bytes (seeded), decodes
each with the atheris decoder, runs it on ``reference`` and judges it on the pair, and
prints generic measures (module loaded, vCPUs created, an NMI or injected fault
fired, a crash or kexec reached, steps, op success) and how many inputs showed a
finding (any; an oops; a VMCS left active at kexec).  ``--base REV`` measures a base
commit's decoder on the same inputs in the same run (``benchmarks/basetree.py``),
e.g. ``--base main``.

    python benchmarks/decoder_reach.py [--n 400] [--max-len 64] [--seed 0] [--base REV]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path


def measure(n: int, max_len: int, seed: int) -> dict[str, float]:
    from vmxfuzz.campaign import judge
    from vmxfuzz.executor import run
    from vmxfuzz.fuzz.decoder import decode

    rng = random.Random(seed)
    inputs = [bytes(rng.randrange(256) for _ in range(rng.randint(0, max_len))) for _ in range(n)]
    m = dict.fromkeys(
        (
            "module loaded",
            "a vCPU created",
            "two vCPUs created",
            "an NMI fired",
            "an injected fault fired",
            "crash or kexec reached",
            "ops that succeeded (of all ops)",
            "steps (mean)",
            "any finding",
            "an oops (finding)",
            "a VMCS active at kexec (finding)",
        ),
        0.0,
    )
    ops = ok = 0
    t0 = time.monotonic()
    for data in inputs:
        sc = decode(data)
        r = run(sc, "reference", keep_trace=False)
        results = list(zip(sc.ops, r.op_results, strict=False))
        created = sum(1 for o, x in results if o.op == "create_vcpu" and x == "0")
        m["module loaded"] += any(o.op == "module_load" and x == "0" for o, x in results)
        m["a vCPU created"] += created >= 1
        m["two vCPUs created"] += created >= 2
        m["an NMI fired"] += bool(r.nmis_fired)
        m["an injected fault fired"] += bool(r.faults_fired)
        m["crash or kexec reached"] += "kexec" in (r.ended or "")
        m["steps (mean)"] += r.steps
        ops += len(sc.ops)
        ok += sum(1 for _, x in results if x == "0")
        hits = judge(sc, "both")
        m["any finding"] += bool(hits)
        m["an oops (finding)"] += any(h.invariant == "oops" for h in hits)
        m["a VMCS active at kexec (finding)"] += any(
            h.invariant == "kexec-active-vmcs" for h in hits
        )
    elapsed = time.monotonic() - t0
    out = {k: v / n for k, v in m.items()}
    out["ops that succeeded (of all ops)"] = ok / ops if ops else 0.0
    out["inputs decoded, run and judged per second"] = n / elapsed
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--base", help="also measure this commit's decoder (same inputs)")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    here = measure(args.n, args.max_len, args.seed)
    if args.json:
        print(json.dumps(here))
        return
    cols = {"this tree": here}
    if args.base:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from basetree import BaseTree

        with BaseTree(args.base) as base:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--json"]
            cmd += ["--n", str(args.n), "--max-len", str(args.max_len), "--seed", str(args.seed)]
            p = subprocess.run(
                cmd, cwd=base.tmp, env=base.env(), capture_output=True, text=True, check=True
            )
            cols[args.base] = json.loads(p.stdout.strip().splitlines()[-1])
    print(f"{args.n} random inputs of 0..{args.max_len} bytes (seed {args.seed})")
    print("| measure | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for k in here:
        fmt = "{:.1f}" if k.startswith(("steps", "inputs")) else "{:.1%}"
        print(f"| {k} | " + " | ".join(fmt.format(c[k]) for c in cols.values()) + " |")


if __name__ == "__main__":
    main()
