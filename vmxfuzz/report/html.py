"""Self-contained HTML pages: a replay's timeline and a campaign's index.

A timeline page has one lane per CPU, both variants side by side with their steps
aligned (a row is the same step in both, or a step one variant has and the other has
not), NMIs and the crash shootdown marked, each CPU's VMCS cache at the end, the
violation highlighted, and a legend.  The index gives the run's details, a legend of
the classes and the findings grouped by cause, each with its windows, explanation and
``docs/findings.md`` entry.  No network resources: inline CSS only.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic
from ..differential import Finding
from ..executor import Result
from ..scenario import Scenario
from ..sched import TraceEvent
from ..variants import short_name
from .align import align
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
.timeline td.seq.absent{color:#bbb} .timeline td.only{background:#fffde7}
.timeline th.variant{background:#37474f} .timeline td.gap,.timeline th.gap{width:.6em;
 background:#fff;border:none}
.legend{display:flex;flex-wrap:wrap;gap:.4em 1.2em;margin:.5em 0;padding:.4em .6em;
 background:#fafafa;border:1px solid #eee;max-width:70em}
.legend .step{display:inline-block} .legend dt{font-weight:600} .legend dd{margin:0 0 0 .3em}
.legend div{display:flex;align-items:baseline}
.back{display:inline-block;margin:.2em 0 .6em}
dl.run{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;margin:.4em 0}
dl.run dt{color:#555} dl.run dd{margin:0}
.group{border:1px solid #ddd;border-radius:4px;margin:.8em 0;padding:.3em .8em;max-width:110em}
.windows td.nowrap{white-space:nowrap}
.group h2{margin:.3em 0} .group .why{color:#333;margin:.2em 0 .5em}
.cls{display:inline-block;border-radius:3px;padding:0 .35em;font-size:11.5px;color:#fff;
 background:#c62828;margin-right:.3em}
.cls.fixed{background:#2e7d32} .cls.behaviour{background:#6a1b9a} .cls.shared{background:#ef6c00}
table.windows{border-collapse:collapse;width:100%} .windows td,.windows th{border-top:1px solid
 #eee;padding:.2em .4em;text-align:left;vertical-align:top}
.docref{font-size:12px;color:#37474f} ol.ops{margin:.2em 0;padding-left:2em}
"""

# What each class says (spec section 9; docs/semantics.md).
CLASS_MEANING = {
    "fixed": "reference violates an invariant that patched does not",
    "regression": "patched violates an invariant that reference does not",
    "shared": "both variants violate the same invariant",
    "behaviour": "no invariant differs, but op results or how the run ended do",
}
# The kinds of step in a timeline (a step's context, and the violation mark).
STEP_MEANING = {
    "task": "a step of an operation (system call, hotplug, reboot)",
    "ipi": "a step run for another CPU's IPI",
    "nmi": "a step of an NMI handler",
    "crash": "a step of the crash path (panic or crash shootdown)",
    "violation": "where the violation was seen",
}


def _esc(x: object) -> str:
    return html.escape(str(x))


def _legend(steps: bool) -> str:
    items = [
        f'<div><dt><span class="cls {c}">{c}</span></dt><dd>{_esc(m)}</dd></div>'
        for c, m in CLASS_MEANING.items()
    ]
    if steps:
        items += [
            f'<div><dt><span class="step {k}">{k}</span></dt><dd>{_esc(m)}</dd></div>'
            for k, m in STEP_MEANING.items()
        ]
        items.append(
            "<div><dt>&mdash;</dt><dd>a step this variant does not have (the other has)</dd></div>"
        )
    return f'<dl class="legend" id="legend">{"".join(items)}</dl>'


def _marks(result: Result) -> set[int]:
    """The steps a violation shows at: where it happened (the last such step on its
    CPU); a kexec leak (site ``machine_kexec:vmcs@<step>``) at the kexec check."""
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
    return set(last_hit.values())


def _badges(result: Result) -> dict[int, str]:
    """A mark where a new handler (NMI, IPI) starts on a CPU: where its name changes."""
    out: dict[int, str] = {}
    seen: dict[int, str] = {}
    for e in result.trace:
        if seen.get(e.cpu) == e.name:
            continue
        seen[e.cpu] = e.name
        if e.context in ("nmi", "crash") and e.name.startswith("NMI"):
            out[e.seq] = f'<span class="mark">&#9889; {_esc(e.name)}</span>'
        elif e.context == "ipi":
            out[e.seq] = f'<span class="mark" style="color:#1565c0">IPI {_esc(e.name)}</span>'
    return out


