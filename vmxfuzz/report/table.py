"""The closing summary table of a campaign, laid out for a terminal of ``width`` columns.

One finding per row: number, class, invariant, variant, site; then, indented below it,
its cause (when the campaign recorded one) and the full reproducer path, once, on its
own line so it can be copied whole (without its label when the two do not fit).
Identifiers are never split in the middle of a word: a site too long for its column
wraps after one of its separators (``:`` ``@`` ``,`` ``/``), and a variant name too
long for its column (a plug-in path) is shortened with an ellipsis; the reproducer
line says the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ..variants import short_name

NUM, CLS_MAX, INV_MAX, VAR_MAX, SITE_MIN = 3, 10, 23, 10, 16
GAP = " "


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def wrap_identifier(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width``, broken only after a separator (a piece
    longer than a line is cut, the last resort)."""
    pieces = [p for p in re.split(r"(?<=[:@,/ ])", text) if p]
    lines: list[str] = []
    line = ""
    for piece in pieces:
        while len(piece) > width:
            if line:
                lines.append(line)
                line = ""
            lines.append(piece[:width])
            piece = piece[width:]
        if len(line) + len(piece) > width:
            lines.append(line.rstrip())
            line = ""
        line += piece
    if line or not lines:
        lines.append(line)
    return lines


def table_lines(findings: list[dict[str, Any]], width: int = 80) -> Iterable[str]:
    width = max(width, 60)
    # Plug-ins by their file stem (``patched+fix``); summary.json keeps the paths.
    findings = [{**f, "variant": short_name(str(f.get("variant", "")))} for f in findings]

    def col(name: str, cap: int) -> int:
        return min(cap, max([len(name)] + [len(str(f.get(name) or "-")) for f in findings]))

    cls_w, inv_w, var_w = col("class", CLS_MAX), col("invariant", INV_MAX), col("variant", VAR_MAX)
    site_w = max(SITE_MIN, width - (NUM + cls_w + inv_w + var_w + 4 * len(GAP)))
    head = [f"{'#':>{NUM}}", f"{'class':{cls_w}}", f"{'invariant':{inv_w}}", f"{'variant':{var_w}}"]
    yield GAP.join([*head, "site"])
    indent = " " * (NUM + len(GAP))
    for i, f in enumerate(findings, 1):
        site = wrap_identifier(str(f.get("site", "")), site_w)
        cells = [
            f"{i:>{NUM}}",
            f"{_short(f.get('class', ''), cls_w):{cls_w}}",
            f"{_short(f.get('invariant') or '-', inv_w):{inv_w}}",
            f"{_short(f.get('variant', ''), var_w):{var_w}}",
        ]
        yield GAP.join([*cells, site[0]]).rstrip()
        pad = " " * len(GAP.join(cells) + GAP)
        for more in site[1:]:
            yield pad + more
        if f.get("cause"):
            for n, line in enumerate(wrap_identifier(str(f["cause"]), width - len(indent) - 7)):
                yield indent + ("cause: " if n == 0 else "       ") + line
        path = str(f.get("reproducer", ""))
        label = "reproducer: " if len(indent) + 12 + len(path) <= width else ""
        yield f"{indent}{label}{path}"  # whole, so it can be copied
