"""Time to first detection of each known finding class: the Hypothesis engine, the
atheris engine (libFuzzer, empty corpus) and a naive baseline, over N seeds on one
core, measured in the same run.

The naive baseline draws the same op vocabulary uniformly at random and places NMIs at
a uniformly random step label of the models (any label, any CPU, nth 1..3), without
looking at what the scenario executes. The Hypothesis engine draws NMI points from the
steps the scenario actually executes (trace-guided).

    python benchmarks/time_to_detect.py [--seeds 20] [--cap 15] [--engines hypothesis,atheris,naive]
        [--mutants all|m01,m02 [--only-mutants]]

One class per root cause of docs/findings.md.  Prints, per class, the median and
spread (p25..p75) of seconds to first detection (a miss counts as the cap) and the
ratio of medians to the first engine's; with ``--mutants``, the time to kill each
mutant per engine (the engines of ``vmxfuzz mutants``).  Use fewer ``--seeds`` for a
quick look: every seed costs ``cap`` seconds per engine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from vmxfuzz.campaign import Hit, judge
from vmxfuzz.engines.hypothesis_engine import hunt
from vmxfuzz.kernel.state import Config
from vmxfuzz.labels import known_labels
from vmxfuzz.machine.faults import SITES, FaultSpec
from vmxfuzz.scenario import NESTED_OPS, Op, Scenario
from vmxfuzz.sched import NmiSpec


# One class per root cause of docs/findings.md (the id, then what the campaign sees):
# findings are keyed by cause (vmxfuzz/causes.py), so each class is its cause, plus
# the window where one cause has two findings (F09/F14, F10/F11's 5.6 side = F03).
# F13 needs an upstream plug-in variant (examples/plugins/upstream/dbef2808...): no
# campaign of the default variants can show it, so it has no class here.
def _cause(cls: str, cause: str) -> Callable[[Hit], bool]:
    return lambda h: h.cls == cls and h.cause == cause


def _sites(h: Hit) -> str:
    return " ".join(s for _, s in h.window if s)


_SHADOW_COPY = ("@vmcs_read:", "@vmcs_write:", "@vmcs_load:", "@vmcs_clear:")
_F05 = tuple(
    f"oops/emergency-vmxoff-outside-vmx-{why}"
    for why in ("vmxe-set-before-vmxon", "after-vmxoff", "after-vmxon-fault")
)
_SYNC = "kexec-active-vmcs/shadow-vmcs-loaded-for-sync"

CLASSES: dict[str, Callable[[Hit], bool]] = {
    "F01/F02 seed window (crash-vmclear-disabled)": _cause(
        "fixed", "kexec-active-vmcs/crash-vmclear-disabled"
    ),
    "F03 VMXON #GP oops (fixed)": _cause("fixed", "oops/vmxon-fault-without-fixup"),
    "F04 crash walk, uninitialised list (regression)": _cause(
        "regression", "oops/uninitialised-loaded-vmcs-list"
    ),
    "F05 crash VMXOFF #UD (shared)": lambda h: h.cls == "shared" and h.cause in _F05,
    "F06 VMXON VMfail unnoticed (shared)": _cause(
        "shared", "oops/invept-outside-vmx-after-undetected-vmxon-vmfail"
    ),
    "F07 VM outlives failed vmx_init": lambda h: (
        h.cause in ("oops/kvm-x86-ops-null", "use-after-free/vendor-text-freed")
    ),
    "F08 cached shadow VMCS at kexec": _cause(
        "shared", "kexec-active-vmcs/shadow-vmcs-cached-by-vm-entry"
    ),
    "F09 NMI in a shadow copy (crash)": lambda h: (
        h.cls == "shared" and h.cause == _SYNC and any(s in _sites(h) for s in _SHADOW_COPY)
    ),
    "F10 resume: VMCLEAR outside VMX (regression)": _cause(
        "regression", "oops/vmclear-outside-vmx-after-ignored-enable-failure"
    ),
    "F11 hotplug: VMPTRLD outside VMX (regression)": _cause(
        "regression", "oops/vmptrld-outside-vmx-after-ignored-enable-failure"
    ),
    "F12 reboot IPI between VMPTRLD and ->cpu": _cause(
        "shared", "kexec-active-vmcs/loaded-vmcs-cpu-names-other-cpu"
    ),
    "F14 reboot IPI in the shadow sync": lambda h: (
        h.cls == "shared" and h.cause == _SYNC and not any(s in _sites(h) for s in _SHADOW_COPY)
    ),
    "F15 crash VMXOFF after undetected VMfail": _cause(
        "shared", "oops/emergency-vmxoff-outside-vmx-after-undetected-vmxon-vmfail"
    ),
}
# The classes only an NMI or IPI at the right step (or a deep interleaving) reaches.
WINDOW_CLASSES = ("F01", "F05", "F07", "F09", "F12", "F14")


class Timer:
    def __init__(self, cap: float) -> None:
        self.start = time.monotonic()
        self.cap = cap
        self.first: dict[str, float] = {}

    def see(self, hits: list[Hit]) -> None:
        now = time.monotonic() - self.start
        for h in hits:
            for name, pred in CLASSES.items():
                if name not in self.first and pred(h):
                    self.first[name] = now

    def done(self) -> bool:
        return len(self.first) == len(CLASSES) or time.monotonic() - self.start > self.cap


def naive_scenario(rng: random.Random, labels: list[str]) -> Scenario:
    cpus = rng.randint(1, 4)
    kinds = [
        "module_load",
        "create_vm",
        "create_vcpu",
        "run_vcpu",
        "destroy_vm",
        "cpu_offline",
        "cpu_online",
        "suspend",
        "module_unload",
        "panic",
        "kexec",
        "reboot",
        *NESTED_OPS,
    ]
    ops = []
    for _ in range(rng.randint(1, 10)):
        k = rng.choice(kinds)
        cpu = rng.randrange(cpus)
        par = rng.random() < 0.2
        if k in ("create_vm", "destroy_vm"):
            ops.append(Op(k, cpu, par, vm=rng.choice(["vm0", "vm1"])))
        elif k == "create_vcpu":
            ops.append(
                Op(k, cpu, par, vm=rng.choice(["vm0", "vm1"]), vcpu=rng.choice(["v0", "v1", "v2"]))
            )
        elif k == "run_vcpu" or k in NESTED_OPS:
            ops.append(Op(k, cpu, par, vcpu=rng.choice(["v0", "v1", "v2"])))
        elif k in ("cpu_offline", "cpu_online"):
            if cpus > 1:
                t = rng.randrange(1, cpus)
                ops.append(Op(k, 0, par, target=t))
        else:
            ops.append(Op(k, cpu if k in ("panic", "kexec", "reboot") else 0, par))
    nmis = tuple(
        NmiSpec(
            rng.randrange(cpus),
            rng.choice(labels),
            rng.randint(1, 3),
            rng.choice(["panic", "panic", "benign"]),
        )
        for _ in range(rng.randint(0, 2))
    )
    faults = tuple(
        FaultSpec(s, rng.randint(1, 3), None, rng.choice(SITES[s][0]))
        for s in rng.sample(sorted(SITES), rng.randint(0, 2))
    )
    sched = tuple(rng.randrange(cpus) for _ in range(rng.randint(0, 40)))
    return Scenario(tuple(ops), Config(cpus=cpus, nested=rng.random() < 0.5), sched, nmis, faults)


def run_naive(seed: int, cap: float) -> dict[str, float]:
    rng = random.Random(seed)
    labels = sorted(known_labels())
    t = Timer(cap)
    while not t.done():
        t.see(judge(naive_scenario(rng, labels), "both"))
    return t.first


def run_hypothesis(seed: int, cap: float) -> dict[str, float]:
    t = Timer(cap)

    def new_hits(sc: Scenario) -> list[Hit]:
        hits = judge(sc, "both")
        t.see(hits)
        return []  # keep generating: time-to-detect, not shrinking

    budget = cap
    hunt(
        new_hits,
        lambda h, s: None,
        variant="both",
        budget_s=budget,
        seed_value=seed,
        database=None,
        round_examples=200,
        tick=lambda n: None,
    )
    return t.first


def run_atheris(seed: int, cap: float) -> dict[str, float]:
    """libFuzzer from an empty corpus; a finding's time is its first drop's mtime."""
    import json
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from vmxfuzz.scenario import load

    tmp = Path(tempfile.mkdtemp())
    (tmp / "corpus").mkdir()
    env = dict(os.environ, VMXFUZZ_OUT=str(tmp), VMXFUZZ_FAIL_ON="")
    t0 = time.time()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "vmxfuzz.fuzz",
            f"-max_total_time={int(cap)}",
            f"-seed={seed + 1}",
            str(tmp / "corpus"),
        ],
        env=env,
        capture_output=True,
        check=False,
    )
    first: dict[str, float] = {}
    for p in sorted((tmp / ".pending").glob("*.json"), key=lambda p: p.stat().st_mtime):
        at = p.stat().st_mtime - t0
        for h in judge(load(p), "both"):
            for name, pred in CLASSES.items():
                if name not in first and pred(h):
                    first[name] = at
    execs = sum(json.loads(p.read_text())["execs"] for p in (tmp / ".stats").glob("*.json"))
    EXEC_RATE.append(execs / cap)
    return first


EXEC_RATE: list[float] = []


def summarize(
    name: str, runs: list[dict[str, float]], cap: float
) -> dict[str, tuple[float, float, float, int]]:
    out = {}
    for cls in CLASSES:
        xs = sorted(r.get(cls, cap) for r in runs)
        q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
        found = sum(1 for r in runs if cls in r)
        out[cls] = (statistics.median(xs), q[0], q[2], found)
    return out


def _ratio(
    other: tuple[float, float, float, int], base: tuple[float, float, float, int], cap: float
) -> str:
    """Ratio of medians; ``>=`` where the other engine's median is the cap (a miss)."""
    r = other[0] / base[0]
    if base[3] == 0:
        return "-"
    return f"{'>= ' if other[0] >= cap else ''}{r:.1f}x"


