"""``vmxfuzz report``: the pages of a campaign folder (or any folder of scenarios).

The index is built from the campaign's own record, ``summary.json`` (its run details
and findings, with their causes and windows when the campaign recorded them); a folder
without one is described by replaying its scenarios.  Each reproducer gets a timeline
page from a fresh replay.  Findings are grouped by cause, or by invariant and site
when no cause was recorded, and each is matched with its ``docs/findings.md`` entry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from ..differential import CLASSES, Finding
from ..executor import Result
from ..scenario import Scenario
from .findings_doc import FindingsDoc, load_doc
from .html import DocRef, Group, Row, index_page, scenario_page, write_page

Replay = Callable[[Scenario], tuple[list[Result], list[Finding]]]

# Run details shown first, in this order, under these names; any other scalar field of
# summary.json follows under its own name.  Several spellings are accepted for one
# detail so that fields added to the summary later show without a change here.
DETAILS: list[tuple[str, tuple[str, ...]]] = [
    ("engine", ("engine",)),
    ("variant(s)", ("variant", "variants")),
    ("seed", ("seed",)),
    ("time budget (s)", ("budget_s", "time_s", "budget", "time")),
    ("time taken (s)", ("elapsed_s",)),
    ("examples", ("examples",)),
    ("date", ("date", "started", "started_at", "finished", "finished_at")),
    ("vmxfuzz version", ("vmxfuzz_version", "version")),
    ("command", ("command", "argv")),
]


def _version() -> str:
    try:
        return metadata.version("vmxfuzz")
    except metadata.PackageNotFoundError:
        return "unknown"


def run_details(
    summary: dict[str, Any] | None, summary_path: Path | None, names: list[str]
) -> list[tuple[str, str]]:
    doc = summary or {}
    out: list[tuple[str, str]] = []
    used: set[str] = {"findings"}
    for label, keys in DETAILS:
        key = next((k for k in keys if doc.get(k) not in (None, "")), None)
        if key is not None:
            used.update(keys)
            value = doc[key]
            out.append(
                (label, " ".join(map(str, value)) if isinstance(value, list) else str(value))
            )
    for key, value in doc.items():
        if key not in used and isinstance(value, str | int | float | bool):
            out.append((key.replace("_", " "), str(value)))
    have = {label for label, _ in out}
    if "variant(s)" not in have:
        out.insert(0, ("variant(s)", ",".join(names)))
    if "date" not in have:
        when = (
            datetime.fromtimestamp(summary_path.stat().st_mtime, UTC)
            if summary_path is not None
            else datetime.now(UTC)
        )
        what = "summary.json written" if summary_path is not None else "report written"
        out.append(("date", f"{when:%Y-%m-%d %H:%M} UTC ({what})"))
    if "vmxfuzz version" not in have:
        out.append(("vmxfuzz version", f"{_version()} (of this report)"))
    return out


def _replayed_findings(
    path: Path, results: list[Result], found: list[Finding]
) -> list[dict[str, Any]]:
    """A folder without summary.json: its findings as a campaign would list them (or,
    for one variant, each violation)."""
    if found:
        return [{**f.to_json(), "reproducer": str(path)} for f in found]
    return [
        {
            "class": "violation",
            "invariant": v.invariant,
            "variant": r.variant,
            "site": v.site,
            "explanation": v.detail,
            "reproducer": str(path),
        }
        for r in results
        for v in r.violations
    ]


def _docs(doc: FindingsDoc | None, finding: dict[str, Any], out: Path) -> list[DocRef]:
    if doc is None:
        return []
    entries, how = doc.match(finding)
    base = os.path.relpath(doc.path, out)
    refs: dict[str, DocRef] = {}  # one link per section (F01 and F02 share one)
    for e in entries:
        href = f"{base}#{e.anchor}" if e.anchor else base
        key = href if e.anchor else e.id
        if key in refs:
            refs[key].id += f", {e.id}"
        else:
            refs[key] = DocRef(e.id, e.title, href, how)
    return list(refs.values())


def group(rows: list[Row]) -> list[Group]:
    """By cause when recorded, else by invariant and site; the order of the classes,
    then of the titles."""
    groups: dict[Any, Group] = {}
    for row in rows:
        f = row.finding
        cause = f.get("cause")
        key = ("cause", cause) if cause else ("site", f.get("invariant"), f.get("site"))
        if key not in groups:
            title = f.get("cause_text") or (
                f"{f.get('invariant') or 'observable results'} at {f.get('site')}"
            )
            groups[key] = Group(str(title), str(cause) if cause else None)
        groups[key].rows.append(row)
    rank = {c: i for i, c in enumerate(CLASSES)}

    def order(g: Group) -> tuple[int, str]:
        return (min(rank.get(r.finding.get("class", ""), len(rank)) for r in g.rows), g.title)

    return sorted(groups.values(), key=order)


def build_report(
    src: Path,
    out: Path,
    names: list[str],
    scenarios: list[tuple[Path, Scenario]],
    summary: dict[str, Any] | None,
    replay: Replay,
) -> int:
    """Write one page per scenario and the index; returns the number of pages."""
    pages: dict[str, str] = {}
    replayed: list[dict[str, Any]] = []
    for path, sc in scenarios:
        results, found = replay(sc)
        page = f"{path.stem}.html"
        write_page(out / page, scenario_page(sc, str(path), results, found, back="index.html"))
        pages[str(path)] = page
        replayed += _replayed_findings(path, results, found)
    doc = load_doc()
    listed = summary["findings"] if summary is not None else replayed
    rows = [
        Row(f, pages.get(str(f.get("reproducer"))), _docs(doc, f, out))
        for f in listed
        if isinstance(f, dict)
    ]
    summary_path = src / "summary.json" if summary is not None else None
    details = run_details(summary, summary_path, names)
    coverage = summary.get("coverage") if summary is not None else None
    index = index_page(f"vmxfuzz findings: {src}", details, group(rows), coverage)
    write_page(out / "index.html", index)
    return len(pages)
