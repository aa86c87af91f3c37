"""``vmxfuzz mutants``: run the mutant catalogue against the engines, write the kill matrix.

For each mutant of :mod:`vmxfuzz.mutants` and each engine, a differential search of the
pair ``patched,<mutant>`` runs for at most ``--time-per`` seconds and/or
``--examples-per`` examples (whichever ends first; the explore engine counts runs) and
stops at the first
*kill*: a finding of class ``regression`` (an invariant the mutant violates and
``patched`` does not) or ``behaviour`` (no invariant differs, an observable result
does), the mutant being the second variant of the pair.  The kill is then minimised by
the campaign's delta debugging (:mod:`vmxfuzz.minimize`) and saved as a scenario.

Engines are entries of :data:`ENGINES`, all with one signature (:data:`Engine`): they
search, nothing else -- the model, the oracle and the classification are the suite's
own (:func:`vmxfuzz.campaign.judge`), and minimising and writing are done here, once,
for every engine.  An engine that cannot run here (``atheris`` not installed,
``vmxfuzz.explore`` without ``kill_search``) raises :class:`EngineUnavailable` and its
cells say ``unavailable``.  A model crash on one scenario (a tool error) is never a
kill: it is counted in the cell, and the search goes on where the engine allows it.

Output, in ``--out`` (default ``mutants-out/``), rewritten atomically after every cell so
that a run killed at any moment leaves a valid partial matrix:

* ``kill-matrix.json``: every cell (``pending`` until it ran);
* ``kill-matrix.md``: rows mutants, columns engines, ``✓ 1.2 s invariant`` or ``—``;
* ``reproducers/<id>-<engine>.json``: the minimised reproducer of each kill.
"""

from __future__ import annotations

import importlib
import json
import math
import pkgutil
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic
from .campaign import Campaign, Hit, Key, judge, slug
from .minimize import minimize
from .scenario import Scenario

KILL_CLASSES = ("regression", "behaviour")
BASE = "patched"
FORMAT = "vmxfuzz-kill-matrix"
MINIMIZE_BUDGET_S = 60.0  # per kill; after it, the reproducer is kept as reduced so far


# ---- the catalogue ------------------------------------------------------------------------
@dataclass(frozen=True)
class Mutant:
    id: str
    module: str  # importable name, usable as a variant
    summary: str
    function: str
    expect: str | None
    equivalent: str | bool
    doc: str

    @property
    def pair(self) -> str:
        return f"{BASE},{self.module}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "module": self.module,
            "summary": self.summary,
            "function": self.function,
            "expect": self.expect,
            "equivalent": self.equivalent,
        }


def catalogue() -> list[Mutant]:
    """Every mutant module of :mod:`vmxfuzz.mutants`, by id."""
    import vmxfuzz.mutants as pkg

    out: list[Mutant] = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.ispkg or info.name.startswith("_"):
            continue
        name = f"{pkg.__name__}.{info.name}"
        mod = importlib.import_module(name)
        meta = getattr(mod, "MUTANT", None)
        if not isinstance(meta, dict):
            continue
        out.append(
            Mutant(
                id=str(meta["id"]),
                module=name,
                summary=str(meta.get("summary", "")),
                function=str(meta.get("function", "")),
                expect=meta.get("expect"),
                equivalent=meta.get("equivalent", False),
                doc=(mod.__doc__ or "").strip(),
            )
        )
    return sorted(out, key=lambda m: m.id)


def select(mutants: list[Mutant], only: str | None) -> list[Mutant]:
    """``--only M01,M03`` (ids, any case); raises ``KeyError`` naming an unknown id."""
    if not only:
        return mutants
    by_id = {m.id.upper(): m for m in mutants}
    chosen: list[Mutant] = []
    for part in only.split(","):
        key = part.strip().upper()
        if not key:
            continue
        if key not in by_id:
            raise KeyError(part.strip())
        if by_id[key] not in chosen:
            chosen.append(by_id[key])
    return chosen


# ---- engines ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kill:
    hit: Hit
    scenario: Scenario
    seconds: float  # from the engine's start to the search seeing the kill


@dataclass
class EngineResult:
    kill: Kill | None
    examples: int = 0  # scenarios judged (as far as the engine tells)
    tool_errors: list[str] = field(default_factory=list)  # model crashes, not kills
    note: str = ""


