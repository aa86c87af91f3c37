"""Scenario serialisation (``to_json``/``from_json`` round trip, a Hypothesis property
over generated :class:`Scenario` objects) and the executor's op grouping (``parallel``).
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from helpers import LOAD, create_vcpu, create_vm, example_files, run_vcpu, scenario
from hypothesis import given
from hypothesis import strategies as st

from vmxfuzz.differential import CLASSES
from vmxfuzz.executor import groups, run
from vmxfuzz.kernel.state import Config
from vmxfuzz.labels import known_labels
from vmxfuzz.machine.faults import SITES, FaultSpec
from vmxfuzz.oracle import INVARIANTS
from vmxfuzz.scenario import (
    FORMAT,
    NESTED_OPS,
    OPS,
    RESTART_OPS,
    Op,
    Scenario,
    from_json,
    load,
    schema,
)
from vmxfuzz.sched import NmiSpec

LABELS = sorted(known_labels())
NAME = st.from_regex(r"[A-Za-z0-9_.-]{1,8}", fullmatch=True)
CPU_LISTS = ("bios_disabled", "cr4_mismatch", "vmx_caps_mismatch", "no_vmx")


@st.composite
def ops_for(draw: st.DrawFn, ncpus: int) -> Op:
    names = [o for o in sorted(OPS) if ncpus > 1 or "target" not in OPS[o]]
    name = draw(st.sampled_from(names))
    cpu = draw(st.integers(0, ncpus - 1))
    need = OPS[name]
    target = None
    if "target" in need:
        target = draw(st.sampled_from([c for c in range(ncpus) if c != cpu]))
    return Op(
        op=name,
        cpu=cpu,
        parallel=draw(st.booleans()),
        vm=draw(NAME) if "vm" in need else None,
        vcpu=draw(NAME) if "vcpu" in need else None,
        target=target,
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(1, 8))
    cpu = st.integers(0, n - 1)

    def cpus() -> tuple[int, ...]:
        return tuple(draw(st.lists(cpu, unique=True, max_size=n)))

    config = Config(
        cpus=n,
        kexec_loaded=draw(st.booleans()),
        offline=tuple(draw(st.lists(st.integers(1, n - 1), unique=True))) if n > 1 else (),
        ept=draw(st.booleans()),
        shadow_vmcs=draw(st.booleans()),
        nested=draw(st.booleans()),
        **{key: cpus() for key in CPU_LISTS},
    )
    nmis = draw(
        st.lists(
            st.builds(
                NmiSpec,
                cpu=cpu,
                before=st.sampled_from(LABELS),
                nth=st.integers(1, 5),
                kind=st.sampled_from(["panic", "benign"]),
            ),
            max_size=3,
        )
    )

    @st.composite
    def fault(d: st.DrawFn) -> FaultSpec:
        site = d(st.sampled_from(sorted(SITES)))
        kind = d(st.none() | st.sampled_from(SITES[site][0]))
        return FaultSpec(site, d(st.integers(1, 4)), d(st.none() | cpu), kind)

    expect = draw(
        st.none()
        | st.fixed_dictionaries(
            {},
            optional={
                "reference": st.lists(st.sampled_from(sorted(INVARIANTS)), unique=True),
                "patched": st.lists(st.sampled_from(sorted(INVARIANTS)), unique=True),
                "classes": st.lists(st.sampled_from(CLASSES), unique=True),
            },
        )
    )
    return Scenario(
        ops=tuple(draw(st.lists(ops_for(n), max_size=8))),
        config=config,
        schedule=tuple(draw(st.lists(cpu, max_size=12))),
        nmis=tuple(nmis),
        faults=tuple(draw(st.lists(fault(), max_size=3))),
        name=draw(st.text(max_size=12)),
        description=draw(st.text(max_size=30)),
        expect=expect,
    )


# ---- round trip ----
@given(scenarios())
def test_round_trip_through_json(sc: Scenario) -> None:
    doc = sc.to_json()
    assert from_json(doc) == sc
    assert from_json(json.loads(sc.dumps())) == sc
    assert from_json(doc).to_json() == doc, "the serialised form is canonical"


@given(scenarios())
def test_serialised_form_is_versioned_and_valid(sc: Scenario) -> None:
    doc = sc.to_json()
    assert doc["format"] == FORMAT
    nested = any(o.op in NESTED_OPS for o in sc.ops)
    restart = any(o.op in RESTART_OPS for o in sc.ops)
    assert doc["version"] == sc.version == (5 if restart else 2 if nested else 1)
    jsonschema.Draft202012Validator(schema(doc["version"])).validate(doc)
    assert list(doc)[:2] == ["format", "version"]
    assert ("name" in doc) == bool(sc.name) and ("expect" in doc) == (sc.expect is not None)


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.stem)
def test_examples_round_trip(path: Any) -> None:
    sc = load(path)
    assert from_json(sc.to_json()) == sc
    doc = json.loads(path.read_text())
    assert sc.to_json()["ops"] == doc["ops"], "the examples spell every op canonically"
    assert sc.to_json()["expect"] == doc["expect"]


def test_minimal_document_gets_the_defaults() -> None:
    sc = from_json({"format": FORMAT, "version": 1, "ops": [{"op": "module_load"}]})
    assert sc == Scenario(ops=(Op("module_load", 0),), config=Config())
    assert sc.config.cpus == 2 and sc.config.kexec_loaded and sc.config.shadow_vmcs
    assert sc.expect is None and sc.nmis == () and sc.faults == ()
    assert sc.to_json() == {
        "format": FORMAT,
        "version": 1,
        "config": {
            "cpus": 2,
            "kexec_loaded": True,
            "bios_disabled": [],
            "offline": [],
            "ept": True,
            "shadow_vmcs": True,
            "nested": False,
            "cr4_mismatch": [],
            "vmx_caps_mismatch": [],
            "no_vmx": [],
        },
        "ops": [{"op": "module_load", "cpu": 0}],
        "schedule": [],
        "nmis": [],
        "faults": [],
    }


def test_fault_and_nmi_fields_are_kept_exactly() -> None:
    sc = scenario(
        LOAD,
        nmis=[NmiSpec(1, "list_add:publish", 3, "benign")],
        faults=[FaultSpec("vmxon", 2, 1, "UD"), FaultSpec("alloc_vmcs")],
    )
    doc = sc.to_json()
    assert doc["nmis"] == [{"cpu": 1, "before": "list_add:publish", "nth": 3, "kind": "benign"}]
    assert doc["faults"] == [
        {"site": "vmxon", "nth": 2, "cpu": 1, "kind": "UD"},
        {"site": "alloc_vmcs", "nth": 1},
    ]
    assert from_json(doc) == sc


# ---- op grouping ----
def _op(parallel: bool = False) -> Op:
    return Op("module_load", parallel=parallel)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), []),
        ((False,), [[0]]),
        ((True,), [[0]]),  # nothing before it to join
        ((False, False, False), [[0], [1], [2]]),
        ((False, True, False, True, True, False), [[0, 1], [2, 3, 4], [5]]),
        ((True, True, True), [[0, 1, 2]]),
    ],
)
def test_groups(flags: tuple[bool, ...], expected: list[list[int]]) -> None:
    assert groups(tuple(_op(p) for p in flags)) == expected


def _span(trace: list[Any], cpu: int, name: str) -> tuple[int, int]:
    """First and last trace index of the task ``name`` on ``cpu``."""
    idx = [
        i for i, e in enumerate(trace) if e.cpu == cpu and e.context == "task" and e.name == name
    ]
    assert idx, (cpu, name)
    return idx[0], idx[-1]


BASE = (LOAD, create_vm(), create_vcpu("v0", 0), create_vcpu("v1", 1))


def test_sequential_ops_do_not_overlap() -> None:
    r = run(scenario(*BASE, run_vcpu("v0", 0), run_vcpu("v1", 1)), "patched")
    assert r.op_results == ["0"] * 6 and r.violations == []
    a, b = _span(r.trace, 0, "run_vcpu"), _span(r.trace, 1, "run_vcpu")
    assert a[1] < b[0], "the second op starts after the first finished"


def test_parallel_ops_start_together_and_follow_the_schedule() -> None:
    sc = scenario(*BASE, run_vcpu("v0", 0), run_vcpu("v1", 1, parallel=True), schedule=[1, 0] * 50)
    r = run(sc, "patched")
    assert r.op_results == ["0"] * 6 and r.violations == []
    a, b = _span(r.trace, 0, "run_vcpu"), _span(r.trace, 1, "run_vcpu")
    assert b[0] < a[1] and a[0] < b[1], "the two runs interleave"
    tail = [e.cpu for e in r.trace[min(a[0], b[0]) :][:6]]
    assert tail == [1, 0, 1, 0, 1, 0], "the schedule picks the CPU at each shared step"


def test_without_a_schedule_the_lowest_cpu_steps_first() -> None:
    sc = scenario(*BASE, run_vcpu("v0", 0), run_vcpu("v1", 1, parallel=True))
    r = run(sc, "patched")
    a, b = _span(r.trace, 0, "run_vcpu"), _span(r.trace, 1, "run_vcpu")
    assert a[1] < b[0]


def test_the_next_group_waits_for_the_whole_group() -> None:
    """CPU 0's op finishes first; the next op (on CPU 0) still waits for CPU 1's."""
    sc = scenario(
        *BASE,
        run_vcpu("v0", 0),
        run_vcpu("v1", 1, parallel=True),
        Op("destroy_vm", 0, vm="vm0"),
    )
    r = run(sc, "patched")
    assert r.op_results == ["0"] * 7 and r.violations == []
    a, b = _span(r.trace, 0, "run_vcpu"), _span(r.trace, 1, "run_vcpu")
    d = _span(r.trace, 0, "destroy_vm")
    assert a[1] < b[1] < d[0]


def test_ops_on_an_offline_cpu_are_skipped_and_the_run_goes_on() -> None:
    sc = scenario(
        LOAD,
        create_vm(cpu=1),
        create_vm("vm1", cpu=0, parallel=True),
        create_vcpu("v0", 0, vm="vm1"),
        offline=(1,),
    )
    r = run(sc, "patched")
    assert r.op_results == ["0", "cpu offline", "0", "0"]
    assert all(e.cpu == 0 or e.context != "task" for e in r.trace)


def test_ops_still_running_at_kexec_are_interrupted() -> None:
    sc = scenario(LOAD, create_vm(), Op("panic", 1), create_vcpu("v0", 0))
    r = run(sc, "reference")
    assert r.op_results == ["0", "0", "interrupted", "not run"]
    assert r.ended == "kexec (crash)"


# ---- NMI placement ----
def _benign_nmi_before(label: str, ops: tuple[Op, ...]) -> tuple[Any, list[str]]:
    r = run(scenario(*ops, nmis=[NmiSpec(0, label, 1, "benign")]), "patched")
    cpu0 = [e.label for e in r.trace if e.cpu == 0]
    return r, cpu0


WITH_VCPU = (LOAD, create_vm(), create_vcpu("v0", 0), run_vcpu("v0", 0))


@pytest.mark.parametrize("label", ["smp_call_function_many:send", "vmcs_load:vmptrld"])
def test_an_nmi_fires_just_before_its_step(label: str) -> None:
    r, cpu0 = _benign_nmi_before(label, WITH_VCPU)
    assert r.nmis_fired == [0] and r.violations == []
    i = cpu0.index(label)
    assert cpu0[i - 1] == "nmi_handle:benign", "the handler ran right before the step"
    assert cpu0.count("nmi_handle:benign") == 1


@pytest.mark.parametrize(
    "label", ["smp_call_function_many:wait", "raw_spin_lock:acquire", "mutex_lock:acquire"]
)
def test_an_nmi_fires_before_a_spin_wait_step(label: str) -> None:
    assert label in known_labels()
    r, cpu0 = _benign_nmi_before(label, WITH_VCPU)
    assert label in cpu0, "the step does execute on CPU 0"
    assert r.nmis_fired == [0]
    i = cpu0.index(label)
    assert "nmi_handle:benign" in cpu0[:i]


# ---- ops and offline CPUs ----
def test_an_op_on_a_cpu_offline_at_its_start_is_not_run() -> None:
    sc = scenario(
        LOAD,
        create_vm(),
        create_vcpu("v0", 0),
        Op("cpu_offline", 0, target=1),
        run_vcpu("v0", 1),
    )
    r = run(sc, "patched")
    assert r.op_results == ["0", "0", "0", "0", "cpu offline"]
    assert r.violations == []


@pytest.mark.parametrize("variant", ["reference", "patched"])
def test_nothing_runs_on_a_cpu_after_it_went_offline(variant: str) -> None:
    sc = scenario(
        LOAD,
        create_vm(),
        create_vcpu("v0", 0),
        Op("cpu_offline", 0, target=1),
        run_vcpu("v0", 1, parallel=True),
    )
    r = run(sc, variant)
    assert r.op_results[3] == "0", "CPU 1 went offline"
    offline_at = next(e.seq for e in r.trace if e.label == "__cpu_disable:set_offline")
    later_tasks = [
        e.label for e in r.trace if e.seq > offline_at and e.cpu == 1 and e.name == "run_vcpu"
    ]
    assert later_tasks == [], "no step of another task on CPU 1 once it is offline"
    assert r.violations == []


def _offline_while_a_task_sleeps(variant: str) -> tuple[Scenario, Any, int]:
    """vCPU v0 runs on CPU 0; a second KVM_RUN of v0 on CPU 1 sleeps on ``vcpu->mutex``
    while CPU 2 takes CPU 1 offline.  Searches a schedule (so it follows the model's step
    counts) under which the CPU 1 task started before CPU 1 went offline."""
    ops = (
        LOAD,
        create_vm(),
        create_vcpu("v0", 0),
        run_vcpu("v0", 0),
        run_vcpu("v0", 1, parallel=True),
        Op("cpu_offline", 2, target=1, parallel=True),
    )
    for pre in range(12):
        for mid in range(1, 16):
            sc = scenario(*ops, cpus=3, schedule=[0] * pre + [1] * mid + [2] * 60)
            r = run(sc, variant)
            off = [e.seq for e in r.trace if e.label == "__cpu_disable:set_offline"]
            started = [
                e.label
                for e in r.trace
                if e.cpu == 1 and e.name == "run_vcpu" and off and e.seq < off[0]
            ]
            if started and "mutex_lock:acquire" not in started:
                return sc, r, off[0]
    raise AssertionError("no schedule lets the CPU 1 task start before the offline")


@pytest.mark.parametrize("variant", ["reference", "patched"])
def test_a_task_can_be_asleep_on_a_cpu_that_goes_offline(variant: str) -> None:
    _, r, offline_at = _offline_while_a_task_sleeps(variant)
    assert r.op_results[5] == "0", "CPU 1 went offline"
    assert offline_at > 0


@pytest.mark.parametrize("variant", ["reference", "patched"])
def test_a_sleeping_task_does_not_resume_on_its_offline_cpu(variant: str) -> None:
    _, r, offline_at = _offline_while_a_task_sleeps(variant)
    resumed = [
        e.label for e in r.trace if e.cpu == 1 and e.name == "run_vcpu" and e.seq > offline_at
    ]
    assert resumed == [], "no step of the task on CPU 1 once it is offline"
    assert r.violations == []


def test_an_anchored_scenario_keeps_its_preemptions() -> None:
    """Version 4 is version 3 plus anchored runs: preemptions are part of it (the
    differential stores anchored reproducers, and the strategies draw anchored window
    schedules with a preemption; the v4 schema once lacked the field)."""
    from dataclasses import replace
    from pathlib import Path

    from vmxfuzz.sched import RunEntry

    root = Path(__file__).resolve().parent.parent
    sc = load(root / "examples" / "clean-preempt-migrate-in-kvm-run.json")
    anchored = replace(sc, schedule=(RunEntry(0, "put_cpu:preempt_enable", 1), RunEntry(1)))
    doc = anchored.to_json()
    assert doc["version"] == 4 and doc["preempts"]
    jsonschema.validate(doc, schema(4))
    assert from_json(doc, "anchored") == anchored
