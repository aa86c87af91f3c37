"""Spin on a Promela model of the list + NMI + crash-VMCLEAR core, beside `vmxfuzz explore`
on the same program and bound, in one run: time to the first violation (reference) and
time to explore everything (patched), and the ratios vmxfuzz/Spin.

    python benchmarks/peers/spin_vs_explore.py [--repeat 3] [--budget 120] [--json OUT]

Spin side (benchmarks/peers/vmx_core.pml): `spin -a [-DPATCHED]`, `gcc -O2 -DSAFETY`,
then `./pan` (safety: assertions and invalid end states). Reference: pan stops at the
first error (its default `-c1`); the full search (`-c0`) is reported too. Patched: the
full search. vmxfuzz side (benchmarks/peers/core-program.json): `vmxfuzz explore
--setup 4 --nmis 1 --nmi-kinds panic --faults 0 --json`; its `first_finding_seconds` is
the time to violation, `seconds` the time of the whole exploration.

Each measurement is the median of --repeat runs. "search s" is the search alone (pan's
wall time; explore's own clock, which includes running the setup ops but not Python's
start-up); "end-to-end s" adds spin -a + gcc, or the interpreter start-up and import.
Exit 0 when every verdict is as expected (reference: violation, patched: none, both
tools), 1 otherwise, 2 when spin or gcc is missing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MODEL = HERE / "vmx_core.pml"
PROGRAM = HERE / "core-program.json"
SETUP_OPS = 4
INSTALL = {
    "spin": "apt-get install -y spin   (Debian package `spin`)",
    "gcc": "apt-get install -y gcc",
}
# pan: -n no unreached-code report; -w18 a 2^18-slot hash table (the default 2^24 costs
# ~70 ms of page faults on a model of a few hundred states; see README).
PAN_FLAGS = ["-n", "-w18"]
CC_FLAGS = ["-O2", "-w", "-DSAFETY"]


@dataclass
class Row:
    tool: str
    variant: str
    search: str  # "first violation" | "full"
    states: int
    transitions: int
    seconds: float  # the search alone (median)
    end_to_end: float  # including compilation / interpreter start-up (median)
    verdict: str
    runs: list[float] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)


# ---- Spin -------------------------------------------------------------------------------
def missing_tools() -> list[str]:
    return [t for t in ("spin", "gcc") if shutil.which(t) is None]


def _run(cmd: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    return p, time.perf_counter() - t0


def build_pan(variant: str, work: Path) -> float:
    """spin -a + gcc in `work`; returns the seconds both took."""
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(MODEL, work / MODEL.name)
    defines = ["-DPATCHED"] if variant == "patched" else []
    p, t_spin = _run(["spin", *defines, "-a", MODEL.name], work)
    if p.returncode != 0 or not (work / "pan.c").exists():
        raise SystemExit(f"spin -a failed:\n{p.stdout}{p.stderr}")
    p, t_cc = _run(["gcc", *CC_FLAGS, "-o", "pan", "pan.c"], work)
    if p.returncode != 0:
        raise SystemExit(f"gcc pan.c failed:\n{p.stdout}{p.stderr}")
    return t_spin + t_cc


_NUM = {
    "states": re.compile(r"^\s*(\d+) states, stored", re.M),
    "matched": re.compile(r"^\s*(\d+) states, matched", re.M),
    "transitions": re.compile(r"^\s*(\d+) transitions \(= stored\+matched\)", re.M),
    "errors": re.compile(r"errors: (\d+)"),
    "depth": re.compile(r"depth reached (\d+)"),
}


# Which vmxfuzz invariant an assertion of vmx_core.pml stands for (pan prints the
# violated expression after preprocessing and inlining).
_ASSERTS = [
    ("(vmcs_cache[0]==0)&&(vmcs_cache[1]==0)", "kexec-active-vmcs"),
    ("vmcs_cache[(1-", "vmcs-active-on-two-cpus"),
    ("vmx_root[", "oops"),
    ("hops<", "hang"),
    ("<4)", "oops"),
    (">=(2+0)", "oops"),
]


def invariant_of(expr: str | None) -> str:
    for needle, name in _ASSERTS:
        if expr and needle in expr:
            return name
    return "list-corrupt"


def parse_pan(out: str) -> dict[str, object]:
    doc: dict[str, object] = {}
    for key, rx in _NUM.items():
        m = rx.search(out)
        if m is None:
            raise SystemExit(f"cannot read `{key}` from pan's output:\n{out}")
        doc[key] = int(m.group(1))
    m = re.search(r"pan:\d+: (.*?) \(at depth", out)
    doc["first_error"] = m.group(1) if m else None
    doc["incomplete"] = "Search not completed" in out
    doc["depth_limited"] = "max search depth too small" in out
    return doc


def run_pan(work: Path, extra: list[str]) -> tuple[dict[str, object], float]:
    for trail in work.glob("*.trail"):
        trail.unlink()
    p, secs = _run(["./pan", *PAN_FLAGS, *extra], work)
    doc = parse_pan(p.stdout)
    if doc["depth_limited"]:
        raise SystemExit("pan: max search depth too small (raise -m)")
    return doc, secs


def spin_rows(variant: str, repeat: int, tmp: Path) -> list[Row]:
    builds = []
    work = tmp / f"spin-{variant}"
    for _ in range(repeat):
        builds.append(build_pan(variant, work))
    build = statistics.median(builds)
    searches: list[tuple[str, list[str]]] = []
    if variant == "reference":
        searches.append(("first violation", []))
    searches.append(("full", ["-c0"] if variant == "reference" else []))
    rows = []
    for search, flags in searches:
        docs, times = [], []
        for _ in range(repeat):
            doc, secs = run_pan(work, flags)
            docs.append(doc)
            times.append(secs)
        doc = docs[-1]
        errors = int(doc["errors"])  # type: ignore[call-overload]
        first_error = doc["first_error"]
        assert first_error is None or isinstance(first_error, str)
        if errors:
            verdict = f"violation: {invariant_of(first_error)}"
            if search == "full":
                verdict = f"{errors} error states, first: {invariant_of(first_error)}"
        elif doc["incomplete"]:
            verdict = "INCOMPLETE"
        else:
            verdict = "no violation (complete)"
        secs = statistics.median(times)
        rows.append(
            Row(
                "spin",
                variant,
                search,
                int(doc["states"]),  # type: ignore[call-overload]
                int(doc["transitions"]),  # type: ignore[call-overload]
                round(secs, 4),
                round(build + secs, 3),
                verdict,
                [round(t, 4) for t in times],
                {
                    "build_seconds": round(build, 3),
                    "depth": doc["depth"],
                    "errors": errors,
                    "first_error": first_error,
                },
            )
        )
    return rows


# ---- vmxfuzz explore ------------------------------------------------------------------------
def explore_help() -> str | None:
    p = subprocess.run(
        [sys.executable, "-m", "vmxfuzz", "explore", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return p.stdout if p.returncode == 0 and "--json" in p.stdout else None


def explore_once(
    variant: str, budget: float, tmp: Path, panic_only: bool
) -> tuple[dict[str, object], float]:
    out = Path(tempfile.mkdtemp(dir=tmp, prefix=f"explore-{variant}-"))
    cmd = [sys.executable, "-m", "vmxfuzz", "explore", str(PROGRAM), "--variant", variant]
    cmd += ["--setup", str(SETUP_OPS), "--nmis", "1", "--faults", "0"]
    if panic_only:
        cmd += ["--nmi-kinds", "panic"]
    cmd += ["--time", str(budget), "--out", str(out / "x"), "--json"]
    p, wall = _run(cmd, ROOT)
    if p.returncode not in (0, 1, 3):
        raise SystemExit(f"vmxfuzz explore failed ({p.returncode}):\n{p.stderr.strip()}")
    doc: dict[str, object] = json.loads(p.stdout)
    return doc, wall


def explore_rows(
    variant: str, repeat: int, budget: float, tmp: Path, panic_only: bool
) -> list[Row]:
    docs, walls = [], []
    for _ in range(repeat):
        doc, wall = explore_once(variant, budget, tmp, panic_only)
        docs.append(doc)
        walls.append(wall)
    doc = docs[-1]
    findings = doc.get("findings") or []
    assert isinstance(findings, list)
    complete = bool(doc.get("complete"))
    startup = statistics.median(
        w - float(d["seconds"])  # type: ignore[arg-type]
        for d, w in zip(docs, walls, strict=True)
    )
    full = statistics.median(float(d["seconds"]) for d in docs)  # type: ignore[arg-type]
    sites = sorted({f"{f['invariant']}@{f['site']}" for f in findings})
    invariants = sorted({str(f["invariant"]) for f in findings})
    extra: dict[str, object] = {
        "runs": doc.get("runs"),
        "complete": complete,
        "findings": len(findings),
        "sites": sites,
        "startup_seconds": round(startup, 3),
        "bound": doc.get("bound"),
    }
    rows = []
    if variant == "reference":
        firsts = [d.get("first_finding_seconds") for d in docs]
        if all(isinstance(f, (int, float)) for f in firsts):
            first = statistics.median(float(f) for f in firsts)  # type: ignore[arg-type]
            rows.append(
                Row(
                    "vmxfuzz",
                    variant,
                    "first violation",
                    0,
                    0,
                    round(first, 3),
                    round(startup + first, 3),
                    f"violation: {invariants[0]}" if invariants else "violation",
                    [float(f) for f in firsts],  # type: ignore[arg-type]
                    extra,
                )
            )
    if findings:
        verdict = f"{len(findings)} finding(s): {', '.join(invariants)}"
    elif complete:
        verdict = "no violation (complete)"
    else:
        verdict = "INCOMPLETE (budget)"
    rows.append(
        Row(
            "vmxfuzz",
            variant,
            "full",
            int(doc["states"]),  # type: ignore[call-overload]
            int(doc["transitions"]),  # type: ignore[call-overload]
            round(full, 3),
            round(startup + full, 3),
            verdict,
            [float(d["seconds"]) for d in docs],  # type: ignore[arg-type]
            extra,
        )
    )
    return rows


# ---- report ---------------------------------------------------------------------------------
def table(rows: list[Row]) -> str:
    head = "| tool | variant | search | states | transitions | search s | end-to-end s | verdict |"
    lines = [head, "|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        states = f"{r.states:,}" if r.states else "-"
        trans = f"{r.transitions:,}" if r.transitions else "-"
        lines.append(
            f"| {r.tool} | {r.variant} | {r.search} | {states} | {trans} | {r.seconds:g} | "
            f"{r.end_to_end:g} | {r.verdict} |"
        )
    return "\n".join(lines)


def _find(rows: list[Row], tool: str, variant: str, search: str) -> Row | None:
    for r in rows:
        if (r.tool, r.variant, r.search) == (tool, variant, search):
            return r
    return None


def ratios(rows: list[Row]) -> list[tuple[str, float | None, float | None]]:
    out: list[tuple[str, float | None, float | None]] = []
    for label, variant, search in (
        ("time to first violation (reference)", "reference", "first violation"),
        ("full exploration (patched)", "patched", "full"),
        ("full exploration (reference)", "reference", "full"),
    ):
        v, s = _find(rows, "vmxfuzz", variant, search), _find(rows, "spin", variant, search)
        if v is None or s is None:
            out.append((label, None, None))
            continue
        out.append(
            (
                label,
                v.seconds / s.seconds if s.seconds else None,
                v.end_to_end / s.end_to_end if s.end_to_end else None,
            )
        )
    return out


def verdicts_ok(rows: list[Row]) -> bool:
    ok = True
    for r in rows:
        bad = r.verdict.startswith("INCOMPLETE")
        if r.variant == "reference":
            bad = bad or r.verdict.startswith("no violation")
        else:
            bad = bad or not r.verdict.startswith("no violation")
        if bad:
            print(f"unexpected verdict: {r.tool} {r.variant} {r.search}: {r.verdict}")
            ok = False
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    ap.add_argument("--budget", type=float, default=120.0, help="vmxfuzz explore --time")
    ap.add_argument("--json", type=Path, help="also write the rows and ratios here")
    ap.add_argument("--spin-only", action="store_true", help="skip vmxfuzz explore")
    args = ap.parse_args(argv)

    missing = missing_tools()
    if missing:
        for tool in missing:
            print(f"{tool} not found: install it with\n    {INSTALL[tool]}", file=sys.stderr)
        return 2

    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="spin-vs-explore-") as t:
        tmp = Path(t)
        for variant in ("reference", "patched"):
            rows += spin_rows(variant, args.repeat, tmp)
        if not args.spin_only:
            help_text = explore_help()
            if help_text is None:
                notes.append("`vmxfuzz explore --json` is not available: vmxfuzz rows skipped")
            else:
                panic_only = "--nmi-kinds" in help_text
                if not panic_only:
                    notes.append("explore has no --nmi-kinds: its bound includes benign NMIs")
                for variant in ("reference", "patched"):
                    rows += explore_rows(variant, args.repeat, args.budget, tmp, panic_only)

    spin_v = subprocess.run(["spin", "-V"], capture_output=True, text=True, check=False)
    print(f"# {spin_v.stdout.strip()}; median of {args.repeat} run(s) each")
    print(f"# program: {PROGRAM.relative_to(ROOT)} --setup {SETUP_OPS}, 1 panic NMI, 0 faults")
    print()
    print(table(rows))
    print()
    rats = ratios(rows)
    for label, search_ratio, e2e_ratio in rats:
        if search_ratio is None:
            continue
        e2e = f"{e2e_ratio:,.1f}x" if e2e_ratio is not None else "-"
        print(f"vmxfuzz/spin, {label}: search {search_ratio:,.0f}x, end-to-end {e2e}")
    for n in notes:
        print(f"note: {n}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": [asdict(r) for r in rows],
                    "ratios": [{"what": a, "search": b, "end_to_end": c} for a, b, c in rats],
                    "notes": notes,
                    "repeat": args.repeat,
                },
                indent=2,
            )
            + "\n"
        )
    return 0 if verdicts_ok(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