def _cells(
    e: TraceEvent | None, r: Result, ncpus: int, marks: set[int], badges: dict[int, str], only: bool
) -> str:
    if e is None:
        blank = "".join(
            f'<td class="lane" data-cpu="{c}" data-variant="{_esc(r.variant)}"></td>'
            for c in range(ncpus)
        )
        absent = f'<td class="seq absent" title="no such step in {_esc(r.variant)}">&mdash;</td>'
        return absent + blank
    cls = e.context + (" violation" if e.seq in marks else "")
    cells = []
    for c in range(ncpus):
        lane = "lane only" if only else "lane"
        attrs = f'class="{lane}" data-cpu="{c}" data-variant="{_esc(r.variant)}"'
        if c == e.cpu:
            title = f"{e.label} (#{e.nth}) in {e.context} context, {e.name}"
            cells.append(
                f'<td {attrs}><span class="step {cls}" title="{_esc(title)}">'
                f"{badges.get(e.seq, '')}{_esc(e.label)}</span></td>"
            )
        else:
            cells.append(f"<td {attrs}></td>")
    return f'<td class="seq">{e.seq}</td>{"".join(cells)}'


def _timeline(results: list[Result], ncpus: int) -> str:
    """One table: each variant's step number and CPU lanes, rows aligned across them."""
    if len(results) == 2:
        rows: list[tuple[TraceEvent | None, ...]] = list(align(results[0].trace, results[1].trace))
    else:
        rows = [(e,) for r in results[:1] for e in r.trace]
    marks = [_marks(r) for r in results]
    badges = [_badges(r) for r in results]
    gap = '<td class="gap"></td>'
    body = []
    anchored = False
    first_special = None
    for n, row in enumerate(rows):
        only = len(row) == 2 and None in row
        parts = [
            _cells(e, r, ncpus, marks[i], badges[i], only)
            for i, (e, r) in enumerate(zip(row, results, strict=False))
        ]
        special = any(e is not None and e.context in ("nmi", "crash") for e in row)
        anchor = ""
        if special and not anchored:
            anchored, first_special = True, n  # the first NMI or crash step: look here
            anchor = ' id="crash"'
        body.append(f"<tr{anchor}>{gap.join(parts)}</tr>")
    th_gap = '<th class="gap"></th>'
    head1 = th_gap.join(
        f'<th class="variant" colspan="{ncpus + 1}">{_esc(short_name(r.variant))}</th>'
        for r in results
    )
    lanes = "".join(f"<th>CPU {c}</th>" for c in range(ncpus))
    head2 = th_gap.join(f'<th class="seq">#</th>{lanes}' for _ in results)
    thead = f"<thead><tr>{head1}</tr><tr>{head2}</tr></thead>"
    # Fold the set-up: show from a little before the first NMI/crash step (or the last
    # 80 rows); the earlier steps stay one click away.
    cut = max(0, (first_special - 25) if first_special is not None else len(body) - 80)
    folded = ""
    if cut > 0:
        folded = (
            f'<details class="earlier"><summary>{cut} earlier steps</summary>'
            f'<table class="timeline">{thead}<tbody>{"".join(body[:cut])}</tbody></table>'
            "</details>"
        )
    return f'{folded}<table class="timeline">{thead}<tbody>{"".join(body[cut:])}</tbody></table>'


def _side(sc: Scenario, r: Result) -> str:
    ops = "".join(
        f"<li><code>{_esc(o.op)}</code> on CPU {o.cpu}: <b>{_esc(v)}</b></li>"
        for o, v in zip(sc.ops, r.op_results, strict=False)
    )
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
        f"<div>ended: <b>{_esc(r.ended)}</b>; {r.steps} steps</div>"
        f'<div>op results:</div><ol class="ops">{ops}</ol>'
        f"<ul>{viols}</ul><div><b>VMCS cache of each CPU at the end"
        f"{' (the kexec check)' if r.kexec_checked else ''}</b></div>"
        f'<table class="cache">{cache_rows}</table></div>'
    )


def scenario_page(
    sc: Scenario,
    source: str,
    results: list[Result],
    findings: list[Finding],
    back: str | None = None,
) -> str:
    """A replay's page; ``back`` links to the index it belongs to (``vmxfuzz report``)."""
    title = sc.name or Path(source).stem
    fnd = "".join(
        f'<div class="finding {_esc(f.cls)}"><span class="cls {_esc(f.cls)}">{_esc(f.cls)}</span>'
        f"{_esc(f.invariant or 'observable results')} in {_esc(short_name(f.variant))} at "
        f"<code>{_esc(f.site)}</code>: {_esc(f.explanation)}</div>"
        for f in findings
    )
    variants = ",".join(r.variant for r in results)
    back_link = f'<a class="back" href="{_esc(back)}">&larr; all findings</a>' if back else ""
    aligned = (
        "<p class='desc'>Rows line up the same step (CPU, context, label) in both variants; "
        "a row with &mdash; on one side is a step only the other variant has.</p>"
        if len(results) == 2
        else ""
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
        f"<style>{CSS}</style></head><body>{back_link}<h1>{_esc(title)}</h1>"
        f'<p class="desc">{_esc(sc.description)}</p>'
        f"<p>replay: <code>vmxfuzz replay {_esc(source)} --variant {_esc(variants)}</code></p>"
        f"{fnd}{_legend(steps=True)}"
        f"<div class='sides'>{''.join(_side(sc, r) for r in results)}</div>"
        f"<h2>Timeline</h2>{aligned}{_timeline(results, sc.config.cpus)}"
        f"<script type='application/json' id='scenario'>{_esc(json.dumps(sc.to_json()))}</script>"
        "</body></html>"
    )


