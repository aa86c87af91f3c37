"""Campaign progress and the closing summary table.

On a terminal a live ``rich`` display shows elapsed/budget, executions and findings by
class; in a log (not a TTY) or with ``--json`` it degrades to one plain line every few
seconds on stderr, so CI logs stay readable and stdout stays machine-readable.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .table import table_lines


class Progress:
    def __init__(self, budget: float, quiet: bool, every: float = 5.0) -> None:
        self.budget = budget
        self.quiet = quiet
        self.every = every
        self.started = time.monotonic()
        self.last = 0.0
        self.tty = sys.stderr.isatty() and not quiet
        self.live: Live | None = None
        if self.tty:
            self.live = Live(
                self._render(0, {}),
                console=Console(stderr=True),
                refresh_per_second=4,
                transient=True,
            )
            self.live.start()

    def _budget(self) -> str:
        """The time budget as shown (none when the run is bounded by a count)."""
        return "no time limit" if self.budget == float("inf") else f"{self.budget:.0f}s"

    def _render(
        self,
        examples: int,
        findings: dict[Any, dict[str, Any]],
        extra: dict[str, str] | None = None,
    ) -> Table:
        t = Table.grid(padding=(0, 2))
        elapsed = time.monotonic() - self.started
        by_class = Counter(f["class"] for f in findings.values())
        t.add_row("elapsed", f"{elapsed:6.1f}s / {self._budget()}")
        t.add_row("executions", f"{examples:,}")
        for key, val in (extra or {}).items():
            t.add_row(key, val)
        t.add_row(
            "findings",
            f"{len(findings)}  " + "  ".join(f"{k} {v}" for k, v in sorted(by_class.items())),
        )
        return t

    def update(
        self,
        examples: int,
        findings: dict[Any, dict[str, Any]],
        extra: dict[str, str] | None = None,
    ) -> None:
        """Refresh the display; ``extra`` adds rows (explore: programs, states)."""
        if self.quiet:
            return
        if self.live is not None:
            self.live.update(self._render(examples, findings, extra))
            return
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        by_class = Counter(f["class"] for f in findings.values())
        classes = ", ".join(f"{k} {v}" for k, v in sorted(by_class.items())) or "none"
        more = "".join(f"  {key} {val}" for key, val in (extra or {}).items())
        sys.stderr.write(
            f"[{now - self.started:6.1f}s/{self._budget()}] executions {examples}{more}"
            f"  findings {len(findings)} ({classes})\n"
        )

    def note(self, line: str) -> None:
        """A line that stays: above the live display on a terminal, else on stderr."""
        if self.live is not None:
            self.live.console.print(line, highlight=False, markup=False)
        elif not self.quiet:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def summary_table(summary: dict[str, Any], out: str) -> None:
    """The closing table (finding, class, invariant, variant, site; the reproducer on a
    line of its own), fitted to the terminal's width, 80 columns in a log."""
    findings = summary["findings"]
    width = shutil.get_terminal_size((80, 24)).columns
    if findings:
        for line in table_lines(findings, width):
            print(line)
    print(
        f"{len(findings)} finding(s) in {summary['elapsed_s']}s, "
        f"{summary['examples']} executions; summary: {out}"
    )
