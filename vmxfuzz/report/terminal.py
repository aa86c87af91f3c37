"""Plain-text rendering of a replay: per-CPU trace lanes, verdicts, findings.

One lane per CPU (indented by CPU number) so interleavings, IPIs and NMIs read
top to bottom the way a kernel developer draws them on a whiteboard.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..differential import Finding
from ..executor import Result
from ..oracle import Violation
from ..scenario import Scenario
from ..variants import short_name

LANE = 6


def trace_lines(result: Result, ncpus: int) -> Iterable[str]:
    head = "  step " + "".join(f"CPU{c}".ljust(LANE) for c in range(ncpus))
    yield head
    last_ctx: dict[int, str] = {}
    for e in result.trace:
        ctx = f"{e.context}:{e.name}"
        marker = ""
        if last_ctx.get(e.cpu) != ctx:
            marker = f"<{ctx}> "
            last_ctx[e.cpu] = ctx
        yield (
            f"  {e.seq:>4} "
            + " " * (LANE * e.cpu)
            + f"{marker}{e.label}"
            + (f" #{e.nth}" if e.nth > 1 else "")
        )


def violation_line(v: Violation) -> str:
    where = f"CPU {v.cpu}, {v.context} context" if v.cpu is not None else "machine"
    objs = f" [{'; '.join(v.objects)}]" if v.objects else ""
    return f"VIOLATION {v.invariant} at {v.site} ({where}): {v.detail}{objs}"


def result_lines(scenario: Scenario, result: Result, trace: bool) -> Iterable[str]:
    ops = ", ".join(f"{op.op}={r}" for op, r in zip(scenario.ops, result.op_results, strict=False))
    yield f"-- {short_name(result.variant)}: ended: {result.ended}; {result.steps} steps"
    yield f"   ops: {ops}"
    if trace:
        yield from (f"  {line}" for line in trace_lines(result, scenario.config.cpus))
    if not result.violations:
        yield "   no violations"
    for v in result.violations:
        yield "   " + violation_line(v)
    for w in result.warnings:
        yield f"   warning: {w}"


def finding_line(f: Finding) -> str:
    inv = f.invariant or "observable results"
    return f"FINDING {f.cls}: {inv} in {short_name(f.variant)} at {f.site}: {f.explanation}"