class EngineUnavailable(Exception):
    """The engine cannot run here (its cells read ``unavailable``, not ``error``)."""


# (pair "patched,<mutant>", budget in seconds (inf: none), seed, a fresh work directory,
# budget in examples (None: none)) -> result.  Whichever budget ends first ends the
# search; the count is the same on any machine (Hypothesis and libFuzzer are seeded).
Engine = Callable[[str, float, int, Path, int | None], EngineResult]


def kill_hits(sc: Scenario, pair: str) -> list[Hit]:
    """The findings of one scenario that kill the pair's second variant."""
    return [h for h in judge(sc, pair) if h.cls in KILL_CLASSES]


def _tool_error(errors: list[str], exc: BaseException) -> None:
    if len(errors) < 20:
        errors.append(f"{type(exc).__name__}: {exc}")
    else:
        errors[-1] = f"... and more ({type(exc).__name__}: {exc})"


class _Stop(Exception):
    """Ends a Hypothesis hunt at its first kill."""


def hypothesis_engine(
    pair: str, budget: float, seed: int, work: Path, count: int | None = None
) -> EngineResult:
    """The Hypothesis engine (:func:`vmxfuzz.engines.hypothesis_engine.hunt`), no example
    database (every cell starts from nothing); stops at the first kill, or after
    ``count`` examples over all its hunts (a model crash ends a hunt; the next one
    starts with the next seed)."""
    from .engines.hypothesis_engine import ToolError, hunt

    started = time.monotonic()
    deadline = started + budget
    res = EngineResult(None)
    counted: list[int] = []  # examples per hunt (one hunt per seed)

    def new_hits(sc: Scenario) -> list[Hit]:
        try:
            hits = kill_hits(sc, pair)
        except Exception as e:  # a model crash on this scenario: not a kill
            _tool_error(res.tool_errors, e)
            return []
        if hits and res.kill is None:
            res.kill = Kill(hits[0], sc, time.monotonic() - started)
        return hits[:1]

    def on_found(hit: Hit, sc: Scenario) -> None:
        raise _Stop

    def tick(n: int) -> None:
        counted[-1] = n

    def left() -> int | None:
        return None if count is None else count - sum(counted)

    rnd = 0
    while res.kill is None and deadline - time.monotonic() > 0.05 and left() != 0:
        remaining = left()
        counted.append(0)
        try:
            hunt(
                new_hits,
                on_found,
                variant=pair,
                budget_s=deadline - time.monotonic(),
                seed_value=seed * 1_000 + rnd,
                database=None,
                tick=tick,
                max_examples=remaining,
            )
        except _Stop:
            pass
        except ToolError as e:  # a crash while generating (the strategies pre-run)
            _tool_error(res.tool_errors, e.__cause__ or e)
        rnd += 1
    res.examples = sum(counted)
    return res


@dataclass
class _AtherisCell(Campaign):
    """The campaign ``fuzz_atheris`` merges into: keeps the first kill, drops the rest."""

    kill: Kill | None = None
    tool_errors: list[str] = field(default_factory=list)

    def new_hits(self, sc: Scenario) -> list[Hit]:
        if self.kill is not None:
            return []
        try:
            return kill_hits(sc, self.variant)[:1]
        except Exception as e:
            _tool_error(self.tool_errors, e)
            return []

    def record(self, hit: Hit, sc: Scenario) -> dict[str, Any]:
        if self.kill is None:
            self.kill = Kill(hit, sc, time.monotonic() - self.started)
        return {}


def atheris_engine(
    pair: str, budget: float, seed: int, work: Path, count: int | None = None
) -> EngineResult:
    """The libFuzzer path of ``vmxfuzz fuzz --engine atheris`` (a subprocess running
    ``python -m vmxfuzz.fuzz`` on the seed corpus) with ``VMXFUZZ_FAIL_ON`` set to the
    kill classes, so libFuzzer stops at the first kill.  The time to kill is when this
    process saw it (polled every 0.5 s) and includes the harness start-up."""
    import importlib.util

    from .fuzzcmd import fuzz_atheris
    from .report.progress import Progress

    if importlib.util.find_spec("atheris") is None:
        raise EngineUnavailable("atheris is not installed (pip install 'vmxfuzz[fuzz]')")
    c = _AtherisCell(out=work, variant=pair, engine="atheris", seed=seed, minimize_findings=False)
    fuzz_atheris(
        c,
        budget=budget,
        seed_value=seed,
        workers=1,
        fail_on=",".join(KILL_CLASSES),
        prog=Progress(budget, quiet=True),
        max_examples=count,
    )
    res = EngineResult(c.kill, examples=c.examples, tool_errors=c.tool_errors)
    if c.kill is None:
        crash = _atheris_crash(work / "atheris.log")
        if crash:
            res.tool_errors.append(crash)
            res.note = "the harness crashed (a model crash on an input) before any kill"
    return res


