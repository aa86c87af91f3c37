"""Preemption inside vCPU ioctls (issue 14 items 1 and 2): the preemption points of
``vcpu_load``/``vcpu_enter_guest``, the preempt notifiers, the shadow-VMCS sync in
``prepare_guest_switch`` with IRQs on, the ``preempts`` scenario field, and the
explorer's preemption budget."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import EXAMPLES, ROOT, create_vcpu, run_vcpu

from vmxfuzz.anchor import anchor
from vmxfuzz.executor import run
from vmxfuzz.explore import Bound, Explorer
from vmxfuzz.kernel.preempt import PREEMPT_POINTS
from vmxfuzz.kernel.state import Config
from vmxfuzz.labels import known_labels
from vmxfuzz.scenario import Op, Scenario, ScenarioError, from_json, load
from vmxfuzz.sched import PreemptSpec

SETUP = (Op("module_load"), Op("create_vm", vm="vm0"), create_vcpu("vcpu0", 0))


def _labels(sc: Scenario, variant: str = "patched") -> list[tuple[int, str]]:
    return [(e.cpu, e.label) for e in run(sc, variant).trace if e.name == "run_vcpu"]


def test_the_preemption_points_are_known_labels() -> None:
    assert set(PREEMPT_POINTS) <= known_labels()
    assert {"context_switch:switch_to", "finish_task_switch:resume"} <= known_labels()


@pytest.mark.parametrize("variant", ["reference", "patched"])
def test_preempted_between_prepare_guest_switch_and_entry_relaunches_elsewhere(
    variant: str,
) -> None:
    """The cancel path: sched_out on CPU 0, kvm_sched_in loads on CPU 1 (the IPI'd
    VMCLEAR leaves launched = 0), vcpu_run enters again: VMLAUNCH on CPU 1."""
    sc = Scenario(
        (*SETUP, run_vcpu("vcpu0", 0)),
        Config(cpus=2),
        preempts=(PreemptSpec(0, "vcpu_enter_guest:need_resched", 1, 1),),
    )
    r = run(sc, variant)
    assert r.op_results[-1] == "0" and not r.violations
    lanes = _labels(sc, variant)
    switch = lanes.index((0, "context_switch:switch_to"))
    assert (0, "kvm_sched_out:preempted") in lanes[:switch]
    after = lanes[switch:]
    assert after[1] == (1, "finish_task_switch:resume")
    assert after.index((1, "kvm_sched_in:preempted")) < after.index((1, "vmcs_load:vmptrld"))
    # prepare_guest_switch runs again on CPU 1 before the entry there
    assert after.index((1, "vmx_prepare_switch_to_guest:need_vmcs12_to_shadow_sync")) < (
        after.index((1, "__vmx_vcpu_run:vmenter"))
    )
    assert r.caches[0] == [] and r.caches[1] == ["VMCS vcpu0.vmcs01.vmcs#3 (of vcpu0.vmcs01)"]


def test_a_preemption_after_the_exit_reads_the_cpl_in_sched_out() -> None:
    sc = Scenario(
        (*SETUP, run_vcpu("vcpu0", 0)),
        Config(cpus=2),
        preempts=(PreemptSpec(0, "vcpu_enter_guest:preempt_enable", 1, 1),),
    )
    lanes = _labels(sc)
    out = lanes.index((0, "kvm_sched_out:preempted"))
    assert lanes[out + 1 : out + 3] == [(0, "kvm_x86_ops:load"), (0, "vmcs_read:vmread")]
    assert lanes[-1][0] == 1  # vcpu_put and the rest of the ioctl run on CPU 1


def test_no_preemption_without_the_notifier_or_past_the_spec() -> None:
    """create_vcpu's put_cpu (vmx_create_vcpu: no notifier registered yet) is no KVM
    preemption point; a spec whose nth is never reached changes nothing."""
    plain = Scenario((*SETUP, run_vcpu("vcpu0", 0)), Config(cpus=2))
    never = replace(plain, preempts=(PreemptSpec(0, "vcpu_enter_guest:need_resched", 9, 1),))
    assert _labels(never) == _labels(plain)
    first = replace(plain, preempts=(PreemptSpec(0, "put_cpu:preempt_enable", 1, 1),))
    trace = run(first, "patched").trace
    puts = [e for e in trace if e.label == "put_cpu:preempt_enable"]
    assert puts[0].name == "create_vcpu" and puts[0].nth == 1  # vmx_create_vcpu's
    assert not any(e.label == "context_switch:switch_to" for e in trace)


def test_preempts_round_trip_and_are_validated() -> None:
    sc = load(EXAMPLES / "clean-preempt-migrate-in-kvm-run.json")
    assert sc.version == 3 and len(sc.preempts) == 3
    assert from_json(json.loads(sc.dumps())) == sc
    data = json.loads(sc.dumps())
    data["preempts"][0]["at"] = "no_such:label"
    with pytest.raises(ScenarioError, match="/preempts/0/at"):
        from_json(data)
    data = json.loads(sc.dumps())
    data["preempts"][0]["to"] = 7
    with pytest.raises(ScenarioError, match="/preempts/0/to"):
        from_json(data)


def test_the_shadow_sync_runs_in_prepare_guest_switch_with_irqs_on() -> None:
    """Issue 14 item 2: the vmcs12 -> shadow copy is before local_irq_disable, so
    the reboot IPI lands between its VMPTRLD and VMCLEAR (F14)."""
    path = ROOT / "tests" / "regressions" / "F14-reboot-ipi-in-shadow-sync-after-migration.json"
    sc, _ = anchor(load(path), "reference")  # the differential's meaning of the file
    for variant in ("reference", "patched"):
        r = run(sc, variant)
        cpu1 = [(e.context, e.name, e.label) for e in r.trace if e.cpu == 1]
        shadow_load = max(
            i for i, e in enumerate(cpu1) if e[2] == "vmcs_load:vmptrld" and e[0] == "task"
        )
        assert cpu1[shadow_load - 1][2] == "vmx_prepare_switch_to_guest:need_vmcs12_to_shadow_sync"
        assert cpu1[shadow_load + 1][:2] == ("ipi", "hardware_disable_nolock")
        assert any("shadow" in v for v in r.caches[1])


def test_explore_chooses_preemptions_within_the_budget(tmp_path: Path) -> None:
    program = Scenario((*SETUP, run_vcpu("vcpu0", 0)), Config(cpus=2))
    leaves: list[Scenario] = []
    ex = Explorer(
        program,
        "patched",
        Bound(nmis=0, preempts=1, setup=3),
        on_leaf=lambda sc, _r: leaves.append(sc),
    )
    assert ex.explore() and not ex.findings
    used = {p.at for sc in leaves for p in sc.preempts}
    assert used == set(PREEMPT_POINTS)  # every point of one KVM_RUN, to either CPU
    assert {p.to for sc in leaves for p in sc.preempts} == {0, 1}
    assert all(len(sc.preempts) <= 1 for sc in leaves)
    for sc in leaves[:5]:  # each leaf replays through the executor as recorded
        assert run(sc, "patched").ended == "idle"
