"""Reduce a scenario to a 1-minimal reproducer of one finding.

Delta debugging over the scenario's parts: drop operations, NMIs, injected faults and
schedule entries (in chunks first, then one at a time) while the finding (same class,
invariant and site) persists, until no single removal keeps it.  The result is
1-minimal by construction: the final pass tried every single removal and each one
lost the finding.  Engine-agnostic: Hypothesis, atheris and exploration findings all
go through here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from .scenario import Scenario

T = TypeVar("T")

PARTS = ("ops", "nmis", "faults", "schedule")


def _without(items: Sequence[T], start: int, stop: int) -> tuple[T, ...]:
    return tuple(items[:start]) + tuple(items[stop:])


def _with_part(sc: Scenario, part: str, items: tuple[Any, ...]) -> Scenario:
    changes: dict[str, Any] = {part: items}
    return _fixup(replace(sc, **changes))


def _fixup(sc: Scenario) -> Scenario:
    """Keep a reduced scenario valid: a lone first op cannot be ``parallel``."""
    if sc.ops and sc.ops[0].parallel:
        return replace(sc, ops=(replace(sc.ops[0], parallel=False), *sc.ops[1:]))
    return sc


def reduce_part(
    sc: Scenario, part: str, keeps: Callable[[Scenario], bool], single_only: bool = False
) -> Scenario:
    items: tuple[Any, ...] = getattr(sc, part)
    chunk = 1 if single_only else max(1, len(items) // 2)
    while chunk >= 1:
        i = 0
        while i < len(items):
            cand = _with_part(sc, part, _without(items, i, i + chunk))
            if keeps(cand):
                sc = cand
                items = getattr(sc, part)
            else:
                i += chunk
        chunk //= 2
    return sc


def minimize(sc: Scenario, keeps: Callable[[Scenario], bool], max_rounds: int = 20) -> Scenario:
    """The smallest scenario reachable by removals for which ``keeps`` holds.

    ``keeps(sc)`` must be true on entry; it is deterministic (a replay).
    """
    for _ in range(max_rounds):
        before = sc
        for part in PARTS:
            sc = reduce_part(sc, part, keeps)
        if sc == before:
            break
    return sc


def is_one_minimal(sc: Scenario, keeps: Callable[[Scenario], bool]) -> bool:
    """No single op, NMI or injected fault (or schedule entry) can be removed."""
    for part in PARTS:
        items = getattr(sc, part)
        for i in range(len(items)):
            if keeps(_with_part(sc, part, _without(items, i, i + 1))):
                return False
    return True
