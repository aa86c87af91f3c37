"""Shared test helpers: campaign output checks (Hypothesis and atheris tests), scenario
shorthands, test variants and model-flow drivers (model, invariant and CLI tests)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from vmxfuzz.campaign import keys
from vmxfuzz.differential import roots
from vmxfuzz.executor import Result
from vmxfuzz.fuzzcmd import fuzz
from vmxfuzz.kernel.state import Config
from vmxfuzz.machine.faults import FaultSpec
from vmxfuzz.scenario import Op, Scenario, load
from vmxfuzz.sched import NmiSpec
from vmxfuzz.variants import build


@cache
def explored_seed_bound(variant: str) -> Any:
    """The documented exploration bound (seed program, 1 NMI, 4 setup ops), explored once
    per test process: several tests read the same exploration (its findings, its state
    count, its fingerprints) and it is one of the suite's most expensive computations.
    Callers must not modify the returned :class:`~vmxfuzz.explore.Explorer`."""
    from dataclasses import replace

    from vmxfuzz.explore import Bound, Explorer

    seed = load(Path(__file__).resolve().parent.parent / "examples" / "seed-nmi-in-list-add.json")
    ex = Explorer(replace(seed, schedule=(), nmis=(), faults=()), variant, Bound(nmis=1, setup=4))
    assert ex.explore()
    return ex


def campaign(
    out: Path, engine: str, variant: str, examples: int, seed: int, workers: int = 1
) -> tuple[int, dict[str, Any]]:
    """Run a short campaign quietly, bounded by ``examples`` (no time limit: the same
    campaign on any machine, however loaded); return its exit code and summary."""
    code = fuzz(
        engine=engine,
        variant=variant,
        budget=math.inf,
        seed_value=seed,
        out=out,
        workers=workers,
        as_json=True,
        max_examples=examples,
    )
    return code, json.loads((out / "summary.json").read_text())


def assert_summary_sound(out: Path, doc: dict[str, Any], code: int, variant: str) -> None:
    """Exit code agrees, keys are unique, one file per window of each finding, every
    window's reproducer replays to its finding's key."""
    assert code == (1 if doc["findings"] else 0)
    found = [(f["class"], f["invariant"], f["cause"]) for f in doc["findings"]]
    assert [f["key"] for f in doc["findings"]] == [" ".join(k) for k in found]
    assert len(found) == len(set(found)), "no duplicates"
    files = [p for p in out.glob("*.json") if p.name != "summary.json"]
    wins = [w for f in doc["findings"] for w in f["windows"]]
    assert len(files) == len(wins), "one reproducer per window, nothing lost"
    for f, key in zip(doc["findings"], found, strict=True):
        assert f["reproducer"] == f["windows"][0]["reproducer"]
        for w in f["windows"]:
            assert key in keys(load(w["reproducer"]), variant), "every window replays"


# ---- scenarios, variants and model flows (test_list, test_invariants, test_examples, ...) ----
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def example_files() -> list[Path]:
    """The shipped example scenarios (plug-ins under examples/plugins are not scenarios)."""
    return sorted(EXAMPLES.glob("*.json"))


def variant(base: str, **overrides: Callable[..., Any]) -> SimpleNamespace:
    """A test variant: ``base``'s function namespace with some kernel functions replaced."""
    return SimpleNamespace(**{**vars(build(base)), **overrides})


LOAD = Op("module_load")


def create_vm(vm: str = "vm0", cpu: int = 0, parallel: bool = False) -> Op:
    return Op("create_vm", cpu, parallel=parallel, vm=vm)


def create_vcpu(vcpu: str, cpu: int = 0, vm: str = "vm0", parallel: bool = False) -> Op:
    return Op("create_vcpu", cpu, parallel=parallel, vm=vm, vcpu=vcpu)


def run_vcpu(vcpu: str, cpu: int, parallel: bool = False) -> Op:
    return Op("run_vcpu", cpu, parallel=parallel, vcpu=vcpu)


def scenario(
    *ops: Op,
    cpus: int = 2,
    schedule: Iterable[int] = (),
    nmis: Iterable[NmiSpec] = (),
    faults: Iterable[FaultSpec] = (),
    **config: Any,
) -> Scenario:
    return Scenario(
        tuple(ops), Config(cpus=cpus, **config), tuple(schedule), tuple(nmis), tuple(faults)
    )


def violations(r: Result) -> list[tuple[str, str, str | None, int | None]]:
    """Each violation as (invariant, site, context, cpu), in report order."""
    return [(v.invariant, v.site, v.context, v.cpu) for v in r.violations]


def drain(flow: Any) -> list[Any]:
    """Run a model flow to completion outside any scheduler; return what it yielded."""
    return list(flow)


def assert_causes(sc: Any, d: Any) -> None:
    """The ``causes`` an ``expect`` block pins: each variant's root causes (violations
    that are not consequences of another in the same run)."""
    assert "causes" in sc.expect, "every pinned reproducer pins its causes"
    for name, res in (("reference", d.reference), ("patched", d.patched)):
        got = sorted({v.cause for v in roots(res)[0]})
        assert got == sorted(sc.expect["causes"][name]), name
