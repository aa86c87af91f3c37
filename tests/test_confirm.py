"""Behaviour confirmation: a ``behaviour`` divergence is reported only when a bounded
search over the second variant's schedules of the same program, with the same
injections by kind and function, finds none with the first variant's behaviour."""

from __future__ import annotations

import json
from pathlib import Path

from vmxfuzz.campaign import Campaign
from vmxfuzz.confirm import SAMPLES, confirm_behaviour
from vmxfuzz.executor import run
from vmxfuzz.explore import setup_ops
from vmxfuzz.kernel.state import Config
from vmxfuzz.scenario import Op, Scenario, load
from vmxfuzz.sched import NmiSpec

ROOT = Path(__file__).resolve().parent.parent
NOOP = str(ROOT / "tests" / "plugins" / "noop_steps.py")
M05 = str(ROOT / "mutants" / "m05_launched_not_reset.py")


def _migration() -> Scenario:
    """vcpu0 runs on CPU 0, then on CPU 1 (a migration: VMCLEAR on CPU 0 first)."""
    ops = (*setup_ops(2, 1), Op("run_vcpu", 0, vcpu="vcpu0"), Op("run_vcpu", 1, vcpu="vcpu0"))
    return Scenario(ops, Config(cpus=2), name="migration")


def _noop_artefact() -> Scenario:
    """A panic NMI before the third ``vmx_vcpu_load_vmcs:noop_b``: a step only the
    no-op plug-in has, so the same scenario crashes there and runs clean in patched."""
    ops = (*setup_ops(2, 2), Op("run_vcpu", 0, vcpu="vcpu0"))
    nmi = NmiSpec(0, "vmx_vcpu_load_vmcs:noop_b", 3, "panic")
    return Scenario(ops, Config(cpus=2), nmis=(nmi,), name="noop-artefact")


def test_a_real_behaviour_change_is_confirmed_within_a_stated_bound() -> None:
    sc = _migration()
    assert run(sc, "patched").op_results != run(sc, M05).op_results
    conf = confirm_behaviour(sc, ("patched", M05))
    assert conf.confirmed and conf.complete and conf.witness is None
    assert conf.runs >= 1
    assert "every schedule" in conf.describe()


def test_a_scheduling_artefact_has_a_witness_in_either_direction() -> None:
    sc = _noop_artefact()
    assert run(sc, "patched").observable() != run(sc, NOOP).observable()
    for pair in (("patched", NOOP), (NOOP, "patched")):
        conf = confirm_behaviour(sc, pair)
        assert not conf.confirmed and conf.witness is not None
        # The witness is a plain scenario of the second variant with the first's
        # behaviour and the same injections by kind and function.
        w = run(conf.witness, pair[1], keep_trace=False)
        assert w.observable() == run(sc, pair[0], keep_trace=False).observable()
        first = run(sc, pair[0])
        assert len(conf.witness.nmis) == len(first.nmis_fired)
        assert {(n.cpu, n.before.split(":")[0], n.kind) for n in conf.witness.nmis} <= {
            (0, "vmx_vcpu_load_vmcs", "panic")
        }


def test_the_campaign_counts_artefacts_and_reports_real_changes(tmp_path: Path) -> None:
    c = Campaign(out=tmp_path / "a", variant=f"patched,{NOOP}", engine="test")
    sc = _noop_artefact()
    hits = c.new_hits(sc)
    assert [h.cls for h in hits] == ["behaviour"]
    c.record(hits[0], sc)
    doc = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert doc["findings"] == [] and doc["unconfirmed_behaviour"] == 1
    assert doc["confirmation"]["checked"] == 1
    assert c.new_hits(sc) == []  # known as an artefact: not searched again
    assert not list((tmp_path / "a").glob("0*.json"))  # no reproducer written

    m = Campaign(out=tmp_path / "m", variant=f"patched,{M05}", engine="test")
    sc = _migration()
    (hit,) = m.new_hits(sc)
    m.record(hit, sc)
    doc = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert doc["unconfirmed_behaviour"] == 0
    (f,) = doc["findings"]
    assert f["class"] == "behaviour" and f["confirmation"]["confirmed"]
    assert "confirmed: every schedule" in f["explanation"]
    assert f["confirmation"]["bound"]["complete"]


def test_random_schedules_find_a_witness_depth_first_search_misses() -> None:
    # A campaign's divergence whose witness needs the panic moved across an op on
    # another CPU: an early decision, which 5,000 depth-first runs never changed.
    sc = load(ROOT / "tests" / "confirm" / "panic-races-l1-vmxon.json")
    first = run(sc, "patched", keep_trace=False)
    assert first.observable() != run(sc, "reference", keep_trace=False).observable()
    conf = confirm_behaviour(sc, ("patched", "reference"))
    assert not conf.confirmed and conf.witness is not None
    assert conf.runs <= SAMPLES  # found by the random schedules, before the search
    w = run(conf.witness, "reference", keep_trace=False)
    assert w.observable() == first.observable()
