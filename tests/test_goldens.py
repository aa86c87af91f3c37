"""Soundness of the stepping core: every shipped scenario replays to the identical
Result (trace, op results, violations, steps) as on the base commit the goldens were
generated from (``tests/goldens/generate.py``), with and without a trace kept."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "goldens"))
from compute import HERE, cases, digest

from vmxfuzz.executor import run

GOLDEN = json.loads((HERE / "results.json").read_text())["results"]
CASES = list(cases())


def test_every_golden_is_still_a_case() -> None:
    names = {name for name, _, _ in CASES}
    assert set(GOLDEN) <= names
    assert len(GOLDEN) > 300  # the shipped files and the stored sample


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in GOLDEN], ids=lambda c: c[0])
def test_replays_identically_to_the_base(case: tuple[str, object, tuple[str, ...]]) -> None:
    name, sc, variants = case
    for variant in variants:
        full = run(sc, variant, keep_trace=True)  # type: ignore[arg-type]
        assert digest(full) == GOLDEN[name][variant], f"{name} on {variant}"
        lean = run(sc, variant, keep_trace=False)  # type: ignore[arg-type]
        assert lean.to_json() == full.to_json(), f"{name} on {variant} without a trace"


def test_explore_state_counts_on_the_seed_bound_are_the_base_ones() -> None:
    """The core's changes are invisible to state hashing: the documented bound (seed
    program, 1 NMI, setup fixed) has the same states as on the base (docs/performance.md:
    634/572 on 155cb2b; 679/614 since issue 14 added the prepare_guest_switch hook and
    the preemption-point steps to every KVM_RUN)."""
    from helpers import explored_seed_bound

    for variant, states in (("reference", 679), ("patched", 614)):
        assert explored_seed_bound(variant).stats.states == states, variant
