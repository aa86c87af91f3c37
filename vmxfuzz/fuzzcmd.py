"""``vmxfuzz fuzz`` and ``vmxfuzz promote``: campaigns and keeping their findings.

With ``--workers N`` the campaign runs in N processes with different seeds and one
shared Hypothesis example database; workers stream what they find to the parent,
which alone minimises, deduplicates and writes, so results merge without loss or
duplicates into one ``summary.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing as mp
import os
import queue
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic
from .campaign import Campaign, Hit, judge
from .coverage import Stats
from .differential import roots, run_both
from .lifeline import die_with_parent, watch
from .report.progress import Progress, summary_table
from .scenario import Scenario, ScenarioError, from_json, load


def _worker(
    args: tuple[int, str, float, int | None, str, Any, list[Any], bool | None],
) -> None:
    from .engines.hypothesis_engine import hunt

    seed_value, variant, deadline, max_examples, db, out_q, known, nested = args
    budget = max(0.0, deadline - time.monotonic())  # one clock for all processes (Linux)
    parent = os.getppid()
    die_with_parent(parent)  # a SIGKILLed campaign takes its workers with it
    watch(parent)
    seen = set(known)

    def new_hits(sc: Scenario) -> list[Hit]:
        return [h for h in judge(sc, variant) if h.ident not in seen and h.key not in seen]

    def on_found(hit: Hit, sc: Scenario) -> None:
        seen.add(hit.ident)
        out_q.put(("found", hit, sc.to_json()))

    count = [0]

    def tick(n: int) -> None:
        count[0] = n
        if n % 25 == 0:
            out_q.put(("tick", seed_value, n))

    stats = Stats()
    n = hunt(
        new_hits,
        on_found,
        variant=variant,
        budget_s=budget,
        seed_value=seed_value,
        database=db,
        tick=tick,
        nested=nested,
        stats=stats,
        max_examples=max_examples,
    )
    out_q.put(("stats", stats.shapes_json(), stats.coverage.to_json()))
    out_q.put(("done", seed_value, n))


# The names the harness gives the scenarios it drops (fuzz/harness.py): only such files
# are read and deleted, never anything else a user may have put into the folder.
_PENDING = re.compile(r"[a-z0-9-]+-[0-9a-f]{12}\.json")


def merge_pending(c: Campaign) -> None:
    """Fold the harness' dropped scenarios into the campaign (minimise, record)."""
    pending = c.out / ".pending"
    for path in sorted(pending.glob("*.json")) if pending.is_dir() else []:
        if not _PENDING.fullmatch(path.name):
            continue
        try:
            sc = load(path)
        except ScenarioError:
            continue  # not the harness' (it writes atomically): left alone
        for hit in c.new_hits(sc):
            c.record(hit, sc)
        path.unlink(missing_ok=True)


def _atheris_execs(out: Path) -> int:
    total = 0
    for p in (out / ".stats").glob("*.json"):
        try:
            total += int(json.loads(p.read_text())["execs"])
        except (OSError, ValueError, KeyError):
            continue
    return total


def _final_execs(out: Path, pid: int, log: Path, start: int) -> int:
    """The executions the harness process ``pid`` did that its last ``.stats`` file
    missed: it writes one at most every second, and libFuzzer ends the process with
    C ``exit()``, so its final count is the one libFuzzer prints
    (``stat::number_of_executed_units``, in this run's part of the log from ``start``)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(start)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return 0
    try:
        seen = int(json.loads((out / ".stats" / f"{pid}.json").read_text())["execs"])
    except (OSError, ValueError, KeyError, TypeError):
        seen = 0
    units = re.findall(r"stat::number_of_executed_units: *(\d+)", text)
    return max(0, int(units[-1]) - seen) if units else 0


def _atheris_stats(c: Campaign) -> None:
    """Fold the harness processes' shape counts and coverage into the campaign."""
    for p in (c.out / ".stats").glob("*.json"):
        try:
            doc = json.loads(p.read_text())
            c.stats.merge(doc.get("shapes", {}), doc.get("coverage", {}))
        except (OSError, ValueError, AttributeError):
            continue


