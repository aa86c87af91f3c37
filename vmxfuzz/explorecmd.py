"""``vmxfuzz explore``: run the bounded explorer over programs and report like a campaign.

Findings go through :class:`vmxfuzz.campaign.Campaign` (dedup by class, invariant and
cause; minimised to 1-minimal; reproducers and ``summary.json`` written atomically), so
``vmxfuzz report`` and ``vmxfuzz replay`` work on an explore directory as on a fuzz
one.  ``explore.json`` beside them states the bound and what was covered; it is
rewritten after every program, so an interrupted run leaves a valid partial report and
``--resume`` continues after the last finished program.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic
from .campaign import Campaign
from .explore import Bound, Explorer, Finding, Stats
from .explorepool import Job, explore_parallel
from .oracle import INVARIANTS
from .report.progress import Progress, summary_table
from .scenario import Scenario
from .scope import Scope
from .variants import split_pair

EXIT_CLEAN, EXIT_FOUND, EXIT_INCOMPLETE = 0, 1, 3


@dataclass
class Source:
    """Where the programs come from: files, or the enumeration bound."""

    files: list[tuple[str, Scenario]] = field(default_factory=list)
    cpus: int = 2
    vcpus: int = 2
    ops: int = 1
    weak: bool = False

    def describe(self) -> dict[str, Any]:
        if self.files:
            return {"programs": [name for name, _ in self.files], "weak_memory": self.weak}
        return {
            "cpus": self.cpus,
            "vcpus": self.vcpus,
            "workload_ops": self.ops,
            "weak_memory": self.weak,
        }

    def programs(self) -> Iterator[Scenario]:
        if self.files:
            yield from (sc for _, sc in self.files)
            return
        from .explore import programs

        yield from programs(self.cpus, self.vcpus, self.ops, self.weak)

    def count(self) -> int:
        return sum(1 for _ in self.programs())


def _invariant_of(f: dict[str, Any]) -> str:
    return "behaviour" if f["class"] == "behaviour" else str(f["invariant"])


@dataclass
class Report:
    variant: str
    bound: Bound
    source: Source
    stats: Stats = field(default_factory=Stats)
    seconds: float = 0.0
    programs_done: int = 0
    programs_total: int = 0
    complete: bool = False
    interrupted: bool = False
    first_finding_seconds: float | None = None
    workers: int = 1
    scope: Scope = field(default_factory=Scope)

    def split(self, findings: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
        """The findings the verdict is about, and those out of its scope (known or
        ignored causes, each tagged with why)."""
        mine, out = [], []
        for f in findings:
            why = self.scope.why(f)
            if why is None:
                mine.append(f)
            else:
                out.append({**f, "scope": why})
        return mine, out

    def verdicts(self, findings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Per invariant (and behaviour): violated, only known/ignored causes, none."""
        mine, out = self.split(findings)
        res: dict[str, dict[str, Any]] = {}
        for inv in [*INVARIANTS, "behaviour"]:

            def of(fs: list[Any], inv: str = inv) -> list[str]:
                return sorted({f["cause"] for f in fs if _invariant_of(f) == inv})

            new, scoped = of(mine), of(out)
            if new:
                verdict = "violated"
            elif not self.complete:
                verdict = "incomplete"
            elif scoped:
                verdict = "no violation other than the known or ignored causes"
            else:
                verdict = "no violation"
            res[inv] = {"verdict": verdict, "causes": new, "out_of_scope": scoped}
        return res

    def to_json(self, findings: list[dict[str, Any]]) -> dict[str, Any]:
        mine, out = self.split(findings)
        return {
            "variant": self.variant,
            "bound": {**self.source.describe(), **self.bound.to_json()},
            "complete": self.complete,
            "interrupted": self.interrupted,
            "programs_done": self.programs_done,
            "programs_total": self.programs_total,
            "states": self.stats.states,
            "transitions": self.stats.transitions,
            "runs": self.stats.runs,
            "pruned_by_hash": self.stats.pruned,
            "slept": self.stats.slept,
            "seconds": round(self.seconds, 3),
            "workers": self.workers,
            "states_per_s": round(self.stats.states / self.seconds) if self.seconds else None,
            "first_finding_seconds": (
                None if self.first_finding_seconds is None else round(self.first_finding_seconds, 3)
            ),
            "findings": mine,
            "scope": self.scope.to_json(),
            "out_of_scope": out,
            "verdicts": self.verdicts(findings),
        }

    def verdict(self, findings: list[dict[str, Any]]) -> str:
        b = self.to_json([])["bound"]
        bound = ", ".join(f"{k}={v}" for k, v in b.items())
        mine, out = self.split(findings)
        if mine:
            return f"{len(mine)} finding(s) within the bound ({bound})"
        if self.complete:
            other = ""
            if out:
                known = sorted({f["cause"] for f in out if f["scope"] == "known"})
                ign = sorted({f["cause"] for f in out if f["scope"] == "ignored"})
                parts = [f"the known {', '.join(known)}"] * bool(known)
                parts += [f"the ignored {', '.join(ign)}"] * bool(ign)
                other = " other than " + " and ".join(parts) + ","
                return (
                    f"no violation{other} within the bound ({bound}): every schedule "
                    f"explored; {self.stats.states} states, {self.stats.runs} runs"
                )
            return (
                f"no violation: every schedule explored within the bound ({bound}); "
                f"{self.stats.states} states, {self.stats.runs} runs"
            )
        return (
            f"INCOMPLETE: no violation in the {self.programs_done} of {self.programs_total} "
            f"program(s) fully explored within the bound ({bound})"
        )


