"""The ``vmxfuzz`` command line.

Exit codes everywhere: 0 nothing found, 1 a violation or divergence found, 2 bad
input or a bad output path (one message naming the file and field; no traceback,
nothing half-written), 3 explore incomplete (the bound was not exhausted), 4 an
internal error: a bug in vmxfuzz, reported with its traceback, never a finding.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from .atomic import OutputError
from .differential import Finding, run_both
from .executor import Result, run
from .report.terminal import finding_line, result_lines
from .scenario import Scenario, ScenarioError, load, loads, read_input
from .variants import short_name

EXIT_CLEAN, EXIT_FOUND, EXIT_BAD_INPUT, EXIT_INCOMPLETE, EXIT_INTERNAL = 0, 1, 2, 3, 4


class BadInput(Exception):
    pass


def _scenario_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.json") if not p.name.startswith("."))
            if not found:
                raise BadInput(f"{path}: (directory): no *.json scenario files")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise BadInput(f"{path}: (file): no such file or directory")
    return files


def _is_text(data: bytes) -> str | None:
    """The text, if ``data`` is non-empty UTF-8 made of printable characters and
    whitespace only: what an editor writes, never what libFuzzer's mutator does."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text or not all(c.isprintable() or c in "\t\n\r\f\v" for c in text):
        return None
    return text


def load_any(path: Path, as_bytes: bool = False) -> Scenario:
    """A scenario file (JSON) or a libFuzzer input (decoded).

    ``.json`` files are scenarios.  Other files are scenarios when they are JSON text,
    libFuzzer inputs when they are not text; a text file that is not JSON (a README)
    is refused instead of being decoded into some scenario, unless ``as_bytes``.
    """
    data = read_input(path)
    if not as_bytes:
        text = None if path.suffix == ".json" else _is_text(data)
        if path.suffix == ".json" or (text is not None and text.lstrip().startswith("{")):
            return loads(data, str(path))
        if text is not None:
            raise BadInput(
                f"{path}: (file): a text file, neither a scenario (JSON) nor a libFuzzer "
                "input; pass --bytes to decode it as libFuzzer bytes anyway"
            )
    from .fuzz.decoder import decode

    return decode(data)


def _seconds(value: float, opt: str) -> float:
    if not math.isfinite(value) or value <= 0:
        raise BadInput(f"{opt}: must be a finite positive number of seconds, not {value}")
    return value


def _count(value: int | None, opt: str) -> None:
    if value is not None and value < 1:
        raise BadInput(f"{opt}: must be a positive integer, not {value}")


def _budget(seconds: float | None, count: int | None, count_opt: str) -> float:
    """The time budget of a command that also takes a count budget: ``--time`` if
    given (checked), none (``inf``) when only the count is, else the default 60 s."""
    _count(count, count_opt)
    if seconds is None:
        return math.inf if count is not None else 60.0
    return _seconds(seconds, "--time")


def _variants(choice: str) -> list[str]:
    """Validate a ``--variant``: a name, a plug-in, ``both`` or ``A,B`` (loads them)."""
    from .variants import VariantError, build, split_pair

    names = list(split_pair(choice) or (choice,))
    for name in names:
        try:
            build(name)
        except VariantError as e:
            raise BadInput(str(e)) from None
    return names


def replay_one(sc: Scenario, names: list[str]) -> tuple[list[Result], list[Finding]]:
    """Run a scenario on one variant, or on a pair and classify (replay, report)."""
    if len(names) == 2:  # both variants run the scenario's anchored meaning
        d = run_both(sc, keep_trace=True, pair=(names[0], names[1]))
        return [d.reference, d.patched], d.findings
    return [run(sc, names[0])], []


