"""Which entry of ``docs/findings.md`` a finding is: read from the document itself.

The document keeps a table (id, class, invariant, site, reproducer) and one section per
finding or group of findings (``## F01, F02: ...``).  A finding of a report matches an
entry, strongest evidence first, when

1. its reproducer has the entry's reproducer file name (a report of
   ``tests/regressions``), or
2. its ``cause`` id is in the entry's ``cause`` column or named in its section, or
3. its invariant is one of the entry's invariants and its site is one of the labels in
   the entry's site column, either whole or as the step a kexec leak names
   (``machine_kexec:vmcs@list_add:publish`` names ``list_add:publish``), or, weakest
   (reported as "related"), that step is in a function the column names;

among several matches of the same strength, those whose class column names the
finding's class are kept.  Nothing here knows a particular finding: a new row or
section in the document is picked up as it is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LABEL = re.compile(r"[A-Za-z_]\w*:[\w@:]+")
WORD = re.compile(r"[a-z][a-z-]*")
HEADING = re.compile(r"^##\s+(.*)$")
ENTRY_ID = re.compile(r"\bF\d+\b")


@dataclass(frozen=True)
class Entry:
    id: str
    classes: frozenset[str]
    invariants: frozenset[str]
    sites: frozenset[str]
    reproducer: str
    causes: frozenset[str] = frozenset()  # the cause ids of its `cause` column
    title: str = ""  # the heading of the entry's section
    anchor: str = ""  # that heading's anchor, as Markdown renderers make it
    text: str = ""  # the section's text


@dataclass
class FindingsDoc:
    path: Path
    entries: list[Entry] = field(default_factory=list)

    def match(self, finding: dict[str, Any]) -> tuple[list[Entry], str]:
        """The entries a finding matches and how (``reproducer``, ``cause``, ``site`` or
        ``related``); ``([], "")`` when none does."""
        name = Path(str(finding.get("reproducer") or "")).name
        by_file = [e for e in self.entries if name and e.reproducer == name]
        if by_file:
            return by_file, "reproducer"
        cause = str(finding.get("cause") or "")
        if cause:
            named = re.compile(rf"`{re.escape(cause)}`")
            by_cause = [e for e in self.entries if cause in e.causes or named.search(e.text)]
            if by_cause:
                return self._prefer_class(by_cause, finding), "cause"
        site = str(finding.get("site") or "")
        steps = {site, site.split("@", 1)[1]} if "@" in site else {site}
        same_inv = [e for e in self.entries if finding.get("invariant") in e.invariants]
        by_site = [e for e in same_inv if steps & e.sites]
        if by_site:
            return self._prefer_class(by_site, finding), "site"
        step = site.split("@", 1)[-1]  # a kexec leak: the step, not the detection point
        funcs = {step.split(":", 1)[0]}
        related = [e for e in same_inv if funcs & {s.split(":", 1)[0] for s in e.sites}]
        if related:
            return self._prefer_class(related, finding), "related"
        return [], ""

    @staticmethod
    def _prefer_class(entries: list[Entry], finding: dict[str, Any]) -> list[Entry]:
        same = [e for e in entries if finding.get("class") in e.classes]
        return same or entries


def slug(heading: str) -> str:
    """The anchor GitHub-style renderers give a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def parse(text: str, path: Path) -> FindingsDoc:
    rows: list[dict[str, str]] = []
    columns = ["id", "class", "invariant", "site", "reproducer"]  # until a header says
    sections: dict[str, tuple[str, str]] = {}  # entry id -> (heading, section text)
    heading, body = "", list[str]()
    for line in [*text.splitlines(), "## end"]:
        m = HEADING.match(line)
        if m:
            for eid in ENTRY_ID.findall(heading.split(":", 1)[0]):
                sections[eid] = (heading, "\n".join(body))
            heading, body = m.group(1), []
            continue
        body.append(line)
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells and cells[0].lower() == "id":
            columns = [c.lower() for c in cells]
        elif line.startswith("|") and len(cells) >= 5 and ENTRY_ID.fullmatch(cells[0]):
            rows.append(dict(zip(columns, cells, strict=False)))
    doc = FindingsDoc(path)
    for row in rows:
        eid = row["id"]
        title, body_text = sections.get(eid, ("", ""))
        doc.entries.append(
            Entry(
                id=eid,
                classes=frozenset(WORD.findall(row.get("class", ""))),
                invariants=frozenset(WORD.findall(row.get("invariant", ""))),
                sites=frozenset(LABEL.findall(row.get("site", ""))),
                reproducer=row.get("reproducer", "").strip("`"),
                causes=frozenset(re.findall(r"`([^`]+)`", row.get("cause", ""))),
                title=title,
                anchor=slug(title) if title else "",
                text=body_text,
            )
        )
    return doc


def locate() -> Path | None:
    """``docs/findings.md`` of this checkout (editable installs), else of the current
    directory; None when neither has one (a wheel install elsewhere)."""
    here = Path(__file__).resolve().parents[2] / "docs" / "findings.md"
    for candidate in (here, Path.cwd() / "docs" / "findings.md"):
        if candidate.is_file():
            return candidate
    return None


def load_doc(path: Path | None = None) -> FindingsDoc | None:
    path = path or locate()
    if path is None:
        return None
    try:
        return parse(path.read_text(encoding="utf-8"), path)
    except (OSError, UnicodeDecodeError):
        return None
