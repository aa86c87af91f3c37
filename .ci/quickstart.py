"""CI's reading of the README: print its Quick start commands, or judge what they did.

``python3 .ci/quickstart.py commands README.md`` prints the indented code lines of the
"## Quick start" section, one command a line, in order: CI runs exactly those.

``python3 .ci/quickstart.py judge LOG`` judges the ``vmxfuzz`` calls those commands
made, from the log CI's ``vmxfuzz`` wrapper writes (one line per call: the exit status,
a tab, the arguments as a JSON list; relative paths are relative to the checkout).  A
campaign's exit status 1 means "found something", which a one-minute campaign does, so
a call is judged by its outputs instead: ``vmxfuzz fuzz --out DIR`` must leave a valid
``DIR/summary.json`` and ``vmxfuzz report DIR [-o OUT]`` a ``report/index.html`` that
links every finding's page.  Exit 2 (bad input) and above (internal error) always fail.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from pathlib import Path


def commands(readme: Path) -> list[str]:
    out: list[str] = []
    section = ""
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif section == "Quick start" and line.startswith("    ") and line.strip():
            out.append(line[4:])
    return out


def _option(args: list[str], *names: str) -> str | None:
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.update(v for k, v in attrs if k == "href" and v)


def _summary(folder: Path) -> list[str]:
    problems = []
    path = folder / "summary.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        findings = doc["findings"]
        assert isinstance(findings, list)
    except (OSError, ValueError, KeyError, AssertionError) as e:
        return [f"{path}: not a valid campaign summary ({e})"]
    for f in findings:
        if not Path(f.get("reproducer", "")).is_file():
            problems.append(f"{path}: reproducer {f.get('reproducer')!r} is missing")
    return problems


def _report(folder: Path, out: Path) -> list[str]:
    index = out / "index.html"
    try:
        parser = _Links()
        parser.feed(index.read_text(encoding="utf-8"))
    except OSError as e:
        return [f"{index}: not written ({e})"]
    problems = []
    try:
        findings = json.loads((folder / "summary.json").read_text(encoding="utf-8"))["findings"]
    except (OSError, ValueError, KeyError):
        findings = []
    for f in findings:
        page = f"{Path(f['reproducer']).stem}.html"
        if page not in parser.hrefs or not (out / page).is_file():
            problems.append(f"{index}: no page for the finding {f['reproducer']}")
    return problems


def judge(log: Path) -> int:
    calls = [line.split("\t", 1) for line in log.read_text(encoding="utf-8").splitlines()]
    if not calls:
        print("ci: the Quick start ran no vmxfuzz command", file=sys.stderr)
        return 1
    problems: list[str] = []
    for rc_text, argv_json in calls:
        rc, args = int(rc_text), json.loads(argv_json)
        what = "vmxfuzz " + " ".join(args)
        verb = args[0] if args else ""
        if rc >= 2 or (rc == 1 and verb != "fuzz"):
            problems.append(f"{what}: exit {rc}")
        if verb == "fuzz":
            problems += _summary(Path(_option(args, "--out") or "findings"))
        elif verb == "report" and len(args) > 1:
            folder = Path(args[1])
            problems += _report(folder, Path(_option(args, "-o", "--output") or folder / "report"))
        print(f"ci: {what}: exit {rc}")
    for p in problems:
        print(f"ci: Quick start: {p}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "commands":
        found = commands(Path(argv[1]))
        if not found:
            print(f"ci: {argv[1]}: no commands under '## Quick start'", file=sys.stderr)
            return 1
        print("\n".join(found))
        return 0
    if len(argv) == 2 and argv[0] == "judge":
        return judge(Path(argv[1]))
    print("usage: quickstart.py commands README.md | judge LOG", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