def _atheris_crash(log: Path) -> str:
    """The uncaught exception that ended the harness, if one did."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for i, line in enumerate(lines):
        if "Uncaught Python exception" in line:
            tail = [x for x in lines[i + 1 : i + 40] if x.strip()]
            for x in tail:
                if not x.startswith((" ", "Traceback")):
                    return x.strip()
            return line.strip()
    return ""


# ---- explore: this entry belongs to vmxfuzz/explore.py --------------------------------------
# EXPLORE ENTRY (placeholder): the bounded exhaustive engine is written in
# vmxfuzz/explore.py; its author owns this adapter and may replace it.  Until
# ``vmxfuzz.explore.kill_search`` exists the engine is "unavailable".  Assumed contract:
# kill_search(pair, seconds, max_runs=N) -> (Hit, Scenario, seconds) | None.
def explore_engine(
    pair: str, budget: float, seed: int, work: Path, count: int | None = None
) -> EngineResult:
    """``count`` is in runs (schedules tried), the explorer's unit of work."""
    try:
        explore = importlib.import_module("vmxfuzz.explore")
    except Exception as e:  # in progress elsewhere: unavailable, not a crash
        raise EngineUnavailable(f"vmxfuzz.explore does not import ({e})") from None
    kill_search = getattr(explore, "kill_search", None)
    if kill_search is None:
        raise EngineUnavailable("vmxfuzz.explore has no kill_search yet")
    found = kill_search(pair, budget, max_runs=count)
    if found is None:
        return EngineResult(None)
    hit, sc, seconds = found
    return EngineResult(Kill(hit, sc, float(seconds)))


# END OF EXPLORE ENTRY

# The engine registry: one entry per engine, all with the :data:`Engine` signature.
ENGINES: dict[str, Engine] = {
    "hypothesis": hypothesis_engine,
    "atheris": atheris_engine,
    "explore": explore_engine,
}


# ---- one cell -------------------------------------------------------------------------------
def minimise_kill(
    kill: Kill, pair: str, budget: float = MINIMIZE_BUDGET_S
) -> tuple[Scenario, bool]:
    """Reduce the kill's scenario while the same (class, invariant, site) persists; after
    ``budget`` seconds every further candidate is refused, so the result is always a
    reproducer, 1-minimal when the second value is True."""
    key: Key = kill.hit.key
    deadline = time.monotonic() + budget
    timed_out = [False]

    def keeps(c: Scenario) -> bool:
        if time.monotonic() > deadline:
            timed_out[0] = True
            return False
        try:
            return any(h.key == key for h in judge(c, pair))
        except Exception:  # a candidate the model crashes on does not reproduce
            return False

    return minimize(kill.scenario, keeps), not timed_out[0]


def run_cell(
    m: Mutant,
    engine: str,
    time_per: float,
    seed: int,
    out: Path,
    examples_per: int | None = None,
) -> dict[str, Any]:
    cell: dict[str, Any] = {"mutant": m.id, "engine": engine, "status": "pending"}
    work = out / "work" / f"{m.id}-{engine}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    try:
        res = ENGINES[engine](m.pair, time_per, seed, work, examples_per)
    except EngineUnavailable as e:
        shutil.rmtree(work, ignore_errors=True)
        return {**cell, "status": "unavailable", "note": str(e)}
    except Exception as e:  # the engine itself failed: report the cell, go on
        return {
            **cell,
            "status": "error",
            "note": f"{type(e).__name__}: {e}",
            "work": str(work),
            "wall_s": round(time.monotonic() - began, 3),
        }
    cell.update(examples=res.examples, tool_errors=len(res.tool_errors))
    if res.tool_errors:
        cell["first_tool_error"] = res.tool_errors[0]
    if res.note:
        cell["note"] = res.note
    if res.kill is None:
        cell["status"] = "error" if res.note else "survived"
    else:
        k = res.kill
        sc, minimal = minimise_kill(k, m.pair)
        final = next((h for h in judge(sc, m.pair) if h.key == k.hit.key), k.hit)
        path = out / "reproducers" / f"{m.id}-{engine}.json"
        replay = f"vmxfuzz replay {path} --variant {m.pair}"
        sc = replace(
            sc,
            name=f"{m.id}-{engine}-{slug(final.key)}"[:100],
            description=f"{m.id} ({m.summary}) killed by {engine}: {final.cls} "
            f"{final.invariant} at {final.site}: {final.explanation}. Replay: {replay}",
            expect=None,
        )
        write_text_atomic(path, sc.dumps())
        cell.update(
            status="killed",
            seconds=round(k.seconds, 3),
            **{"class": final.cls},
            invariant=final.invariant if final.cls != "behaviour" else "behaviour",
            site=final.site,
            explanation=final.explanation,
            reproducer=str(path),
            reproducer_minimal=minimal,
        )
    if cell["status"] != "error":
        shutil.rmtree(work, ignore_errors=True)
    else:
        cell["work"] = str(work)
    cell["wall_s"] = round(time.monotonic() - began, 3)
    return cell


