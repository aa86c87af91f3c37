"""The Hypothesis engine: generate scenarios, let Hypothesis shrink each new finding.

A probe test runs generated scenarios through the campaign's judge.  A scenario that
shows a finding not seen before raises an exception class made for that finding's
key, so Hypothesis shrinks each distinct finding separately (``report_multiple_bugs``)
and saves it in the example database (shared by workers, replayed by later runs).
With ``shrink`` the last failing example seen per key is Hypothesis' shrunk one,
handed over at the end of the round; without (the default) each new finding is
handed over the moment the search sees it, so its ``found_after_s`` is the time of
first detection (a round with a target phase can last minutes).  The campaign then
makes it 1-minimal.  Rounds repeat with new seeds until the time budget is spent;
keys already found no longer fail, so every round hunts for new ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, event, given, seed, settings, target
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException

from ..campaign import Hit
from ..coverage import Stats, observing
from ..exampledb import open_database
from ..scenario import Scenario
from ..variants import split_pair
from .strategies import scenarios


class FoundNew(Exception):
    """Raised inside the probe for a finding not seen before (one subclass per key)."""


_CLASSES: dict[Any, type[FoundNew]] = {}


def _exception_for(key: Any) -> type[FoundNew]:
    cls = _CLASSES.get(key)
    if cls is None:
        cls = type(f"Found_{len(_CLASSES)}", (FoundNew,), {"key": key})
        _CLASSES[key] = cls
    return cls


class ToolError(RuntimeError):
    """A crash of the tool itself (never confused with a finding)."""


def _check(exc: BaseException) -> None:
    """Re-raise anything that is neither a finding nor Hypothesis bookkeeping."""
    group = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
    for e in group:
        if isinstance(e, BaseExceptionGroup):
            _check(e)
        elif not isinstance(e, FoundNew | HypothesisException):
            raise ToolError(f"model or engine crashed: {e!r}") from e


_SPENT = Scenario(())  # what the strategy yields once the budget is spent


def _until(
    strategy: st.SearchStrategy[Scenario], spent: Callable[[], bool]
) -> st.SearchStrategy[Scenario]:
    """``strategy`` until ``spent()``, then an empty scenario at no cost: a round's
    remaining examples (and its target phase) must not run pre-runs past the budget."""

    @st.composite
    def draw_until(draw: st.DrawFn) -> Scenario:
        return _SPENT if spent() else draw(strategy)

    return draw_until()


def hunt(
    new_hits: Callable[[Scenario], list[Hit]],
    on_found: Callable[[Hit, Scenario], None],
    *,
    variant: str,
    budget_s: float,
    seed_value: int,
    database: Path | str | None,
    round_examples: int = 300,
    tick: Callable[[int], None] | None = None,
    nested: bool | None = None,
    shrink: bool = False,
    stats: Stats | None = None,
    max_examples: int | None = None,
) -> int:
    """Search until ``budget_s`` elapses or ``max_examples`` examples have run,
    whichever comes first; returns the number of examples run.  A count budget with
    a fixed ``seed_value`` (and a fresh database) is the same search on any machine.

    ``shrink`` adds Hypothesis' own shrink phase before the campaign's minimiser.  It
    is off by default so that the budget goes to the search: the campaign's delta
    debugging makes every reproducer 1-minimal either way.

    Every example's runs feed ``stats`` (shape counts and the coverage map): each
    shape is also a Hypothesis ``event()``, and the run's novelty (what the map had
    not seen) is ``target()``-ed, so generation climbs toward unexplored behaviour.
    """
    stats = stats if stats is not None else Stats()
    variants = split_pair(variant) or (variant,)
    deadline = time.monotonic() + budget_s
    stop: list[BaseException] = []  # raised by on_found: end the hunt
    reported: set[Any] = set()

    def spent() -> bool:
        if stop or (max_examples is not None and examples >= max_examples):
            return True
        return time.monotonic() >= deadline

    examples = 0
    strategy = _until(scenarios(variants=variants, nested=nested), spent)
    db = open_database(str(database)) if database else None  # a directory or redis://
    rnd = 0
    last: dict[Any, tuple[Hit, Scenario]] = {}
    while not spent():
        last.clear()

        @settings(
            database=db,
            max_examples=round_examples,
            deadline=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=True,
            phases=(
                Phase.reuse,
                Phase.generate,
                Phase.target,
                *((Phase.shrink,) if shrink else ()),
            ),
            verbosity=Verbosity.quiet,
            print_blob=False,
        )
        @seed(seed_value * 100_003 + rnd)
        @given(strategy)
        def probe(sc: Scenario) -> None:
            nonlocal examples
            if spent():
                return
            examples += 1
            if tick is not None:
                tick(examples)
            with observing() as seen:
                hits = new_hits(sc)
            shapes, novelty = stats.add(seen.runs)
            for shape in shapes:
                event(shape)
            target(float(novelty), label="novelty")
            if not hits:
                return
            if shrink:
                last[hits[0].ident] = (hits[0], sc)  # Hypothesis' shrunk one, at round end
            else:  # record now: found_after_s is when the search saw it
                for hit in hits:
                    if hit.ident not in reported:
                        reported.add(hit.ident)
                        try:
                            on_found(hit, sc)
                        except BaseException as e:  # the caller stops the hunt
                            stop.append(e)
                            return
            raise _exception_for(hits[0].ident)()  # so Hypothesis saves it in the database

        try:
            probe()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            _check(exc)
        if stop:
            raise stop[0]
        for hit, sc in last.values():
            on_found(hit, sc)
        rnd += 1
    return examples