def fuzz_atheris(
    c: Campaign,
    *,
    budget: float,
    seed_value: int,
    workers: int,
    fail_on: str,
    prog: Progress,
    max_examples: int | None = None,
) -> None:
    """Run ``python -m vmxfuzz.fuzz`` (libFuzzer) and merge what it drops, as it runs.

    ``budget`` seconds (``inf``: none) and ``max_examples`` executions (libFuzzer's
    ``-runs``; with ``--workers``, of all the ``-fork`` jobs together), whichever ends
    first."""
    out = c.out
    corpus = out / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = Path("corpora") / "seed"
    if not any(corpus.iterdir()) and seeds.is_dir():
        for p in seeds.iterdir():
            if p.is_file():
                (corpus / p.name).write_bytes(p.read_bytes())
    (out / "artifacts").mkdir(exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "vmxfuzz.fuzz",
        f"-seed={seed_value}",
        f"-artifact_prefix={out / 'artifacts'}/",
        "-print_final_stats=1",
    ]
    if math.isfinite(budget):
        cmd.append(f"-max_total_time={max(1, int(budget))}")
    if max_examples is not None:
        cmd.append(f"-runs={max_examples}")
    if workers > 1:
        cmd += [f"-fork={workers}", "-ignore_crashes=1"]
    cmd.append(str(corpus))
    env = dict(os.environ)
    env.update(
        VMXFUZZ_OUT=str(out),
        VMXFUZZ_VARIANT=c.variant,
        VMXFUZZ_FAIL_ON=fail_on,
        VMXFUZZ_CAMPAIGN_PID=str(os.getpid()),  # every harness process dies with us
    )
    deadline = c.deadline if c.deadline is not None else time.monotonic() + budget
    parent = os.getpid()
    log_path = out / "atheris.log"
    with open(log_path, "ab") as log:
        start = log.tell()
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=log,
            env=env,
            process_group=0,  # libFuzzer and its -fork children: one group to end
            preexec_fn=lambda: die_with_parent(parent),
        )
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                merge_pending(c)
                c.examples = _atheris_execs(out)
                prog.update(c.examples, c.findings)
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        finally:
            _end_group(proc)
    merge_pending(c)
    c.examples = _atheris_execs(out) + _final_execs(out, proc.pid, log_path, start)
    _atheris_stats(c)


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop libFuzzer at the deadline: SIGTERM (it prints its final stats and exits),
    then SIGKILL for the whole group after a few short polls."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        for _ in range(20):
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # -fork children outliving their parent
    proc.wait()


def _split(total: int | None, workers: int) -> list[int | None]:
    """``total`` examples shared out between ``workers`` (the first ones get the
    remainder); a worker whose share is 0 is not started."""
    if total is None:
        return [None] * workers
    base, extra = divmod(total, workers)
    return [n for n in (base + (i < extra) for i in range(workers)) if n > 0]


