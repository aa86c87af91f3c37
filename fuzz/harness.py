"""The libFuzzer harness: ``TestOneInput(data)`` decodes and judges one scenario.

Options come from the environment (inherited by libFuzzer's ``-fork``/``-jobs``
children, which re-run the same command line):

* ``VMXFUZZ_VARIANT``: ``both`` (default), ``reference`` or ``patched``;
* ``VMXFUZZ_OUT``: findings directory (default ``findings``); each process drops the
  first scenario of every new finding into ``OUT/.pending/`` (atomically), where
  ``vmxfuzz fuzz --engine atheris`` minimises and merges them into ``summary.json``;
* ``VMXFUZZ_FAIL_ON``: comma-separated classes that stop the run as a crash (libFuzzer
  then saves the input as ``crash-<sha1>``), e.g. ``regression,shared``.  Default:
  ``regression`` under ``python -m vmxfuzz.fuzz`` (a reviewer wants new regressions to
  stop the run) and empty under ``vmxfuzz fuzz`` (count and save everything, run for
  the whole budget).  Only findings not already in ``OUT/summary.json`` nor among the
  project's known findings (:mod:`vmxfuzz.fuzz.known`, ``VMXFUZZ_KNOWN``) stop a run,
  so a run is never halted by a known finding.

The harness raises only to report a finding; a decoding problem cannot happen (the
decoder is total) and a model crash is a tool error, raised as such.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shlex
import sys
import time
from pathlib import Path
from types import FunctionType
from typing import Any

import atheris

import vmxfuzz

# What libFuzzer sees as coverage: the code under test -- the models (shared kernel
# code, both versions, mutants), the simulated machine, the stepping core and the
# oracle's judgement -- and not the engine around it.  The engine's own branches (the
# decoder, NMI-window analysis, the campaign's statistics and coverage map, replay
# choosers, confirmation searches) say how an input was *read* or *counted*, not what
# the kernel did: instrumented, every new decoder path or statistics shape looked like
# new coverage to libFuzzer and the instrumentation cost about a third of each run.
UNDER_TEST = (
    "vmxfuzz.kernel",
    "vmxfuzz.machine",
    "vmxfuzz.reference",
    "vmxfuzz.patched",
    "vmxfuzz.mutants",
    "vmxfuzz.sched",
    "vmxfuzz.oracle",
    "vmxfuzz.causes",
    "vmxfuzz.differential",
)


def engine_modules() -> list[str]:
    """Every module of the vmxfuzz package (found on disk, nothing imported) that is
    not code under test: excluded from instrumentation."""
    out = []
    for root, package in (
        (Path(vmxfuzz.__file__).parent, "vmxfuzz"),
        (Path(__file__).parent, "vmxfuzz.fuzz"),
    ):
        for f in root.rglob("*.py"):
            parts = f.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            if not any(name == m or name.startswith(m + ".") for m in UNDER_TEST):
                out.append(name)
    return out


with atheris.instrument_imports(include=["vmxfuzz"], exclude=engine_modules()):
    from vmxfuzz.atomic import write_text_atomic
    from vmxfuzz.campaign import Key, judge, slug
    from vmxfuzz.coverage import Stats, observing
    from vmxfuzz.fuzz.decoder import LAYOUT, decode
    from vmxfuzz.fuzz.known import load_known
    from vmxfuzz.variants import BUILTIN, SHARED_MODULES, VERSION_MODULES, build, split_pair

    # ``variants.build`` imports the models later through importlib: import them
    # here, inside the block, so libFuzzer sees their edges.
    _versions = [f"{p}.{m}" for p in BUILTIN.values() for m in VERSION_MODULES]
    for _name in (*SHARED_MODULES, *_versions):
        importlib.import_module(_name)

VARIANT = os.environ.get("VMXFUZZ_VARIANT", "both")

if os.environ.get("VMXFUZZ_CAMPAIGN_PID", "").isdigit():
    # under `vmxfuzz fuzz`: end with the campaign, even as a -fork grandchild
    from vmxfuzz.lifeline import die_with_parent, watch

    die_with_parent()
    watch(int(os.environ["VMXFUZZ_CAMPAIGN_PID"]))


def instrument_variants(variant: str) -> int:
    """Instrument the functions of plug-ins and mutants (loaded by file, outside any
    import hook); returns how many functions were instrumented."""
    done = 0
    for name in split_pair(variant) or (variant,):
        for fn in vars(build(name)).values():
            mod = getattr(fn, "__module__", "") or ""
            if isinstance(fn, FunctionType) and not mod.startswith("vmxfuzz."):
                atheris.instrument_func(fn)
                done += 1
    return done


PLUGIN_FUNCTIONS = instrument_variants(VARIANT)
# atheris hands out one counter per instrumented edge: the next id is the count.
EDGES = atheris._reserve_counter()
OUT = Path(os.environ.get("VMXFUZZ_OUT", "findings"))
FAIL_ON = {c for c in os.environ.get("VMXFUZZ_FAIL_ON", "regression").split(",") if c}


class Finding(Exception):
    """A new finding in a class listed in ``VMXFUZZ_FAIL_ON``: stops libFuzzer."""


def _known() -> set[Any]:
    """The (key, window) pairs the campaign's summary already holds."""
    try:
        doc = json.loads((OUT / "summary.json").read_text())
        return {
            ((f["class"], f["invariant"], f["cause"]), tuple(dict(w["sites"]).items()))
            for f in doc.get("findings", [])
            for w in f.get("windows", [])
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


SEEN: set[Any] = _known()
# The project's recorded findings (fuzz/known-findings.json, or VMXFUZZ_KNOWN): saved
# like any other, but a finding with one of their keys never stops a run.
KNOWN: set[Key] = load_known(VARIANT)
STATS = {"execs": 0, "last": 0.0}
SHAPES = Stats()


def _stats(force: bool = False) -> None:
    now = time.monotonic()
    if now - STATS["last"] < 1.0 and not force:
        return
    STATS["last"] = now
    doc = {
        "execs": STATS["execs"],
        "edges": EDGES,
        "shapes": SHAPES.shapes_json(),
        "coverage": SHAPES.coverage.to_json(),
    }
    write_text_atomic(OUT / ".stats" / f"{os.getpid()}.json", json.dumps(doc))
    _save_coverage()


def _save_coverage() -> None:
    """Under ``coverage run`` (``tox -e fuzz-coverage``): save the data now.  libFuzzer
    ends the process with C ``exit()``, which skips Python's atexit handlers, so
    coverage.py would otherwise never write what it measured."""
    cov_mod = sys.modules.get("coverage")
    cov = cov_mod.Coverage.current() if cov_mod is not None else None
    if cov is not None:
        cov.save()


def TestOneInput(data: bytes) -> None:
    STATS["execs"] += 1
    sc = decode(data)
    with observing() as seen:
        hits = judge(sc, VARIANT)
    SHAPES.add(seen.runs)
    stop = []
    for h in hits:
        if h.ident in SEEN:
            continue
        SEEN.add(h.ident)
        digest = hashlib.sha1(data).hexdigest()[:12]
        write_text_atomic(OUT / ".pending" / f"{slug(h.key)}-{digest}.json", sc.dumps())
        if h.cls in FAIL_ON and h.key not in KNOWN:
            stop.append(h)
    _stats()
    if stop:
        h = stop[0]
        raise Finding(f"{h.cls} {h.invariant} at {h.site} ({h.variant}): {h.explanation}")


# The layout's plausible programs are 10-60 bytes (fuzz/decoder.py); the schedule tail
# may add more.  Room enough for every such input, and for the largest corpus entry.
MAX_LEN = 128


def with_defaults(args: list[str]) -> list[str]:
    """``args`` (libFuzzer's command line) with the harness' defaults for flags it does
    not give: ``-len_control=0`` and ``-max_len``.

    Why: by default libFuzzer starts at inputs of 4 bytes and lets the limit grow only
    after many executions without new coverage.  A run of this harness executes tens
    to hundreds of scenarios a second, not the hundred thousand libFuzzer's default is
    tuned for: in 120 s the limit grew to 8-29 bytes, short of one program with an NMI
    (measured, docs/performance.md).  With the limit at ``-max_len`` from the start,
    mutations reach the op, NMI and schedule bytes at once.  ``-max_len`` is at least
    the largest input in the corpus directories given (libFuzzer truncates longer ones).
    """
    given = {a.split("=", 1)[0] for a in args[1:] if a.startswith("-")}
    largest = 0
    for a in args[1:]:
        if not a.startswith("-") and Path(a).is_dir():
            sizes = (f.stat().st_size for f in Path(a).iterdir() if f.is_file())
            largest = max(largest, *sizes, 0)
    extra = []
    if "-len_control" not in given:
        extra.append("-len_control=0")
    if "-max_len" not in given:
        extra.append(f"-max_len={max(MAX_LEN, largest)}")
    return args[:1] + extra + args[1:]


def main(argv: list[str] | None = None) -> None:
    print(
        f"INFO: vmxfuzz: {EDGES} edges instrumented "
        f"({PLUGIN_FUNCTIONS} plug-in/mutant functions included); byte layout {LAYOUT}",
        file=sys.stderr,
    )
    args = list(sys.argv if argv is None else argv)
    if args and args[0].endswith("__main__.py") and not os.access(args[0], os.X_OK):
        # `python -m vmxfuzz.fuzz`: libFuzzer's -fork/-jobs children re-run argv[0]
        # through the shell, and a module's __main__.py is not executable
        args[0] = f"{shlex.quote(sys.executable)} -m vmxfuzz.fuzz"
    atheris.Setup(with_defaults(args), TestOneInput)
    atheris.Fuzz()