def cmd_replay(args: argparse.Namespace) -> int:
    names = _variants(args.variant)
    files = _scenario_files(args.scenario)
    scenarios = [(f, load_any(f, args.bytes)) for f in files]  # all first
    if args.html and len(scenarios) != 1:
        raise BadInput("--html: takes exactly one scenario (use `vmxfuzz report DIR`)")
    if args.html and Path(args.html).exists() and not Path(args.html).is_file():
        raise BadInput(f"{args.html}: (--html): exists and is not a file")
    found = False
    docs: list[dict[str, Any]] = []
    show_trace = args.trace if args.trace is not None else len(scenarios) == 1
    for path, sc in scenarios:
        results, findings = replay_one(sc, names)
        found |= any(r.violations for r in results) or bool(findings)
        if args.html:
            from .report.html import scenario_page, write_page

            write_page(Path(args.html), scenario_page(sc, str(path), results, findings))
        if args.json:
            docs.append(
                {
                    "file": str(path),
                    "name": sc.name,
                    "variants": {r.variant: r.to_json(trace=args.trace is True) for r in results},
                    "findings": [f.to_json() for f in findings],
                }
            )
            continue
        print(f"== {path}" + (f": {sc.name}" if sc.name else ""))
        for r in results:
            for line in result_lines(sc, r, show_trace):
                print(line)
        if len(names) == 2:
            if findings:
                for fnd in findings:
                    print(finding_line(fnd))
            else:
                print(f"no divergence between {short_name(names[0])} and {short_name(names[1])}")
        print(f"   replay: vmxfuzz replay {path} --variant {args.variant}")
        if args.html:
            print(f"   timeline: {args.html}")
    if args.json:
        out: Any = docs[0] if len(docs) == 1 else {"scenarios": docs}
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return EXIT_FOUND if found else EXIT_CLEAN


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vmxfuzz",
        description="Differential fuzzing of executable models of the KVM VMX layer.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("replay", help="run scenario files (or directories of them)")
    r.add_argument("scenario", nargs="+", help="scenario file(s) or directories")
    r.add_argument(
        "--variant",
        default="both",
        help="reference, patched, a plug-in (.py file or module), both (= reference,patched)"
        " or A,B for a differential run of two variants (default: both)",
    )
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.add_argument(
        "--trace",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="print the per-CPU trace (default: on for a single scenario)",
    )
    r.add_argument("--html", metavar="OUT.html", help="write the timeline page (one scenario)")
    r.add_argument(
        "--bytes",
        action="store_true",
        help="decode every file as a libFuzzer input (default: only files that are not text)",
    )
    r.set_defaults(func=cmd_replay)

    rp = sub.add_parser("report", help="HTML timelines for a findings directory")
    rp.add_argument("dir", help="a findings directory (summary.json) or scenario folder")
    rp.add_argument("-o", "--output", help="output folder (default: DIR/report)")
    rp.add_argument("--variant", default="both", help="as for replay")
    rp.set_defaults(func=cmd_report)

    f = sub.add_parser("fuzz", help="run a fuzzing campaign")
    f.add_argument("--engine", choices=["hypothesis", "atheris"], default="hypothesis")
    f.add_argument("--variant", default="both", help="as for replay")
    f.add_argument(
        "--time",
        type=float,
        default=None,
        help="budget in seconds (default 60; none when only --max-examples is given)",
    )
    f.add_argument(
        "--max-examples",
        type=int,
        default=None,
        metavar="N",
        help="budget in examples (atheris: libFuzzer -runs=N): with --seed, the same "
        "campaign on any machine; with --time, whichever ends first",
    )
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", default="findings", help="findings directory (default findings/)")
    f.add_argument("--workers", type=int, default=1)
    f.add_argument("--json", action="store_true", help="print summary.json to stdout")
    f.add_argument(
        "--nested",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="force nested VMX operations on/off (default: both kinds of scenario)",
    )
    f.add_argument(
        "--db",
        default=None,
        help="Hypothesis example database shared by processes and machines: a directory "
        "or redis://host:port (default OUT/.hypothesis)",
    )
    f.set_defaults(func=cmd_fuzz)

    f.add_argument(
        "--fail-on",
        default="",
        help="atheris: comma-separated classes that stop the run (default: none)",
    )

    x = sub.add_parser(
        "explore",
        help="explore every schedule, NMI and fault within a bound (exhaustive)",
        description="Bounded exhaustive exploration with state hashing and sleep sets. "
        "Programs come from scenario files (their ops and config; schedule, NMIs and "
        "faults are what is explored) or are enumerated: --cpus/--vcpus set up the "
        "machine and every sequence of up to --ops workload ops is explored.",
    )
    x.add_argument("program", nargs="*", help="scenario files or directories (optional)")
    x.add_argument("--variant", default="both", help="as for replay")
    x.add_argument("--cpus", type=int, default=2, help="enumerated programs: CPUs")
    x.add_argument("--vcpus", type=int, default=2, help="enumerated programs: vCPUs")
    x.add_argument("--ops", type=int, default=1, help="enumerated programs: workload ops")
    x.add_argument("--nmis", type=int, default=1, help="NMIs to place (default 1)")
    x.add_argument("--nmi-kinds", default="panic,benign", help="panic,benign (default both)")
    x.add_argument("--faults", type=int, default=0, help="faults to inject (default 0)")
    x.add_argument(
        "--preempts",
        type=int,
        default=0,
        help="preemptions inside vCPU ioctls, each at any preemption point to any CPU (default 0)",
    )
    x.add_argument("--fault-sites", default="", help="comma-separated sites (default all)")
    x.add_argument(
        "--setup",
        type=int,
        default=None,
        help="first ops run with no choices (default: 0 for files; the module load, VM "
        "and vCPU creation for enumerated programs)",
    )
    x.add_argument(
        "--weak-memory",
        action="store_true",
        help="per-CPU store buffers: stores commit late and out of order (barriers order)",
    )
    x.add_argument(
        "--store-buffer",
        type=int,
        default=2,
        help="weak memory: stores a CPU buffers before it stalls (default 2)",
    )
    x.add_argument(
        "--time",
        type=float,
        default=None,
        help="budget in seconds (default 60; none when only --max-runs is given)",
    )
    x.add_argument(
        "--max-runs",
        type=int,
        default=None,
        metavar="N",
        help="budget in runs (schedules tried): the same on any machine",
    )
    x.add_argument("--out", default="explore-out", help="output directory")
    x.add_argument("--json", action="store_true", help="print explore.json to stdout")
    x.add_argument("--resume", action="store_true", help="continue an interrupted run")
    x.add_argument(
        "--known",
        metavar="DIR",
        default=None,
        help="a campaign output or a folder of reproducers: its findings' causes are "
        "known and the verdict is scoped to everything else",
    )
    x.add_argument(
        "--ignore",
        metavar="CAUSE",
        action="append",
        default=[],
        help="a cause id the verdict leaves out (repeatable)",
    )
    x.add_argument(
        "--sleep-sets",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="sleep-set reduction (default on; off: state hashing only)",
    )
    x.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes exploring programs at once (results identical to one; default 1)",
    )
    x.set_defaults(func=cmd_explore)

    d = sub.add_parser("decode", help="write the scenario a libFuzzer input stands for")
    d.add_argument("input", help="a corpus entry or crash artifact")
    d.add_argument("-o", "--output", help="scenario file to write (default: stdout)")
    d.set_defaults(func=cmd_decode)

    e = sub.add_parser("encode", help="turn scenario files into libFuzzer corpus entries")
    e.add_argument("scenario", nargs="+")
    e.add_argument("-o", "--output-dir", required=True)
    e.add_argument(
        "--variant",
        default="both",
        help="an anchored (v4) scenario is encoded as the step-indexed schedule it has on "
        "this variant, or on the first of a pair (default: both, i.e. reference)",
    )
    e.set_defaults(func=cmd_encode)

    pr = sub.add_parser("promote", help="keep a finding as a pytest regression test")
    pr.add_argument("finding", help="a reproducer written by `vmxfuzz fuzz`")
    pr.add_argument("--name", help="file name (default: the scenario's name)")
    pr.add_argument("--dest", default="tests/regressions")
    pr.set_defaults(func=cmd_promote)

    mu = sub.add_parser(
        "mutants",
        help="run the mutant catalogue against the engines: the kill matrix",
        description="For each mutant of patched (mutants/) and each engine, a differential "
        "campaign patched,<mutant> of at most --time-per seconds and/or --examples-per "
        "examples (whichever ends first) that stops at the first regression or behaviour "
        "finding; writes kill-matrix.md and kill-matrix.json.",
    )
    mu.add_argument("--time-per", metavar="S", help="seconds per cell")
    mu.add_argument(
        "--examples-per",
        type=int,
        metavar="N",
        help="examples per cell (atheris: libFuzzer runs; explore: runs): with --seed, the "
        "same matrix on any machine",
    )
    mu.add_argument(
        "--engines",
        default="hypothesis,atheris,explore",
        help="comma-separated engines (default: hypothesis,atheris,explore)",
    )
    mu.add_argument("--only", metavar="IDS", help="comma-separated mutant ids (default: all)")
    mu.add_argument("--out", default="mutants-out", help="output directory (default mutants-out/)")
    mu.add_argument("--seed", default="0", help="engine seed (default 0)")
    mu.add_argument("--json", action="store_true", help="print kill-matrix.json to stdout")
    mu.set_defaults(func=cmd_mutants)
    return p


