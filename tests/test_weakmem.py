"""Weak-memory mode: store-buffer rules, barriers, the v3 format, and that a weak file
without buffer entries behaves exactly like sequential consistency."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from vmxfuzz.cli import main
from vmxfuzz.executor import run
from vmxfuzz.kernel.list import ListHead
from vmxfuzz.kernel.structs import LoadedVmcs
from vmxfuzz.machine import weakmem
from vmxfuzz.machine.weakmem import WeakMemory
from vmxfuzz.scenario import ScenarioError, from_json, load, save

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))


class _K:
    cpu = 0


@pytest.fixture
def mem() -> Any:
    m = WeakMemory(2)
    m.k = _K()
    weakmem.ACTIVE = m
    yield m
    weakmem.ACTIVE = None


def test_stores_are_buffered_forwarded_and_committed_out_of_order(mem: WeakMemory) -> None:
    a, b = ListHead("a"), ListHead("b")
    assert type(a).__name__ == "ListHead" and getattr(type(a), "_weak", False)
    a.next = b  # buffered on CPU 0
    lv = LoadedVmcs("lv")
    lv.cpu = -1
    assert a.next is b and lv.cpu == -1  # CPU 0 sees its own stores
    mem.k.cpu = 1
    assert a.next is None and lv.cpu == 0  # CPU 1 sees memory (zeroed at allocation)
    assert mem.actions() == ["sb0", "sb0.1"]
    mem.commit("sb0.1")  # the later store first: allowed without a barrier
    assert lv.cpu == -1 and a.next is None
    mem.commit("sb0")
    assert a.next is b and not mem.pending()


def test_a_write_barrier_keeps_later_stores_behind(mem: WeakMemory) -> None:
    a, lv = ListHead("a"), LoadedVmcs("lv")
    a.next = a
    mem.wmb(0)
    lv.cpu = -1
    assert mem.actions() == ["sb0"]  # only the store before the barrier
    mem.commit("sb0")
    assert mem.actions() == ["sb0"]  # the barrier is gone with it
    mem.commit("sb0")
    assert a.next is a and lv.cpu == -1


def test_stores_to_one_location_commit_in_program_order(mem: WeakMemory) -> None:
    lv = LoadedVmcs("lv")
    lv.cpu = 1
    lv.cpu = 2
    assert mem.committable(0) == [0]
    mem.fence(0)
    assert lv.cpu == 2 and not mem.pending()


def test_only_the_protocol_fields_are_weak(mem: WeakMemory) -> None:
    lv = LoadedVmcs("lv")
    lv.vmcs = None
    lv.launched = 1
    assert mem.depth(0) == 1  # launched only; vmcs is sequentially consistent


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_a_weak_file_without_buffer_entries_is_sequentially_consistent(path: Path) -> None:
    sc = load(path)
    weak = replace(sc, config=replace(sc.config, weak_memory=True))
    for variant in ("reference", "patched"):
        a, b = run(sc, variant, keep_trace=False), run(weak, variant, keep_trace=False)
        assert [(v.invariant, v.site) for v in a.violations] == [
            (v.invariant, v.site) for v in b.violations
        ]
        assert a.op_results == b.op_results and a.ended == b.ended
    assert weakmem.ACTIVE is None  # a finished run leaves no memory behind


def test_format_v3_round_trips_and_is_only_used_when_needed(tmp_path: Path) -> None:
    sc = load(ROOT / "examples" / "clean-vcpu-migration.json")
    assert sc.version == 1
    weak = replace(sc, config=replace(sc.config, weak_memory=True), schedule=("sb0", "late1", 0))
    assert weak.version == 3
    save(weak, tmp_path / "w.json")
    doc = json.loads((tmp_path / "w.json").read_text())
    assert doc["version"] == 3 and doc["config"]["weak_memory"] is True
    assert load(tmp_path / "w.json") == weak
    assert "weak_memory" not in sc.to_json()["config"]


@pytest.mark.parametrize(
    ("schedule", "weak", "pointer"),
    [
        (["sb0"], False, "/schedule/0"),  # buffer entries need weak memory
        ([0, "sb7"], True, "/schedule/1"),  # no CPU 7
        (["sb"], True, "/schedule/0"),  # not an entry
        (["late0.1"], True, "/schedule/0"),
    ],
)
def test_bad_weak_entries_name_the_field(schedule: list[Any], weak: bool, pointer: str) -> None:
    doc = {
        "format": "vmxfuzz-scenario",
        "version": 3,
        "config": {"cpus": 2, "weak_memory": weak},
        "ops": [{"op": "module_load", "cpu": 0}],
        "schedule": schedule,
    }
    with pytest.raises(ScenarioError) as e:
        from_json(doc, "x.json")
    assert e.value.field == pointer


def test_replay_of_a_bad_weak_file_is_exit_2(tmp_path: Path, capsys: Any) -> None:
    doc = {
        "format": "vmxfuzz-scenario",
        "version": 3,
        "config": {"cpus": 2},
        "ops": [{"op": "module_load", "cpu": 0}],
        "schedule": ["sb1"],
    }
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    assert main(["replay", str(p)]) == 2
    err = capsys.readouterr().err
    assert "bad.json: /schedule/0:" in err and "weak_memory" in err


M11_KILL = ROOT / "tests" / "weak-memory" / "M11-weak-memory-reboot-races-vcpu-load.json"


def test_weak_memory_kills_the_mutant_without_smp_wmb() -> None:
    """The barrier pair is checkable: without the smp_wmb() the weak-memory mode
    reaches a LIST_POISON in another CPU's list (found by `explore --weak-memory`)."""
    from vmxfuzz.campaign import judge

    sc = load(M11_KILL)
    # The barrier's window: CPU 1 commits its second buffered store (cpu = -1) first.
    assert sc.config.weak_memory and "sb1.1" in sc.schedule
    hits = judge(sc, "patched,vmxfuzz.mutants.m11_no_smp_wmb")
    assert ("regression", "oops", "oops/list-poison-deref", "list_del:next_prev") in {
        (*h.key, h.site) for h in hits
    }
    assert not run(sc, "patched", keep_trace=False).violations  # the barrier holds
    # Under sequential consistency the same program cannot tell the two apart.
    sc_sc = replace(sc, config=replace(sc.config, weak_memory=False), schedule=())
    assert not judge(sc_sc, "patched,vmxfuzz.mutants.m11_no_smp_wmb")


def test_the_minimiser_keeps_weak_memory_while_store_buffer_entries_remain() -> None:
    """A reproducer the minimiser writes must load: config simplification must not turn
    ``weak_memory`` off while the schedule still has ``sbC``/``lateC`` entries (the
    executor tolerates that, so a finding could survive it, but the file is rejected)."""
    from vmxfuzz.minimize import is_one_minimal, minimize, valid

    sc = load(M11_KILL)
    invalid = replace(sc, config=replace(sc.config, weak_memory=False))
    assert not valid(invalid) and valid(sc)

    def keeps(c: Any) -> bool:  # survives turning weak memory off, as the bug did
        return any(isinstance(e, str) and e.startswith("sb") for e in c.schedule)

    assert keeps(invalid)
    small = minimize(sc, keeps)
    assert small.config.weak_memory and keeps(small)
    assert from_json(json.loads(small.dumps()), "small") == small
    assert is_one_minimal(small, keeps)
