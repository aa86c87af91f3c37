"""What an explore verdict is scoped to: known findings (``--known DIR``) and ignored
causes (``--ignore CAUSE``).

Why by cause: a reviewer's claim is "no violation other than the known F04, within
the bound"; F04 is its cause (vmxfuzz/causes.py), whatever window a search reaches it
through and whichever pair of variants shows it.  A ``--known`` folder is either a
campaign output (its ``summary.json`` lists findings with their causes) or a folder
of reproducers (each file's ``expect.causes``, or what it shows when replayed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .causes import is_cause_id


class ScopeError(ValueError):
    """Bad ``--known`` / ``--ignore`` input: the message names the argument."""


@dataclass
class Scope:
    known: dict[str, str] = field(default_factory=dict)  # cause -> where it is known from
    ignored: tuple[str, ...] = ()
    source: str | None = None

    def why(self, entry: dict[str, Any]) -> str | None:
        """``known`` / ``ignored`` when a finding is out of the verdict's scope."""
        cause = entry.get("cause") or ""
        if cause in self.ignored:
            return "ignored"
        if cause in self.known:
            return "known"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "known": self.source,
            "known_causes": sorted(self.known),
            "ignored": list(self.ignored),
        }


def _replayed_causes(path: Path) -> set[str]:
    from .differential import roots, run_both
    from .scenario import load

    d = run_both(load(path), keep_trace=False)
    return {v.cause for r in (d.reference, d.patched) for v in roots(r)[0]}


def _from_summary(path: Path) -> dict[str, str]:
    try:
        doc = json.loads(path.read_text())
        found = doc["findings"]
        if not isinstance(found, list):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ScopeError(f"{path}: --known: not a campaign summary ({e})") from None
    out: dict[str, str] = {}
    for f in found:
        if not isinstance(f, dict):
            continue
        if f.get("cause"):
            out.setdefault(str(f["cause"]), str(f.get("reproducer", path)))
        elif f.get("reproducer") and Path(f["reproducer"]).is_file():  # an old summary
            for c in _replayed_causes(Path(f["reproducer"])):
                out.setdefault(c, str(f["reproducer"]))
    return out


def _from_reproducers(folder: Path) -> dict[str, str]:
    from .scenario import ScenarioError, load

    out: dict[str, str] = {}
    files = sorted(folder.glob("*.json"))
    loaded = 0
    for p in files:
        try:
            sc = load(p)
        except ScenarioError:
            continue
        loaded += 1
        pinned = (sc.expect or {}).get("causes")
        causes = (
            {c for ids in pinned.values() for c in ids}
            if isinstance(pinned, dict)
            else _replayed_causes(p)
        )
        for c in causes:
            out.setdefault(c, str(p))
    if not loaded:
        raise ScopeError(
            f"{folder}: --known: not a campaign output (no summary.json) nor a folder of "
            "reproducer scenarios"
        )
    return out


def load_scope(known: str | None, ignore: list[str]) -> Scope:
    """Read ``--known`` and check ``--ignore``; every problem is a :class:`ScopeError`."""
    bad = [c for c in ignore if not is_cause_id(c)]
    if bad:
        raise ScopeError(f"--ignore: unknown cause {bad[0]!r} (ids are listed in docs/findings.md)")
    scope = Scope(ignored=tuple(dict.fromkeys(ignore)))
    if known is None:
        return scope
    path = Path(known)
    if not path.is_dir():
        raise ScopeError(f"{path}: --known: no such directory")
    summary = path / "summary.json"
    scope.known = _from_summary(summary) if summary.is_file() else _from_reproducers(path)
    scope.source = str(path)
    return scope