def cmd_fuzz(args: argparse.Namespace) -> int:
    from .fuzzcmd import fuzz, process_started

    _variants(args.variant)
    budget = _budget(args.time, args.max_examples, "--max-examples")
    if args.workers < 1:
        raise BadInput(f"--workers: must be at least 1, not {args.workers}")
    if args.db is not None:
        from .exampledb import DatabaseError, check

        try:
            check(args.db)
        except DatabaseError as e:
            raise BadInput(str(e)) from None
    out = _claim(args.out, "fuzz")  # the last check: bad input leaves no folder behind
    return fuzz(
        engine=args.engine,
        variant=args.variant,
        budget=budget,
        seed_value=args.seed,
        out=out,
        workers=args.workers,
        as_json=args.json,
        nested=args.nested,
        fail_on=args.fail_on,
        db_url=args.db,
        started=process_started(),
        max_examples=args.max_examples,
    )


def cmd_mutants(args: argparse.Namespace) -> int:
    from .mutation import ENGINES, catalogue, mutants_cmd, parse_time, select

    if args.time_per is None and args.examples_per is None:
        raise BadInput("--time-per, --examples-per: give a budget per cell (either or both)")
    _count(args.examples_per, "--examples-per")
    try:
        time_per = math.inf if args.time_per is None else parse_time(args.time_per)
    except ValueError:
        raise BadInput(
            f"--time-per: {args.time_per!r} is not a positive number of seconds"
        ) from None
    try:
        seed = int(args.seed)
    except ValueError:
        raise BadInput(f"--seed: {args.seed!r} is not an integer") from None
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise BadInput(
            f"--engines: {unknown[0] if unknown else 'empty'!r}: choose from {', '.join(ENGINES)}"
        )
    engines = list(dict.fromkeys(engines))
    try:
        chosen = select(catalogue(), args.only)
    except KeyError as e:
        raise BadInput(f"--only: unknown mutant id {e.args[0]!r} (see docs/mutants.md)") from None
    if not chosen:
        raise BadInput("--only: no mutant ids given")
    out = _claim(args.out, "mutants")
    budget = [f"--time-per {time_per:g}"] if args.time_per is not None else []
    if args.examples_per is not None:
        budget.append(f"--examples-per {args.examples_per}")
    command = "vmxfuzz mutants " + " ".join(
        [*budget, f"--engines {','.join(engines)}"]
        + ([f"--only {','.join(m.id for m in chosen)}"] if args.only else [])
        + [f"--seed {seed}"]
    )
    return mutants_cmd(
        time_per=time_per,
        engines=engines,
        only=",".join(m.id for m in chosen),
        out=out,
        seed=seed,
        as_json=args.json,
        command=command,
        examples_per=args.examples_per,
    )


