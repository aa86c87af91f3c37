"""Reduce a scenario to a 1-minimal reproducer of one finding.

Delta debugging over the scenario's parts: drop operations, NMIs, injected faults and
schedule entries (in chunks first, then one at a time) while the finding (same class,
invariant and site) persists, until no single removal keeps it.  The loop runs to a
fixpoint, so the result is 1-minimal by construction: the last pass tried every single
removal and each one lost the finding.  Engine-agnostic: Hypothesis, atheris and
exploration findings all go through here.

Every candidate is a valid scenario (:func:`valid`, checked before it is tried): the
models enforce the kernel's serialisation rules themselves (an op on a VM or vCPU that
no longer exists returns ``-ENOENT``, an unload while a VM is open ``-EBUSY``), so
dropping an op never needs its dependants dropped with it; the one structural rule,
that the first op cannot be ``parallel``, is restored by :func:`_fixup`; a removal
the file format rejects (``weak_memory`` off while store-buffer entries remain) is
skipped.  Before removing parts, the machine configuration is simplified towards the
defaults (fewer CPUs, no quirks) where the finding survives,
which only makes reproducers easier to read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields, replace
from typing import Any, TypeVar

from .kernel.state import Config
from .machine.weakmem import action_cpu
from .scenario import Scenario, ScenarioError, from_json
from .sched import RunEntry

T = TypeVar("T")

PARTS = ("ops", "nmis", "preempts", "faults", "schedule")


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


def valid(sc: Scenario) -> bool:
    """The candidate would load back from its file: the minimiser's output is written
    as a reproducer, and a removal that the format rejects (e.g. ``weak_memory`` off
    while the schedule still has store-buffer entries, which the executor tolerates)
    would leave a file that fails to load.  Candidates that fail are never tried."""
    try:
        from_json(sc.to_json(), "<candidate>")
    except ScenarioError:
        return False
    return True


def reduce_part(
    sc: Scenario, part: str, keeps: Callable[[Scenario], bool], single_only: bool = False
) -> Scenario:
    items: tuple[Any, ...] = getattr(sc, part)
    chunk = 1 if single_only else max(1, len(items) // 2)
    while chunk >= 1:
        i = 0
        while i < len(items):
            cand = _with_part(sc, part, _without(items, i, i + chunk))
            if valid(cand) and keeps(cand):
                sc = cand
                items = getattr(sc, part)
            else:
                i += chunk
        chunk //= 2
    return sc


def _highest_cpu(sc: Scenario) -> int:
    """The highest CPU number the scenario's ops, schedule, NMIs and faults name."""
    used = [0]
    for o in sc.ops:
        used += [o.cpu] + ([o.target] if o.target is not None else [])
    used += [
        e if isinstance(e, int) else e.cpu if isinstance(e, RunEntry) else action_cpu(e)
        for e in sc.schedule
    ]
    used += [n.cpu for n in sc.nmis]
    used += [c for p in sc.preempts for c in (p.cpu, p.to)]
    used += [f.cpu for f in sc.faults if f.cpu is not None]
    return max(used)


def _simpler_configs(sc: Scenario) -> Iterator[Scenario]:
    """Candidate configurations one step closer to the defaults."""
    cfg, default = sc.config, Config()
    need = _highest_cpu(sc) + 1
    if cfg.cpus > need:
        keep = range(need)
        trimmed: dict[str, Any] = {
            f.name: tuple(c for c in getattr(cfg, f.name) if c in keep)
            for f in fields(Config)
            if isinstance(getattr(cfg, f.name), tuple)
        }
        yield replace(sc, config=replace(cfg, cpus=need, **trimmed))
    for f in fields(Config):
        if f.name == "cpus":
            continue
        value, plain = getattr(cfg, f.name), getattr(default, f.name)
        if value != plain:
            change: dict[str, Any] = {f.name: plain}
            yield replace(sc, config=replace(cfg, **change))


def simplify_config(sc: Scenario, keeps: Callable[[Scenario], bool]) -> Scenario:
    """Move the configuration towards the defaults while the finding survives."""
    changed = True
    while changed:
        changed = False
        for cand in _simpler_configs(sc):
            if valid(cand) and keeps(cand):
                sc, changed = cand, True
                break
    return sc


def minimize(sc: Scenario, keeps: Callable[[Scenario], bool]) -> Scenario:
    """The smallest scenario reachable by removals for which ``keeps`` holds.

    ``keeps(sc)`` must be true on entry; it is deterministic (a replay).  Every
    accepted step makes the scenario strictly smaller (or its configuration strictly
    plainer), so the fixpoint loop terminates.
    """
    while True:
        before = sc
        sc = simplify_config(sc, keeps)
        for part in PARTS:
            sc = reduce_part(sc, part, keeps)
        if sc == before:
            return sc


def is_one_minimal(sc: Scenario, keeps: Callable[[Scenario], bool]) -> bool:
    """No single op, NMI or injected fault (or schedule entry) can be removed
    (leaving a valid scenario)."""
    for part in PARTS:
        items = getattr(sc, part)
        for i in range(len(items)):
            cand = _with_part(sc, part, _without(items, i, i + 1))
            if valid(cand) and keeps(cand):
                return False
    return True
