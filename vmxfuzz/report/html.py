"""Self-contained HTML timelines of a replay: one lane per CPU, both variants side
by side, NMIs and the crash shootdown marked, each CPU's VMCS cache at the end, the
violation highlighted.  No network resources: inline CSS only.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic
from ..differential import Finding
from ..executor import Result
from ..scenario import Scenario
from ..variants import short_name
from .coverage_html import coverage_section

CSS = """
body{font:13px/1.35 system-ui,sans-serif;margin:1.2em;color:#1b1b1b}
h1{font-size:1.3em;margin:.2em 0} h2{font-size:1.1em;margin:.8em 0 .3em}
.desc{max-width:70em;color:#444} code{background:#f3f3f3;padding:0 .25em}
.finding{border-left:4px solid #c62828;background:#fff4f4;padding:.3em .6em;margin:.3em 0}
.finding.fixed{border-color:#2e7d32;background:#f1f8f1}
.finding.behaviour{border-color:#6a1b9a;background:#f7f1fa}
.sides{display:flex;gap:1.2em;align-items:flex-start}
.side{flex:1;min-width:0}
table.timeline{border-collapse:collapse;width:100%;table-layout:fixed}
.timeline th{background:#263238;color:#fff;font-weight:600;padding:.2em;position:sticky;top:0}
.timeline td{border-bottom:1px solid #eee;padding:0 .15em;vertical-align:top;height:1.3em}
.timeline td.seq,.timeline th.seq{width:3.2em;color:#999;text-align:right;font-size:11px}
.step{display:block;border-radius:3px;padding:0 .3em;font-size:11.5px;white-space:nowrap;
 overflow:hidden;text-overflow:ellipsis;background:#eceff1}
.step.ipi{background:#e3f2fd}.step.nmi{background:#ffebee;border:1px solid #e57373}
.step.crash{background:#fff3e0}.step.violation{outline:2px solid #c62828;background:#ffcdd2}
.mark{font-weight:700;color:#c62828;margin-right:.3em}
.cache td,.cache th{border:1px solid #ddd;padding:.15em .4em;text-align:left}
.cache{border-collapse:collapse;margin:.4em 0}
.viol{color:#b71c1c} .ok{color:#2e7d32}
details.earlier summary{cursor:pointer;color:#455a64;margin:.3em 0}
"""


def _esc(x: object) -> str:
    return html.escape(str(x))


def _lanes(result: Result, ncpus: int) -> str:
    # Where each violation shows in its CPU's lane: the step it happened at; a kexec
    # leak (site ``machine_kexec:vmcs@<step>``) shows at the kexec check itself.
    marks: set[tuple[int, str]] = set()
    kexec_leak = False
    for v in result.violations:
        if v.cpu is not None and v.label:
            kexec_leak |= "@" in v.label
            marks.add((v.cpu, v.label))
    last_hit: dict[tuple[int, str], int] = {}
    for e in result.trace:
        if (e.cpu, e.label) in marks or (kexec_leak and e.label == "machine_kexec:start"):
            last_hit[(e.cpu, e.label)] = e.seq
    rows = []
    ctx_seen: dict[int, str] = {}
    anchored = False
    for e in result.trace:
        ctx = e.name  # a new handler (NMI, IPI) starts where the name changes
        badge = ""
        if ctx_seen.get(e.cpu) != ctx:
            ctx_seen[e.cpu] = ctx
            if e.context in ("nmi", "crash") and e.name.startswith("NMI"):
                badge = f'<span class="mark">&#9889; {_esc(e.name)}</span>'
            elif e.context == "ipi":
                badge = f'<span class="mark" style="color:#1565c0">IPI {_esc(e.name)}</span>'
        cls = e.context
        if last_hit.get((e.cpu, e.label)) == e.seq:
            cls += " violation"
        cells = []
        for c in range(ncpus):
            if c == e.cpu:
                title = f"{e.label} (#{e.nth}) in {e.context} context, {e.name}"
                cells.append(
                    f'<td class="lane" data-cpu="{c}"><span class="step {cls}" '
                    f'title="{_esc(title)}">{badge}{_esc(e.label)}</span></td>'
                )
            else:
                cells.append(f'<td class="lane" data-cpu="{c}"></td>')
        anchor = ""
        if not anchored and e.context in ("nmi", "crash"):
            anchored = True  # the first NMI or crash step: where to look first
            anchor = f' id="crash-{_esc(result.variant)}"'
        rows.append(f'<tr{anchor}><td class="seq">{e.seq}</td>{"".join(cells)}</tr>')
    head = "".join(f"<th>CPU {c}</th>" for c in range(ncpus))
    thead = f'<thead><tr><th class="seq">#</th>{head}</tr></thead>'
    # Fold the set-up: show from a little before the first NMI/crash step (or the last
    # 80 steps); the earlier steps stay one click away.
    first = next((e.seq for e in result.trace if e.context in ("nmi", "crash")), None)
    cut = max(0, (first - 25) if first is not None else len(rows) - 80)
    folded = ""
    if cut > 0:
        folded = (
            f'<details class="earlier"><summary>{cut} earlier steps</summary>'
            f'<table class="timeline">{thead}<tbody>{"".join(rows[:cut])}</tbody></table>'
            "</details>"
        )
    return f'{folded}<table class="timeline">{thead}<tbody>{"".join(rows[cut:])}</tbody></table>'


def _side(sc: Scenario, r: Result) -> str:
    ops = ", ".join(f"{o.op}={_esc(v)}" for o, v in zip(sc.ops, r.op_results, strict=False))
    viols = (
        "".join(
            f'<li class="viol violation-item"><b>{_esc(v.invariant)}</b> at '
            f"<code>{_esc(v.site)}</code>"
            f" (CPU {_esc(v.cpu)}, {_esc(v.context)}): {_esc(v.detail)}</li>"
            for v in r.violations
        )
        or '<li class="ok">no violations</li>'
    )
    cache_rows = "".join(
        f"<tr><th>CPU {c}</th><td>{_esc(', '.join(v) or '(empty)')}</td></tr>"
        for c, v in sorted(r.caches.items())
    )
    return (
        f'<div class="side" data-variant="{_esc(r.variant)}"><h2>{_esc(short_name(r.variant))}</h2>'
        f"<div>ended: <b>{_esc(r.ended)}</b>; {r.steps} steps</div><div>ops: {ops}</div>"
        f"<ul>{viols}</ul><div><b>VMCS cache of each CPU at the end"
        f"{' (the kexec check)' if r.kexec_checked else ''}</b></div>"
        f'<table class="cache">{cache_rows}</table>'
        f"{_lanes(r, sc.config.cpus)}</div>"
    )


def scenario_page(sc: Scenario, source: str, results: list[Result], findings: list[Finding]) -> str:
    title = sc.name or Path(source).stem
    fnd = "".join(
        f'<div class="finding {_esc(f.cls)}"><b>{_esc(f.cls)}</b> '
        f"{_esc(f.invariant or 'observable results')} in {_esc(short_name(f.variant))} at "
        f"<code>{_esc(f.site)}</code>: {_esc(f.explanation)}</div>"
        for f in findings
    )
    variants = ",".join(r.variant for r in results)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{_esc(title)}</h1>"
        f'<p class="desc">{_esc(sc.description)}</p>'
        f"<p>replay: <code>vmxfuzz replay {_esc(source)} --variant {_esc(variants)}</code></p>"
        f"{fnd}<div class='sides'>{''.join(_side(sc, r) for r in results)}</div>"
        f"<script type='application/json' id='scenario'>{_esc(json.dumps(sc.to_json()))}</script>"
        "</body></html>"
    )


def index_page(
    title: str, entries: list[dict[str, Any]], coverage: dict[str, Any] | None = None
) -> str:
    rows = "".join(
        f"<tr><td>{_esc(e['class'])}</td><td>{_esc(e['invariant'])}</td>"
        f"<td>{_esc(e['variant'])}</td><td><code>{_esc(e['site'])}</code></td>"
        f"<td><a href='{_esc(e['page'])}'>{_esc(e['name'])}</a></td></tr>"
        for e in entries
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{_esc(title)}</h1>"
        f"<table class='cache findings'><tr><th>class</th><th>invariant</th><th>variant</th>"
        f"<th>site</th><th>reproducer</th></tr>{rows}</table>"
        f"{coverage_section(coverage)}</body></html>"
    )


def write_page(path: Path, text: str) -> None:
    write_text_atomic(path, text)
