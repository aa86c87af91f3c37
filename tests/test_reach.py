"""Reach: what the generators produce (swarm, PCT, windows, weak memory) and what the
coverage map and shape statistics report.  Counts examples, never time."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, Phase, event, find, given, seed, settings
from hypothesis import strategies as st

from vmxfuzz.campaign import judge
from vmxfuzz.coverage import Stats, concurrent_pairs, observing, unfinished
from vmxfuzz.engines.pct import Pct, pct_schedule
from vmxfuzz.engines.strategies import reached_faults, scenarios, swarms
from vmxfuzz.engines.windows import NmiTargets, recorded_run, stop_points, windows
from vmxfuzz.executor import run, start
from vmxfuzz.machine.faults import SITES
from vmxfuzz.scenario import Scenario, load
from vmxfuzz.sched import RunEntry

ROOT = Path(__file__).resolve().parent.parent
REG = ROOT / "tests" / "regressions"


def _shape_counts(n: int, seed_value: int = 1) -> Counter[str]:
    stats = Stats()

    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @seed(seed_value)
    @given(scenarios())
    def probe(sc: Scenario) -> None:
        with observing() as seen:
            judge(sc, "both")
        for shape in stats.add(seen.runs)[0]:
            event(shape)  # pytest tests/test_reach.py --hypothesis-show-statistics

    probe()
    assert stats.examples == n
    return stats.shapes


def test_generation_reaches_every_concurrency_shape_family() -> None:
    """Over a few hundred examples: module ops racing userspace ops, stops racing vCPU
    and nested ops, NMIs and faults inside module init, nested entries with shadowing."""
    shapes = _shape_counts(300)
    families = {
        "module op racing a userspace op": lambda s: (
            s.startswith("race: ")
            and ("module_" in s)
            and any(u in s for u in ("create_vm", "create_vcpu", "run_vcpu", "destroy_vm"))
        ),
        "stop racing a vCPU or nested op": lambda s: (
            s.startswith("race: ")
            and any(t in s for t in ("reboot", "kexec", "suspend", "cpu_offline", "cpu_online"))
            and any(u in s for u in ("run_vcpu", "create_vcpu", "l1_", "l2_exit"))
        ),
        "NMI in module init": lambda s: s.startswith("nmi: ") and "module_load" in s,
        "benign NMI": lambda s: s.startswith("nmi: benign"),
        "fault in module init": lambda s: s.startswith("fault: ") and "module_load" in s,
        "nested with shadowing": lambda s: s == "nested: L2 entered, shadowing on",
    }
    missing = [name for name, pred in families.items() if not any(pred(s) for s in shapes)]
    assert not missing, (missing, sorted(shapes))


@given(swarms(nested=True))
def test_a_swarm_never_disables_everything(sw: object) -> None:
    assert sw.ops  # type: ignore[attr-defined]
    assert sw.nmi_kinds  # type: ignore[attr-defined]


@settings(max_examples=15)
@given(
    st.sampled_from(sorted(REG.glob("*.json"))),
    st.permutations(range(4)),
    st.lists(st.integers(0, 60), max_size=2, unique=True),
)
def test_a_pct_schedule_replays_the_run_it_recorded(
    path: Path, prio: list[int], ch: list[int]
) -> None:
    sc = replace(load(path), nmis=())
    pct = Pct(tuple(prio[: sc.config.cpus]), tuple(ch))
    schedule = pct_schedule(sc, "reference", pct)
    r = start(replace(sc, schedule=()), "reference")
    again = run(replace(sc, schedule=schedule), "reference")
    assert all(isinstance(e, int | str) for e in schedule)
    # the replay is deterministic and a PCT run with no schedule is the default run
    assert run(replace(sc, schedule=schedule), "reference").trace == again.trace
    if not schedule:
        assert again.trace == r.finish().trace


def test_pct_demotes_the_running_cpu_at_a_change_point() -> None:
    sc = replace(load(REG / "F12-reboot-ipi-between-vmptrld-and-set-cpu.json"), schedule=())
    hi0 = pct_schedule(sc, "reference", Pct((1, 0)))
    hi1 = pct_schedule(sc, "reference", Pct((0, 1)))
    assert hi0 != hi1  # priorities decide who runs first
    changed = pct_schedule(sc, "reference", Pct((0, 1), (2,)))
    assert changed[:2] == hi1[:2] and changed != hi1


def test_windows_are_derived_from_the_recorded_run() -> None:
    sc = replace(load(REG / "F01-crash-nmi-in-list-add-skips-vmclear.json"), nmis=())
    trace, marks = recorded_run(sc, "reference")
    w = windows(trace, marks)
    labels = [(e.cpu, e.label, e.nth) for e in trace]
    # IRQs off: everything between a cli and the matching sti on that CPU
    cli = next(i for i, p in enumerate(labels) if p[1] == "local_irq_disable:cli")
    sti = next(i for i, p in enumerate(labels) if i > cli and p[1] == "local_irq_enable:sti")
    same_cpu = [i for i in range(cli + 1, sti + 1) if trace[i].cpu == trace[cli].cpu]
    assert all(labels[i] in w.masked for i in same_cpu)
    # interior: the second step of one list_add invocation
    first = next(i for i, p in enumerate(labels) if p[1].startswith("list_add:"))
    assert labels[first] not in w.interior and labels[first + 1] in w.interior
    # after a hardware change: the step after VMXON
    vmxon = next(i for i, p in enumerate(labels) if p[1] == "kvm_cpu_vmxon:vmxon")
    nxt = next(i for i in range(vmxon + 1, len(trace)) if trace[i].cpu == trace[vmxon].cpu)
    assert labels[nxt] in w.after_hw
    targets = NmiTargets.of(sc, ("reference", "patched"))
    assert set(targets.repeat) <= set(targets.window) <= set(targets.all)


@settings(max_examples=25)
@given(scenarios(max_cpus=3))
def test_weak_memory_examples_use_store_buffer_entries_and_replay(sc: Scenario) -> None:
    if any(isinstance(e, str) for e in sc.schedule):
        assert sc.config.weak_memory and sc.version == 3
    assert run(sc, "reference").trace == run(sc, "reference").trace


def test_weak_memory_is_drawn() -> None:
    """Within 1,500 generated examples one has store-buffer entries (the search stops
    at the first, so the default run pays for the examples it needs, not 1,500)."""
    find(
        scenarios(),
        lambda sc: any(isinstance(e, str) for e in sc.schedule),
        settings=settings(
            max_examples=1500,
            database=None,
            derandomize=True,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_concurrent_ops_include_a_flow_the_machine_stopped_under() -> None:
    sc = load(REG / "F12-reboot-ipi-between-vmptrld-and-set-cpu.json")
    with observing() as seen:
        judge(sc, "both")
    (r, res), _ = seen.runs
    assert ("reboot", "run_vcpu") in concurrent_pairs(res.trace, unfinished(r, res))
    assert res.trace  # the observer sees the trace although judge drops it


def test_coverage_map_reports_reached_and_unreached() -> None:
    stats = Stats()
    for path in sorted(REG.glob("F0[1-3]*.json")):
        with observing() as seen:
            judge(load(path), "both")
        stats.add(seen.runs)
    doc = stats.coverage.to_json()
    ref = doc["variants"]["reference"]
    assert 0 < ref["labels_reached"] < ref["labels_total"]
    assert ref["unreached_labels"] and "list_add:publish" not in ref["unreached_labels"]
    assert "vmxon" in ref["fault_sites"] and "vmxon" not in ref["unreached_fault_sites"]
    assert any("(panic)" in s for s in ref["nmi_sites"])
    # a repeated example adds nothing new
    with observing() as seen:
        judge(load(REG / "F01-crash-nmi-in-list-add-skips-vmclear.json"), "both")
    assert stats.coverage.add(seen.runs) == 0


def test_report_index_shows_what_a_campaign_did_not_reach(tmp_path: Path) -> None:
    import json

    from vmxfuzz.cli import main

    stats = Stats()
    with observing() as seen:
        judge(load(REG / "F03-vmxon-gp-oops.json"), "both")
    stats.add(seen.runs)
    doc = {"findings": [], "coverage": stats.coverage.to_json()}
    (tmp_path / "summary.json").write_text(json.dumps(doc))
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "what the campaign did not reach" in page
    unreached = doc["coverage"]["variants"]["reference"]["unreached_labels"]
    assert unreached and f"<code>{unreached[0]}</code>" in page


def test_a_window_stop_lets_another_cpu_in_between_a_hardware_change_and_its_record() -> None:
    """The stops of a CPU are the steps after which another CPU could step (none in
    the sequential prefix), filed by the window kind of the CPU's next step; stopping
    CPU 1 right after its VMPTRLD lets CPU 0's reboot IPI land before
    ``loaded_vmcs->cpu = cpu`` (F12's window, found here by the mechanism alone)."""
    sc = replace(load(REG / "F12-reboot-ipi-between-vmptrld-and-set-cpu.json"), schedule=())
    stops = stop_points(sc, "reference", 1)
    assert set(stops["after_hw"]) <= set(stops["all"])
    assert ("vmcs_load:vmptrld", 1) in stops["after_hw"]
    assert not any(label.startswith("kvm_init:") for label, _ in stops["all"])  # prefix
    causes = set()
    for label, nth in stops["after_hw"]:
        anchored = replace(sc, schedule=(RunEntry(1, label, nth), RunEntry(0)))
        causes |= {h.cause for h in judge(anchored, "both")}
    assert "kexec-active-vmcs/loaded-vmcs-cpu-names-other-cpu" in causes
    # a stop nobody else could use (the single CPU of a sequential program) is none
    seq = Scenario(sc.ops[:3], sc.config)
    assert stop_points(seq, "reference", 0)["all"] == []


def test_window_schedules_are_drawn_and_replay() -> None:
    """Some generated examples carry an anchored window schedule (format v4), and an
    example replays to the same trace."""
    found = find(
        scenarios(),
        lambda sc: sc.anchored,
        settings=settings(
            max_examples=200,
            database=None,
            derandomize=True,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert found.version >= 4 and isinstance(found.schedule[0], RunEntry)  # v5: + restart
    assert run(found, "reference").trace == run(found, "reference").trace


def test_faults_go_mostly_to_the_sites_the_run_reached() -> None:
    drawn: list[tuple[str, int]] = []
    sites = tuple(sorted(SITES))

    @settings(max_examples=150, database=None, derandomize=True, deadline=None)
    @given(reached_faults(sites, {"vmxon": 2, "alloc_vm": 1}))
    def probe(faults: tuple[object, ...]) -> None:
        drawn.extend((f.site, f.nth) for f in faults)  # type: ignore[attr-defined]

    probe()
    at_reached = [d for d in drawn if d[0] in ("vmxon", "alloc_vm")]
    # sixteen sites, two reached: uniform draws would put 1/8 there
    assert drawn and len(at_reached) > len(drawn) / 2