@dataclass
class DocRef:
    """A ``docs/findings.md`` entry a finding matches: its id, heading and link."""

    id: str
    title: str
    href: str | None
    how: str  # reproducer | cause | site | related


@dataclass
class Row:
    """One finding of the index: the summary's fields, its page, its doc entries."""

    finding: dict[str, Any]
    page: str | None
    docs: list[DocRef] = field(default_factory=list)


@dataclass
class Group:
    """Findings with one cause (or, without causes, one invariant at one site)."""

    title: str
    cause: str | None
    rows: list[Row] = field(default_factory=list)


def _window(w: dict[str, Any], pages: dict[str, str]) -> str:
    parts = []
    for k, v in w.items():
        if k == "reproducer":
            page = pages.get(str(v))
            text = f"<code>{_esc(v)}</code>"
            parts.append(f"<a href='{_esc(page)}'>{text}</a>" if page else text)
        elif isinstance(v, dict):
            inner = ", ".join(
                f"{_esc(short_name(str(a)))}: "
                + ("&mdash; (none)" if b is None else f"<code>{_esc(b)}</code>")
                for a, b in v.items()
            )
            parts.append(f"{_esc(k)}: {inner}")
        else:
            parts.append(f"{_esc(k)}: <code>{_esc(v)}</code>")
    return "; ".join(parts)


def _md_code(text: str) -> str:
    """Escaped text with markdown code spans (a findings.md heading's `vmxfuzz fuzz`)
    shown as code, not as literal backticks."""
    parts = _esc(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: leave the text as it is
        return _esc(text)
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _docrefs(docs: list[DocRef]) -> str:
    if not docs:
        return '<span class="docref">not described in docs/findings.md</span>'
    out = []
    for d in docs:
        # a section heading names its ids ("F01, F02: ..."); else say which id
        text = _md_code(d.title if d.id in d.title else f"{d.id}: {d.title}" if d.title else d.id)
        link = f"<a href='{_esc(d.href)}'>{text}</a>" if d.href else text
        note = " (related: same function)" if d.how == "related" else ""
        out.append(f'<span class="docref">docs/findings.md {link}{note}</span>')
    return "<br>".join(out)


def _group(g: Group, pages: dict[str, str]) -> str:
    rows = []
    for r in g.rows:
        f = r.finding
        windows = f.get("windows") or []
        wins = "".join(f"<li>{_window(w, pages)}</li>" for w in windows if isinstance(w, dict))
        repro = str(f.get("reproducer", ""))
        page = f"<a href='{_esc(r.page)}'>{_esc(Path(repro).name)}</a>" if r.page else _esc(repro)
        rows.append(
            f"<tr class='finding-row'><td class='nowrap'><span class='cls {_esc(f.get('class'))}'>"
            f"{_esc(f.get('class'))}</span></td>"
            f"<td class='nowrap'>{_esc(f.get('invariant') or '-')}</td>"
            f"<td class='nowrap'>{_esc(short_name(str(f.get('variant', ''))))}</td>"
            f"<td><code>{_esc(f.get('site'))}</code>"
            f"{f'<ul class=windows>{wins}</ul>' if wins else ''}</td>"
            f"<td>{_esc(f.get('explanation', ''))}</td><td>{page}<br>{_docrefs(r.docs)}</td></tr>"
        )
    cause = f"<div class='why'>cause <code>{_esc(g.cause)}</code></div>" if g.cause else ""
    return (
        f"<section class='group'><h2>{_esc(g.title)}</h2>{cause}"
        "<table class='windows'><tr><th>class</th><th>invariant</th><th>variant</th>"
        "<th>site / windows</th><th>explanation</th><th>reproducer, docs</th></tr>"
        f"{''.join(rows)}</table></section>"
    )


def index_page(
    title: str,
    details: list[tuple[str, str]],
    groups: list[Group],
    coverage: dict[str, Any] | None = None,
) -> str:
    pages = {str(r.finding.get("reproducer")): r.page for g in groups for r in g.rows if r.page}
    run = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in details)
    n = sum(len(g.rows) for g in groups)
    body = "".join(_group(g, pages) for g in groups) or "<p class='ok'>No findings.</p>"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{_esc(title)}</h1>"
        f"<h2>Run</h2><dl class='run' id='run'>{run}</dl>"
        f"<h2>Classes</h2>{_legend(steps=False)}"
        f"<h2 id='findings'>{n} finding(s) in {len(groups)} group(s)</h2>{body}"
        f"{coverage_section(coverage)}</body></html>"
    )


def write_page(path: Path, text: str) -> None:
    write_text_atomic(path, text)