# ---- the matrix -------------------------------------------------------------------------------
def _mark(cell: dict[str, Any]) -> str:
    status = cell.get("status")
    if status == "killed":
        return f"✓ {cell['seconds']:.1f} s {cell['invariant']}"
    if status == "survived":
        return "—"
    if status == "unavailable":
        return "n/a"
    if status == "error":
        return "error"
    return "…"


def summary(doc: dict[str, Any]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for cell in doc["cells"]:
        per = out.setdefault(cell["engine"], {})
        per[cell["status"]] = per.get(cell["status"], 0) + 1
    return out


def survivors(doc: dict[str, Any]) -> list[str]:
    """Mutants that no engine killed, once every cell of theirs has run."""
    out = []
    for m in doc["mutants"]:
        cells = [c for c in doc["cells"] if c["mutant"] == m["id"]]
        done = all(c["status"] != "pending" for c in cells)
        if done and not any(c["status"] == "killed" for c in cells):
            out.append(m["id"])
    return out


def _code_function(summary: str) -> str:
    """Put the function name of a ``"function: what"`` summary in backticks, so that a
    kernel name like ``__loaded_vmcs_clear`` is not read as markdown bold."""
    fn, sep, rest = summary.partition(": ")
    return f"`{fn}`{sep}{rest}" if sep and " " not in fn else summary


def _budget_text(doc: dict[str, Any]) -> str:
    """The per-cell budget as written above the matrix (``time_per_s`` is null when
    only a count was given; ``examples_per`` is absent in older matrices)."""
    parts = []
    if doc.get("time_per_s") is not None:
        parts.append(f"{doc['time_per_s']:g} s")
    if doc.get("examples_per") is not None:
        parts.append(f"{doc['examples_per']} examples (explore: runs)")
    return " or ".join(parts) or "an unbounded budget"


def markdown(doc: dict[str, Any]) -> str:
    engines: list[str] = doc["engines"]
    cells = {(c["mutant"], c["engine"]): c for c in doc["cells"]}
    lines = [
        "# Kill matrix",
        "",
        f"`{doc['command']}`: at most {_budget_text(doc)} per cell; a kill is the first "
        "`regression` or `behaviour` finding of `patched,<mutant>`. "
        "`✓ t invariant`: killed after t seconds (the invariant, or `behaviour`); "
        "`—`: survived; `n/a`: engine unavailable; `…`: not run yet.",
        "",
        "| mutant | what changed | " + " | ".join(engines) + " |",
        "|---|---|" + "---|" * len(engines),
    ]
    for m in doc["mutants"]:
        eq = " (equivalent)" if m["equivalent"] else ""
        row = [f"{m['id']}", f"{_code_function(m['summary'])}{eq}"]
        row += [_mark(cells.get((m["id"], e), {})) for e in engines]
        lines.append("| " + " | ".join(row) + " |")
    total = len(doc["mutants"])
    killed = [
        str(sum(1 for c in doc["cells"] if c["engine"] == e and c["status"] == "killed"))
        + f"/{total}"
        for e in engines
    ]
    lines.append("| **killed** | | " + " | ".join(killed) + " |")
    surv = survivors(doc)
    lines += ["", "Survivors (no engine killed them): " + (", ".join(surv) or "none") + "."]
    errors = [c for c in doc["cells"] if c["status"] == "error"]
    for c in errors:
        lines.append(f"- error in {c['mutant']} / {c['engine']}: {c.get('note', '')}")
    return "\n".join(lines) + "\n"


def write_matrix(out: Path, doc: dict[str, Any]) -> None:
    doc["summary"] = summary(doc)
    doc["survivors"] = survivors(doc)
    write_text_atomic(out / "kill-matrix.json", json.dumps(doc, indent=2) + "\n")
    write_text_atomic(out / "kill-matrix.md", markdown(doc))


def cell_line(i: int, n: int, m: Mutant, cell: dict[str, Any]) -> str:
    head = f"[{i:>3}/{n}] {m.id} {cell['engine']}:"
    status = cell["status"]
    if status == "killed":
        return (
            f"{head} killed in {cell['seconds']:.1f} s ({cell['class']} {cell['invariant']} "
            f"at {cell['site']}) -> {cell['reproducer']}"
        )
    extra = f" ({cell['tool_errors']} tool errors)" if cell.get("tool_errors") else ""
    if status == "survived":
        examples = cell.get("examples")
        return f"{head} survived" + (f" {examples} examples" if examples else "") + extra
    return f"{head} {status}: {cell.get('note', '')}{extra}"


def run_matrix(
    mutants: list[Mutant],
    engines: list[str],
    *,
    time_per: float,
    seed: int,
    out: Path,
    command: str,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
    starting: Callable[[int, int, Mutant, str], None] | None = None,
    examples_per: int | None = None,
) -> dict[str, Any]:
    """Every (mutant, engine) cell in turn; the matrix is rewritten after each.
    ``time_per`` is ``math.inf`` when only ``examples_per`` bounds a cell."""
    started = time.monotonic()
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": 1,
        "command": command,
        "base": BASE,
        "time_per_s": time_per if math.isfinite(time_per) else None,
        "examples_per": examples_per,
        "seed": seed,
        "engines": engines,
        "kill_classes": list(KILL_CLASSES),
        "mutants": [m.to_json() for m in mutants],
        "cells": [
            {"mutant": m.id, "engine": e, "status": "pending"} for m in mutants for e in engines
        ],
        "elapsed_s": 0.0,
    }
    write_matrix(out, doc)
    n = len(doc["cells"])
    i = 0
    for m in mutants:
        for e in engines:
            if starting is not None:
                starting(i, n, m, e)
            cell = run_cell(m, e, time_per, seed, out, examples_per)
            doc["cells"][i] = cell
            i += 1
            doc["elapsed_s"] = round(time.monotonic() - started, 3)
            write_matrix(out, doc)
            log(cell_line(i, n, m, cell))
    if not any(c["status"] == "error" for c in doc["cells"]):
        shutil.rmtree(out / "work", ignore_errors=True)
    return doc