def mutant_kills(engines: list[str], seeds: int, cap: float, only: str) -> None:
    """Time to kill each mutant of the catalogue, per engine (vmxfuzz.mutation's
    engines: the same runs ``vmxfuzz mutants`` makes), median and p25..p75."""
    import tempfile
    from pathlib import Path

    from vmxfuzz.mutation import ENGINES, EngineUnavailable, catalogue

    mutants = [m for m in catalogue() if not only or m.id in only.split(",")]
    print(f"\ntime to kill, {seeds} seeds, cap {cap:.0f}s (miss = cap)")
    print("| mutant | " + " | ".join(f"{e} median [p25..p75] (killed)" for e in engines) + " |")
    print("|---|" + "---|" * len(engines))
    for m in mutants:
        cells = []
        for e in engines:
            times = []
            try:
                for sd in range(seeds):
                    res = ENGINES[e](m.pair, cap, sd, Path(tempfile.mkdtemp()))
                    times.append(res.kill.seconds if res.kill else None)
            except EngineUnavailable:
                cells.append("unavailable")
                continue
            xs = sorted(t if t is not None else cap for t in times)
            q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
            found = sum(t is not None for t in times)
            cells.append(f"{statistics.median(xs):.2f}s [{q[0]:.2f}..{q[2]:.2f}] ({found}/{seeds})")
        print(f"| {m.id} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--cap", type=float, default=15.0, help="seconds per engine and seed")
    ap.add_argument("--engines", default="hypothesis,atheris,naive")
    ap.add_argument(
        "--mutants",
        default=None,
        help="also time mutant kills: 'all' or comma-separated ids (engines hypothesis, "
        "atheris, explore)",
    )
    ap.add_argument("--only-mutants", action="store_true", help="skip the findings table")
    args = ap.parse_args()
    if args.mutants:
        kill_engines = [e for e in args.engines.split(",") if e != "naive"]
        if args.only_mutants:
            mutant_kills(
                kill_engines, args.seeds, args.cap, "" if args.mutants == "all" else args.mutants
            )
            return
    engines = {"hypothesis": run_hypothesis, "naive": run_naive, "atheris": run_atheris}
    names = args.engines.split(",")
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for s in range(args.seeds):
        for n in names:
            runs[n].append(engines[n](s, args.cap))
        print(f"seed {s}: " + ", ".join(f"{n} {len(runs[n][-1])}" for n in names), flush=True)
    print(f"\ntime to first detection, {args.seeds} seeds, cap {args.cap:.0f}s (miss = cap)")
    base = names[0]
    print(
        "| class | "
        + " | ".join(f"{n} median [p25..p75] (found)" for n in names)
        + " | "
        + " | ".join(f"{n}/{base}" for n in names[1:])
        + " |"
    )
    print("|---|" + "---|" * (2 * len(names) - 1))
    table = {n: summarize(n, runs[n], args.cap) for n in names}
    for cls in CLASSES:
        cells = []
        for n in names:
            m, q1, q3, found = table[n][cls]
            cells.append(f"{m:.2f}s [{q1:.2f}..{q3:.2f}] ({found}/{args.seeds})")
        ratios = [_ratio(table[n][cls], table[base][cls], args.cap) for n in names[1:]]
        print(f"| {cls} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    if EXEC_RATE:
        print(f"\natheris harness: {statistics.median(EXEC_RATE):.0f} execs/s (median over seeds)")
    if args.mutants:
        mutant_kills(
            kill_engines, args.seeds, args.cap, "" if args.mutants == "all" else args.mutants
        )


if __name__ == "__main__":
    main()