def _claim(path: str, kind: str) -> Path:
    """A campaign's output folder: new, empty or its own (``vmxfuzz/outdir.py``)."""
    from .outdir import FolderRefused, claim

    out = Path(path)
    try:
        claim(out, kind)
    except FolderRefused as e:
        raise BadInput(str(e)) from None
    return out


def cmd_explore(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .explore import NMI_KINDS, Bound, setup_ops
    from .explorecmd import Source, explore_cmd
    from .machine.faults import SITES

    _variants(args.variant)
    if args.store_buffer < 1:
        raise BadInput(f"--store-buffer: at least 1, not {args.store_buffer}")
    for opt in ("cpus", "vcpus", "ops", "nmis", "faults"):
        if getattr(args, opt) < 0:
            raise BadInput(f"--{opt}: must not be negative, not {getattr(args, opt)}")
    if not 1 <= args.cpus <= 4:
        raise BadInput(f"--cpus: 1 to 4, not {args.cpus}")
    if args.time is None:  # no --time: unbounded with --max-runs, else 60 s
        args.time = float("inf") if args.max_runs is not None else 60.0
    else:
        _seconds(args.time, "--time")
    if args.max_runs is not None and args.max_runs < 1:
        raise BadInput(f"--max-runs: must be at least 1, not {args.max_runs}")
    if args.workers < 1:
        raise BadInput(f"--workers: must be at least 1, not {args.workers}")
    if args.workers > 1 and args.max_runs is not None:
        raise BadInput("--workers: a --max-runs budget is counted in program order (one worker)")
    kinds = tuple(k for k in args.nmi_kinds.split(",") if k)
    bad = [k for k in kinds if k not in NMI_KINDS]
    if bad or not kinds:
        raise BadInput(f"--nmi-kinds: {','.join(bad) or 'empty'}: choose from panic,benign")
    sites = tuple(x for x in args.fault_sites.split(",") if x)
    unknown = [x for x in sites if x not in SITES]
    if unknown:
        raise BadInput(f"--fault-sites: unknown site {unknown[0]!r}")
    if args.program:
        files = [(str(f), load_any(f)) for f in _scenario_files(args.program)]
        programs = [
            (
                name,
                replace(
                    sc,
                    schedule=(),
                    nmis=(),
                    faults=(),
                    preempts=(),
                    config=replace(
                        sc.config, weak_memory=sc.config.weak_memory or args.weak_memory
                    ),
                ),
            )
            for name, sc in files
        ]
        source = Source(files=programs, weak=args.weak_memory)
        setup = args.setup if args.setup is not None else 0
        shortest = min(len(sc.ops) for _, sc in programs)
        if setup > shortest:
            raise BadInput(f"--setup: {setup} is more than the {shortest} ops of a program")
    else:
        source = Source(cpus=args.cpus, vcpus=args.vcpus, ops=args.ops, weak=args.weak_memory)
        setup = args.setup if args.setup is not None else len(setup_ops(args.cpus, args.vcpus))
    if setup < 0:
        raise BadInput(f"--setup: must not be negative, not {setup}")
    from .scope import ScopeError, load_scope

    try:
        scope = load_scope(args.known, args.ignore)
    except ScopeError as e:
        raise BadInput(str(e)) from None
    if args.preempts < 0:
        raise BadInput(f"--preempts: must not be negative, not {args.preempts}")
    bound = Bound(
        args.nmis, kinds, args.faults, sites, setup, args.store_buffer, preempts=args.preempts
    )
    out = _claim(args.out, "explore")
    return explore_cmd(
        source=source,
        variant=args.variant,
        bound=bound,
        budget=args.time,
        out=out,
        as_json=args.json,
        resume=args.resume,
        sleep_sets=args.sleep_sets,
        max_runs=args.max_runs,
        scope=scope,
        workers=args.workers,
    )


def cmd_report(args: argparse.Namespace) -> int:
    """One page per reproducer and an index, for `vmxfuzz fuzz` output or any folder."""
    from .report.build import build_report

    src = Path(args.dir)
    if not src.is_dir():
        raise BadInput(f"{src}: (directory): not a directory")
    names = _variants(args.variant)
    summary_path = src / "summary.json"
    summary: dict[str, Any] | None = None
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text())
            listed = summary["findings"]
            files = [Path(f["reproducer"]) for f in listed]
            # a finding's other windows get pages too, where their files exist
            files += [
                Path(w["reproducer"])
                for f in listed
                for w in f.get("windows") or []
                if isinstance(w, dict) and w.get("reproducer") and Path(w["reproducer"]).is_file()
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise BadInput(f"{summary_path}: findings: not a vmxfuzz summary ({e})") from None
        files = list(dict.fromkeys(files))
    else:
        files = _scenario_files([str(src)])
    scs = [(f, load_any(f)) for f in files]
    out = Path(args.output) if args.output else src / "report"
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: (--output): exists and is not a directory")
    n = build_report(src, out, names, scs, summary, lambda sc: replay_one(sc, names))
    print(f"wrote {out / 'index.html'} and {n} page(s)")
    return EXIT_CLEAN


def cmd_decode(args: argparse.Namespace) -> int:
    path = Path(args.input)
    if path.suffix == ".json":
        raise BadInput(f"{path}: (file): already a scenario file")
    if args.output and Path(args.output).exists():
        raise BadInput(f"{args.output}: (--output): exists; choose a new file name")
    from .fuzz.decoder import decode

    sc = decode(read_input(path))
    if args.output:
        from .scenario import save

        save(sc, args.output)
    else:
        sys.stdout.write(sc.dumps())
    return EXIT_CLEAN


def cmd_encode(args: argparse.Namespace) -> int:
    import hashlib

    from .atomic import write_bytes_atomic
    from .fuzz.decoder import Unencodable, encode

    first = _variants(args.variant)[0]
    scs = [(f, load(f)) for f in _scenario_files(args.scenario)]
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: (--output-dir): exists and is not a directory")
    for f, sc in scs:
        try:
            data = encode(sc, first)
        except Unencodable as e:
            print(f"skipped {f}: {e}", file=sys.stderr)
            continue
        name = f"{f.stem}-{hashlib.sha1(data).hexdigest()[:8]}"
        write_bytes_atomic(out / name, data)
        if sc.anchored:
            print(f"{f}: anchored schedule encoded as the one it has on {first}", file=sys.stderr)
        print(out / name)
    return EXIT_CLEAN


def cmd_promote(args: argparse.Namespace) -> int:
    from .fuzzcmd import plain_name, promote

    if args.name is not None and not plain_name(args.name):
        raise BadInput(f"--name: {args.name!r} is not a plain file name (letters, digits, . _ -)")
    dest = Path(args.dest)
    if dest.exists() and not dest.is_dir():
        raise BadInput(f"{dest}: (--dest): exists and is not a directory")
    target = promote(Path(args.finding), args.name, dest)
    print(f"promoted to {target}")
    return EXIT_CLEAN


def _safe(text: str) -> str:
    """One printable line: control characters, newlines and lone surrogates escaped."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode()
        for c in text
    )


REPORT = (
    "vmxfuzz: this is a bug in vmxfuzz, not a finding in the models: please report it "
    "to the vmxfuzz maintainers (the issue tracker of the repository you got it from) "
    "with the command line, the input files and the traceback above"
)


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # any string prints, escaped if need be
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except (ScenarioError, BadInput) as e:
        print(f"vmxfuzz: error: {_safe(str(e))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OutputError as e:
        msg = f"{e.filename}: (output): cannot write: {e.strerror}"
        print(f"vmxfuzz: error: {_safe(msg)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return EXIT_CLEAN
    except OSError as e:
        if e.filename is None:
            return _internal_error()
        # the file system refused a named path (read-only, not a directory, full)
        print(f"vmxfuzz: error: {_safe(f'{e.filename}: (file): {e.strerror}')}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception:
        return _internal_error()


def _internal_error() -> int:
    import platform
    import traceback

    from . import __version__

    print("vmxfuzz: internal error", file=sys.stderr)
    traceback.print_exc()
    print(f"{REPORT} (vmxfuzz {__version__}, Python {platform.python_version()})", file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