@dataclass
class _Ticker:
    """Progress for one program's exploration (at most twice a second)."""

    prog: Progress
    campaign: Campaign
    rep: Report
    ex: Explorer
    before: Stats
    name: str
    last: float = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self.last < 0.5:
            return
        self.last = now
        rep, ex, before = self.rep, self.ex, self.before
        self.campaign.examples = before.runs + ex.stats.runs
        self.prog.update(
            self.campaign.examples,
            self.campaign.findings,
            extra={
                "programs": f"{rep.programs_done}/{rep.programs_total} ({self.name})",
                "states": f"{before.states + ex.stats.states:,}",
            },
        )


def _resume_point(out: Path, doc: dict[str, Any]) -> tuple[int, Stats, float]:
    path = out / "explore.json"
    if not path.exists():
        return 0, Stats(), 0.0
    try:
        old = json.loads(path.read_text())
        if old["bound"] != doc["bound"] or old["variant"] != doc["variant"]:
            return 0, Stats(), 0.0
        st = Stats(
            states=old["states"],
            transitions=old["transitions"],
            runs=old["runs"],
            pruned=old["pruned_by_hash"],
            slept=old["slept"],
        )
        return int(old["programs_done"]), st, float(old["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, Stats(), 0.0


def explore_cmd(
    *,
    source: Source,
    variant: str,
    bound: Bound,
    budget: float,
    out: Path,
    as_json: bool,
    resume: bool = False,
    sleep_sets: bool = True,
    max_runs: int | None = None,
    scope: Scope | None = None,
    workers: int = 1,
) -> int:
    stop = {"flag": False}

    def on_term(signum: int, frame: Any) -> None:
        if not stop["flag"]:  # the first SIGTERM stops the search; later ones wait
            stop["flag"] = True
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        return _explore(
            source,
            variant,
            bound,
            budget,
            out,
            as_json,
            resume,
            sleep_sets,
            max_runs,
            scope,
            workers,
            stop=lambda: stop["flag"],
        )
    except KeyboardInterrupt:
        if stop["flag"]:  # only before the search started: nothing to report yet
            return EXIT_INCOMPLETE
        raise
    finally:
        signal.signal(signal.SIGTERM, old)


def _explore(
    source: Source,
    variant: str,
    bound: Bound,
    budget: float,
    out: Path,
    as_json: bool,
    resume: bool,
    sleep_sets: bool,
    max_runs: int | None = None,
    scope: Scope | None = None,
    workers: int = 1,
    stop: Callable[[], bool] | None = None,
) -> int:
    pair = split_pair(variant)
    names = list(pair) if pair is not None else [variant]
    c = Campaign(out=out, variant=variant, engine="explore")
    c.write_summary()
    rep = Report(variant, bound, source, programs_total=source.count() * len(names))
    rep.scope = scope or Scope()
    rep.workers = workers
    skip = 0
    if resume:
        skip, rep.stats, rep.seconds = _resume_point(out, rep.to_json([]))
        rep.programs_done = skip
    prog = Progress(budget, as_json)
    started = time.monotonic()
    deadline = started + budget
    base_seconds = rep.seconds
    runs_before = rep.stats.runs  # --max-runs counts this invocation's runs

    def save() -> None:
        write_text_atomic(
            out / "explore.json", json.dumps(rep.to_json(c.summary()["findings"]), indent=2) + "\n"
        )

    def record(f: Finding) -> None:
        if rep.first_finding_seconds is None:
            rep.first_finding_seconds = base_seconds + (time.monotonic() - started)
        for hit in c.new_hits(f.scenario):
            c.record(hit, f.scenario)

    def jobs() -> Iterator[Job]:
        index = 0
        for name in names:
            for program in source.programs():
                index += 1
                if index > skip:
                    yield Job(index, program, name, bound, deadline, sleep_sets)

    try:
        if workers > 1:  # (--max-runs is counted in program order: serial only)
            for res in explore_parallel(jobs(), workers):
                if stop is not None and stop():
                    raise KeyboardInterrupt
                for f in res.findings:  # in program order: the serial run's order
                    record(f)
                rep.stats = rep.stats.merged(res.stats)
                rep.seconds = base_seconds + (time.monotonic() - started)
                c.examples = rep.stats.runs
                prog.update(c.examples, c.findings, extra={"states": f"{rep.stats.states:,}"})
                if not res.complete:
                    raise TimeoutError
                rep.programs_done += 1
                save()
        for job in jobs() if workers <= 1 else ():
            ex = Explorer(
                job.program,
                job.variant,
                bound,
                deadline=deadline,
                on_finding=record,
                sleep_sets=sleep_sets,
                stop=stop,
                max_runs=(
                    None if max_runs is None else max(0, max_runs - (rep.stats.runs - runs_before))
                ),
            )
            before = rep.stats
            ex.tick = _Ticker(prog, c, rep, ex, before, job.variant)
            try:
                done = ex.explore()
            finally:
                rep.stats = before.merged(ex.stats)
                rep.seconds = base_seconds + (time.monotonic() - started)
            if not done:
                raise TimeoutError
            rep.programs_done += 1
            save()
        rep.complete = True
    except TimeoutError:
        pass
    except KeyboardInterrupt:
        rep.interrupted = True
    finally:
        prog.close()
    rep.seconds = base_seconds + (time.monotonic() - started)
    c.examples = rep.stats.runs
    c.write_summary()
    save()
    findings = c.summary()["findings"]
    if as_json:
        json.dump(rep.to_json(findings), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        summary_table(c.summary(), str(out / "summary.json"))
        st = rep.stats
        print(
            f"explored {rep.programs_done}/{rep.programs_total} program(s): {st.states:,} states, "
            f"{st.runs:,} runs, {st.transitions:,} steps, {st.pruned:,} cut at a known state, "
            f"{st.slept:,} branches skipped by sleep sets, {rep.seconds:.1f}s"
        )
        print(rep.verdict(findings))
    if rep.split(findings)[0]:
        return EXIT_FOUND
    return EXIT_CLEAN if rep.complete else EXIT_INCOMPLETE