def parse_time(text: str) -> float:
    """``--time-per``: a positive, finite number of seconds (ValueError otherwise)."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(text)
    return value


def mutants_cmd(
    *,
    time_per: float,
    engines: list[str],
    only: str | None,
    out: Path,
    seed: int,
    as_json: bool,
    command: str,
    examples_per: int | None = None,
) -> int:
    from .report.progress import Progress

    chosen = select(catalogue(), only)
    # Live display on a terminal (cells, current cell, kills per engine); one plain
    # line per cell in a log or with --json (on stderr, so stdout stays the matrix).
    prog = Progress(time_per * len(chosen) * len(engines), quiet=False)
    kills: dict[str, dict[str, str]] = {}

    def starting(i: int, n: int, m: Mutant, engine: str) -> None:
        prog.update(
            i,
            kills,
            extra={"cells": f"{i}/{n}", "running": f"{m.id} with {engine}"},
        )

    def log(line: str) -> None:
        if " killed in " in line:
            engine = line.split("]", 1)[1].split()[1].rstrip(":")
            kills[line] = {"class": f"killed by {engine}"}
        prog.note(line)

    try:
        doc = run_matrix(
            chosen,
            engines,
            time_per=time_per,
            seed=seed,
            out=out,
            command=command,
            log=log,
            starting=starting,
            examples_per=examples_per,
        )
    finally:
        prog.close()
    if as_json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(markdown(doc))
        print(f"wrote {out / 'kill-matrix.md'} and {out / 'kill-matrix.json'}")
    return 0