def process_started() -> float:
    """When this process started, on the ``time.monotonic()`` clock: ``--time`` counts
    from the command's start, interpreter and imports included (what a user times).
    Falls back to now where ``/proc`` is not there."""
    now = time.monotonic()
    try:
        with open("/proc/self/stat", "rb") as fh:
            ticks = int(fh.read().rsplit(b")", 1)[1].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - age if age >= 0 else now


def fuzz(
    *,
    engine: str,
    variant: str,
    budget: float,
    seed_value: int,
    out: Path,
    workers: int,
    as_json: bool,
    nested: bool | None = None,
    fail_on: str = "",
    db_url: str | None = None,
    started: float | None = None,
    max_examples: int | None = None,
) -> int:
    """A campaign of ``budget`` seconds (``math.inf``: no time limit) or of
    ``max_examples`` examples, whichever ends first; exit 1 when it found something.

    A count budget makes the campaign the same on any machine: the Hypothesis engine
    with one worker is seeded by ``seed_value``, so a fresh folder gets the same
    examples and the same findings; libFuzzer runs ``-runs=N`` with ``-seed``.  With
    ``workers`` the count is split between them (their shared database makes the
    order of what they find vary).
    """
    if engine not in ("hypothesis", "atheris"):
        raise ValueError(f"unknown engine {engine!r}")
    c = Campaign(out=out, variant=variant, engine=engine, seed=seed_value)
    if started is not None:  # the CLI: --time counts from the command's start
        c.started = started
    deadline = c.deadline = c.started + budget  # minimisation counts against --time
    c.write_summary()
    c.finish_minimising()  # what the last run's deadline cut
    quiet = as_json
    prog = Progress(budget, quiet)
    db = db_url or str(out / ".hypothesis")  # --db: shared between processes/machines
    if engine == "atheris":
        fuzz_atheris(
            c,
            budget=budget,
            seed_value=seed_value,
            workers=workers,
            fail_on=fail_on,
            prog=prog,
            max_examples=max_examples,
        )
    elif workers <= 1:
        from .engines.hypothesis_engine import hunt

        last = [0.0]

        def tick(n: int) -> None:
            now = time.monotonic()
            if now - last[0] > 0.5:
                last[0] = now
                prog.update(n, c.findings)

        def found(hit: Hit, sc: Scenario) -> None:
            c.record(hit, sc)

        hunt(
            c.new_hits,
            found,
            variant=variant,
            budget_s=max(0.0, deadline - time.monotonic()),
            seed_value=seed_value,
            database=db,
            tick=tick,
            nested=nested,
            stats=c.stats,
            max_examples=max_examples,
        )
    else:
        ctx = mp.get_context("spawn")
        q: Any = ctx.Queue()
        known = c.idents()
        shares = _split(max_examples, workers)
        procs = [
            ctx.Process(
                target=_worker,
                args=((seed_value + i, variant, deadline, share, str(db), q, known, nested),),
            )
            for i, share in enumerate(shares)
        ]
        for p in procs:
            p.start()
        counts: dict[int, int] = {}
        done = 0
        while done < len(procs):
            try:
                msg = q.get(timeout=0.5)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    break
                continue
            if msg[0] == "found":
                _, hit, data = msg
                c.record(hit, from_json(data))
            elif msg[0] == "tick":
                counts[msg[1]] = msg[2]
            elif msg[0] == "stats":
                c.stats.merge(msg[1], msg[2])
            else:
                counts[msg[1]] = msg[2]
                done += 1
            c.examples = sum(counts.values())
            prog.update(c.examples, c.findings)
        for p in procs:
            p.join()
    c.write_summary()
    prog.close()
    summary = c.summary()
    if as_json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        summary_table(summary, str(out / "summary.json"))
    return 1 if summary["findings"] else 0


_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def plain_name(name: str) -> bool:
    """A name usable as a file stem in the regression folder (no paths, no dot files)."""
    return bool(_PLAIN.fullmatch(name))


def promote(path: Path, name: str | None, dest: Path) -> Path:
    """Copy a finding into the regression folder with a fresh ``expect`` block.

    The block is computed by replaying the scenario now, so promoting again after a
    model change refreshes it; the file is written atomically.
    """
    sc = load(path)
    d = run_both(sc, keep_trace=False)
    stem = name or (sc.name if plain_name(sc.name) else path.stem)
    expect = {
        "reference": sorted(d.reference.invariants),
        "patched": sorted(d.patched.invariants),
        "classes": sorted({f.cls for f in d.findings}),
        "causes": {
            "reference": sorted({v.cause for v in roots(d.reference)[0]}),
            "patched": sorted({v.cause for v in roots(d.patched)[0]}),
        },
    }
    target = dest / f"{stem}.json"
    write_text_atomic(target, replace(sc, name=stem, expect=expect).dumps())
    return target
