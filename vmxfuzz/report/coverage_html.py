"""The index page's "what the campaign did not reach" section, from ``summary.json``
``coverage`` (:mod:`vmxfuzz.coverage`): per variant how much of the model ran, the
functions, labels and fault sites no run reached, the NMI sites hit, and the pairs of
flows that ran concurrently."""

from __future__ import annotations

from html import escape
from typing import Any


def _list(items: list[str], limit: int = 400) -> str:
    shown = " ".join(f"<code>{escape(i)}</code>" for i in items[:limit])
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return (shown + more) or "(none)"


def coverage_section(coverage: dict[str, Any] | None) -> str:
    """HTML for one campaign's coverage map; empty when the summary has none."""
    if not coverage or not coverage.get("variants"):
        return ""
    parts = ["<h2>Coverage: what the campaign did not reach</h2>"]
    for name, v in sorted(coverage["variants"].items()):
        parts.append(
            f"<h3>{escape(name)}</h3><p>functions reached {v['functions_reached']} of "
            f"{v['functions_total']}, step labels {v['labels_reached']} of "
            f"{v['labels_total']}, fault sites hit {len(v['fault_sites'])}, "
            f"NMI sites hit {len(v['nmi_sites'])}</p>"
            f"<details><summary>unreached functions ({len(v['unreached_functions'])})"
            f"</summary><p>{_list(v['unreached_functions'])}</p></details>"
            f"<details><summary>unreached step labels ({len(v['unreached_labels'])})"
            f"</summary><p>{_list(v['unreached_labels'])}</p></details>"
            f"<details><summary>fault sites never hit ({len(v['unreached_fault_sites'])})"
            f"</summary><p>{_list(v['unreached_fault_sites'])}</p></details>"
            f"<details><summary>NMI sites hit ({len(v['nmi_sites'])})</summary>"
            f"<p>{_list(sorted(v['nmi_sites']))}</p></details>"
        )
    pairs = coverage.get("op_pairs", {})
    rows = "".join(
        f"<tr><td><code>{escape(p)}</code></td><td>{n}</td></tr>"
        for p, n in sorted(pairs.items(), key=lambda kv: -kv[1])
    )
    parts.append(
        f"<details><summary>flows that ran concurrently ({len(pairs)} pairs)</summary>"
        f"<table class='cache'><tr><th>pair</th><th>runs</th></tr>{rows}</table></details>"
    )
    return "<section class='coverage'>" + "".join(parts) + "</section>"
