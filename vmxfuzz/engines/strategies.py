"""Hypothesis strategies for whole scenarios.

Generation aims at the interesting places fast:

* operations are drawn by category first (vCPU ops, rare ops such as hotplug, suspend
  or unload, L1 VMX instructions), so the many rare kinds do not dilute the vCPU ops
  that build the interesting states (several VMCSes loaded on one CPU);
* names are drawn from what the program so far created: a creation usually takes a
  fresh name and every other op names an object that exists, so few ops fail with
  ``-ENOENT``/``-EEXIST``; L1's VMX instructions usually follow the protocol (VMXON,
  VMPTRLD, VMLAUNCH, an L2 exit, VMRESUME, ...), with an occasional arbitrary one;
* every op sequence is a legal userspace program: the kernel's serialisation rules
  (``vcpu->mutex``, ``kvm_count_lock``, no unload while a VM file pins the module,
  hotplug ops on another CPU than their target) are the model's own code, so a
  scenario that asks for something the kernel refuses gets the kernel's errno, exactly
  as a real program would, and nothing needs filtering;
* swarm testing: each example switches a random subset of the op kinds, NMI kinds
  and fault sites off (:class:`Swarm`), so rare combinations are not diluted;
* the schedule is drawn as runs (CPU, length), so one CPU can get far ahead of
  another, into the middle of its flow, in a single draw, or comes from PCT
  (:mod:`.pct`: random CPU priorities with change points) for the deep races; with
  weak memory the runs carry store-buffer entries (``sbC``, ``sbC.I``, ``lateC``);
* NMI and panic points are drawn from the steps the scenario actually executes: it is
  run once without NMIs and ``(cpu, label, nth)`` is sampled from the trace (for
  ``both``, from the steps both variants execute, so an NMI never fires in one variant
  only), mostly from the windows that recorded run shows (:mod:`.windows`: IRQs off,
  between two actions of one function, right after a hardware state change), often
  at a step this CPU has executed before;
* the machine configuration keeps its defaults most of the time and sometimes has
  quirks (CPUs offline at boot, VMX disabled by firmware, no EPT, ...) or weak memory.

What each example is (which ops race, where NMIs and faults land) is counted with
Hypothesis ``event()``: ``--hypothesis-show-statistics`` and the campaign summary's
``shapes`` show it (:mod:`vmxfuzz.shapes`).

Shrinking: every choice shrinks towards the simple case (the first name, the
protocol's next step, no quirks, the earliest step, fewer ops), and the campaign's
delta debugging (``vmxfuzz.minimize``) makes every reported reproducer 1-minimal.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import event as _hyp_event
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from ..executor import start
from ..kernel.preempt import PREEMPT_POINTS
from ..kernel.state import Config
from ..machine.faults import SITES, FaultSpec
from ..scenario import NESTED_OPS, Op, Scenario
from ..sched import NmiSpec, PreemptSpec, RunEntry
from .pct import Pct, pct_schedule
from .windows import NmiTargets, nmi_points, stop_points

__all__ = ["NmiTargets", "nmi_points", "scenarios"]


def event(text: str) -> None:
    """Hypothesis ``event()``, ignored where a strategy is drawn outside a test."""
    with suppress(InvalidArgument):
        _hyp_event(text)


BASIC = (
    "create_vcpu",
    "run_vcpu",
    "create_vcpu",
    "run_vcpu",
    "run_vcpu",
    "destroy_vm",
    "create_vm",
)
RARE = ("cpu_offline", "cpu_online", "suspend", "module_unload", "module_load")
TERMINAL = ("panic", "panic", "kexec", "reboot")

# L1's VMX protocol per vCPU: state -> the instructions a well-behaved L1 issues next,
# and (state, instruction) -> the state after it.  Anything else keeps the state (the
# model answers it with an L1 #UD or a VMfail, as the CPU would).
L1_NEXT: dict[str, tuple[str, ...]] = {
    "off": ("l1_vmxon",),
    "vmxon": ("l1_vmptrld", "l1_vmxoff"),
    "current": ("l1_vmlaunch", "l1_vmclear", "l1_vmxoff"),
    "l2": ("l2_exit",),
    "launched": ("l1_vmresume", "l1_vmclear", "l1_vmxoff"),
}
L1_AFTER: dict[tuple[str, str], str] = {
    ("off", "l1_vmxon"): "vmxon",
    ("vmxon", "l1_vmptrld"): "current",
    ("current", "l1_vmlaunch"): "l2",
    ("l2", "l2_exit"): "launched",
    ("launched", "l1_vmresume"): "l2",
    **{(s, "l1_vmclear"): "vmxon" for s in ("current", "launched")},
    **{(s, "l1_vmxoff"): "off" for s in ("vmxon", "current", "launched")},
}


def _subset(cpus: Sequence[int]) -> st.SearchStrategy[tuple[int, ...]]:
    return st.lists(st.sampled_from(cpus), unique=True, max_size=len(cpus)).map(
        lambda xs: tuple(sorted(xs))
    )


@st.composite
def configs(draw: Any, max_cpus: int = 4, nested: bool | None = None) -> Config:
    """Mostly the default machine; one time in eight a machine with quirks, and one
    time in eight (independently) weak memory."""
    cpus = draw(st.sampled_from([c for c in (2, 1, 3, 4) if c <= max_cpus]))
    use_nested = draw(st.booleans()) if nested is None else nested
    weak = cpus > 1 and draw(st.integers(0, 7)) == 7
    if cpus < 2 or draw(st.integers(0, 7)) < 7:
        return Config(cpus=cpus, nested=use_nested, weak_memory=weak)
    every, aps = list(range(cpus)), list(range(1, cpus))

    def rare(s: st.SearchStrategy[Any], default: Any) -> Any:
        return draw(s) if draw(st.integers(0, 3)) == 3 else default

    return Config(
        cpus=cpus,
        nested=use_nested,
        offline=draw(_subset(aps)),
        bios_disabled=draw(_subset(aps)),
        kexec_loaded=rare(st.just(False), True),
        ept=rare(st.just(False), True),
        shadow_vmcs=rare(st.just(False), True),
        cr4_mismatch=rare(_subset(aps), ()),
        vmx_caps_mismatch=rare(_subset(aps), ()),
        no_vmx=rare(_subset(every), ()),
        weak_memory=weak,
        panic_timeout=rare(st.just(1), 0),  # a panic without kdump restarts the machine
    )


@dataclass(frozen=True)
class Swarm:
    """Swarm testing (Groce et al., ISSTA 2012): the features one example may use.

    Why: with every feature always on, each example is a thin mix of everything, and
    a combination that needs two rare features together (an unload *and* a racing
    vCPU creation, a fault *and* an NMI of one kind) is diluted by all the others.
    Switching a random subset off per example concentrates the rest: some examples
    are nothing but module loads, unloads and VM creations.  The features are the op
    kinds (the nested protocol counts as one), the NMI kinds and the fault sites.
    """

    ops: frozenset[str]
    nmi_kinds: tuple[str, ...]
    fault_sites: tuple[str, ...]


# The body's op kinds a swarm switches on and off ("nested" is L1's whole protocol).
SWARM_OPS = tuple(sorted({*BASIC, *RARE, *TERMINAL}))
NMI_KIND_SETS = (("panic", "panic", "benign"), ("panic",), ("benign",))


@st.composite
def swarms(draw: Any, nested: bool) -> Swarm:
    """A random feature subset; shrinks towards everything enabled.  Each subset is
    one integer draw, a bit per feature (a set bit switches it off): a boolean draw
    per feature cost more than the rest of the example's generation."""
    kinds = SWARM_OPS + (("nested",) if nested else ())
    off = draw(st.integers(0, 2 ** len(kinds) - 1))
    on = frozenset(k for i, k in enumerate(kinds) if not off >> i & 1) or frozenset(kinds)
    off_sites = draw(st.integers(0, 2 ** len(SITES) - 1))
    sites = tuple(s for i, s in enumerate(sorted(SITES)) if not off_sites >> i & 1)
    nmi_kinds = draw(st.sampled_from(NMI_KIND_SETS))
    event(f"swarm: {len(on)}/{len(kinds)} op kinds, {len(sites)}/{len(SITES)} fault sites")
    return Swarm(on, nmi_kinds, sites)


class _Names:
    """The VMs and vCPUs a program has created so far (as far as the text says)."""

    def __init__(self) -> None:
        self.vms: list[str] = []
        self.vcpus: list[str] = []
        self.l1: dict[str, str] = {}

    @staticmethod
    def new(draw: Any, pool: list[str], prefix: str) -> str:
        """Usually a fresh name (the simplest choice), sometimes an existing one."""
        name: str = draw(st.sampled_from([f"{prefix}{len(pool)}", *pool]))
        if name not in pool:
            pool.append(name)
        return name

    @staticmethod
    def used(draw: Any, pool: list[str], default: str) -> str:
        return draw(st.sampled_from(pool)) if pool else default


ALL_OPS = Swarm(frozenset((*SWARM_OPS, "nested")), NMI_KIND_SETS[0], tuple(sorted(SITES)))


@st.composite
def ops(draw: Any, cpus: int, nested: bool, swarm: Swarm = ALL_OPS) -> tuple[Op, ...]:
    """A prefix that sets things up, a body, and usually a crash, kexec or reboot,
    which one time in three races the op before it."""
    seq: list[Op] = []
    names = _Names()
    if draw(st.integers(0, 9)) > 0:
        seq.append(Op("module_load", 0))
        if draw(st.integers(0, 9)) > 0:
            # One time in four the first VM is created on another CPU while the
            # module loads: userspace can open /dev/kvm the moment it is registered,
            # whatever module init still has to do (a body op rarely races the load:
            # it comes after it).
            racing = cpus > 1 and draw(st.integers(0, 3)) == 0
            cpu = draw(st.integers(1, cpus - 1)) if racing else 0
            seq.append(Op("create_vm", cpu, racing, vm=names.new(draw, names.vms, "vm")))
    # Category first, so the many nested and rare kinds do not dilute the vCPU ops
    # that set up the interesting states (several VMCSes loaded on one CPU).
    basic = tuple(k for k in BASIC if k in swarm.ops)
    rare = tuple(k for k in RARE if k in swarm.ops)
    nested_on = nested and "nested" in swarm.ops
    categories = [c for c in (basic, basic, basic, rare) if c]
    categories += [tuple(NESTED_OPS)] * (2 if nested_on else 0)
    for _ in range(draw(st.integers(0, 8)) if categories else 0):
        category = draw(st.sampled_from(categories))
        # L1 issues instruction sequences: a nested draw is a burst of 1..4 exits
        # (a guest hypervisor's VMXON, VMPTRLD, VMLAUNCH come together: with bursts
        # of up to 3, an L2 entry with shadowing was in under 1% of the examples).
        # Only the burst's first exit may race the op before it: L1's own order holds.
        for i in range(draw(st.integers(1, 4)) if category == tuple(NESTED_OPS) else 1):
            kind = draw(st.sampled_from(category))
            cpu = draw(st.integers(0, cpus - 1))
            parallel = i == 0 and bool(seq) and draw(st.integers(0, 3)) == 0
            seq += _op(draw, kind, cpu, parallel, cpus, names)
    terminal = [k for k in TERMINAL if k in swarm.ops]
    if terminal and draw(st.integers(0, 4)) > 0:
        parallel = bool(seq) and draw(st.integers(0, 2)) == 0
        seq.append(Op(draw(st.sampled_from(terminal)), draw(st.integers(0, cpus - 1)), parallel))
    return tuple(seq)


def _op(draw: Any, kind: str, cpu: int, parallel: bool, cpus: int, names: _Names) -> list[Op]:
    """One op of ``kind``, naming what the program created so far (or none)."""
    if kind == "create_vm":
        return [Op(kind, cpu, parallel, vm=names.new(draw, names.vms, "vm"))]
    if kind == "destroy_vm":
        return [Op(kind, cpu, parallel, vm=names.used(draw, names.vms, "vm0"))]
    if kind == "create_vcpu":
        vm = names.used(draw, names.vms, "vm0")
        vcpu = names.new(draw, names.vcpus, "v")
        return [Op(kind, cpu, parallel, vm=vm, vcpu=vcpu)]
    if (kind == "run_vcpu" or kind in NESTED_OPS) and not names.vcpus:
        # Naming a vCPU that does not exist is an -ENOENT and nothing more: create one.
        return _op(draw, "create_vcpu", cpu, parallel, cpus, names) + _op(
            draw, kind, cpu, False, cpus, names
        )
    if kind == "run_vcpu":
        return [Op(kind, cpu, parallel, vcpu=names.used(draw, names.vcpus, "v0"))]
    if kind in NESTED_OPS:
        vcpu = names.used(draw, names.vcpus, "v0")
        state = names.l1.get(vcpu, "off")
        if draw(st.integers(0, 3)) > 0:  # mostly what L1 would do next,
            # mostly its step forward (the first): a guest hypervisor runs its guest
            # far more often than it tears it down (uniform over the next steps, an
            # L2 entry took a VMXON, VMPTRLD, VMLAUNCH each of 1 in 2-3 draws)
            nxt = L1_NEXT[state]
            kind = nxt[0] if draw(st.integers(0, 3)) > 0 else draw(st.sampled_from(nxt))
        names.l1[vcpu] = L1_AFTER.get((state, kind), state)
        return [Op(kind, cpu, parallel, vcpu=vcpu)]
    if kind in ("cpu_offline", "cpu_online"):
        if cpus < 2:
            return []
        return [Op(kind, 0, parallel, target=draw(st.integers(1, cpus - 1)))]
    return [Op(kind, 0, parallel)]


def faults(sites: Sequence[str] = tuple(sorted(SITES))) -> st.SearchStrategy[tuple[FaultSpec, ...]]:
    """Up to two injected faults at the swarm's sites (none if it has none)."""
    if not sites:
        return st.just(())
    one = st.sampled_from(list(sites)).flatmap(
        lambda site: st.builds(
            FaultSpec,
            site=st.just(site),
            nth=st.integers(1, 3),
            cpu=st.none(),
            kind=st.sampled_from(SITES[site][0]),
        )
    )
    return st.lists(one, max_size=2).map(tuple)


def _reached_sites(base: Scenario, variant: str) -> dict[str, int]:
    """The fallible sites one untraced run of ``base`` checked, and how often."""
    r = start(base, variant, keep_trace=False)
    r.finish(keep_trace=False)
    return {site: n for (site, cpu), n in r.k.faults.counts.items() if cpu is None}


@st.composite
def reached_faults(
    draw: Any, sites: Sequence[str], reached: dict[str, int]
) -> tuple[FaultSpec, ...]:
    """Up to two injected faults at the swarm's sites, mostly at a site the
    scenario's recorded run reached, at an occurrence it reached (``reached``: site
    -> times checked): a fault at a site the program never passes is a no-op, and
    with sixteen sites those were most of the draws.  One draw in four is any site
    of the swarm, any of its first three occurrences (the run with the fault may go
    where the recorded one did not).  (Preferring the sites checked while another CPU
    could step, an error path inside a race, cut the seed window's hits from 14 to 3
    per 2,500 examples: the faults then broke the racing ops themselves.)"""
    out: list[FaultSpec] = []
    if not sites:
        return ()
    hit = [s for s in sites if reached.get(s)]
    for _ in range(draw(st.sampled_from((0, 1, 0, 0, 2, 0, 1, 0)))):  # 5 in 8 fault-free
        if hit and draw(st.integers(0, 3)) > 0:
            site = draw(st.sampled_from(hit))
            nth = draw(st.integers(1, min(reached[site], 3)))
            event("fault: at a reached site")
        else:
            site = draw(st.sampled_from(list(sites)))
            nth = draw(st.integers(1, 3))
        out.append(FaultSpec(site, nth, None, draw(st.sampled_from(SITES[site][0]))))
    return tuple(out)


def _weak_entries(cpus: int) -> list[str]:
    """The store-buffer schedule entries of format v3 for a machine of ``cpus``."""
    return [e for c in range(cpus) for e in (f"sb{c}", f"sb{c}.1", f"late{c}")]


def schedules(cpus: int, weak: bool = False) -> st.SearchStrategy[tuple[int | str, ...]]:
    """Runs of (CPU, length): one draw lets a CPU get well ahead of the others.  With
    weak memory, a run may end with a store-buffer entry (a commit of the CPU's
    oldest or second-oldest buffered store, or a step past a pending IPI)."""
    run = st.tuples(st.integers(0, cpus - 1), st.integers(1, 24))
    if not weak:
        runs = st.lists(run, max_size=5)
        return runs.map(lambda rs: tuple(c for c, n in rs for _ in range(n)))
    entry = st.one_of(st.none(), st.sampled_from(_weak_entries(cpus)))
    wruns = st.lists(st.tuples(run, entry), max_size=6)

    def flat(rs: list[tuple[tuple[int, int], str | None]]) -> tuple[int | str, ...]:
        out: list[int | str] = []
        for (c, n), e in rs:
            out += [c] * n
            if e is not None:
                out.append(e)
        return tuple(out)

    return wruns.map(flat)


def pcts(cpus: int) -> st.SearchStrategy[Pct]:
    """PCT parameters: a priority order of the CPUs and 0..2 change points (depth 1..3)
    among the first few hundred choice points."""
    return st.builds(
        Pct,
        priorities=st.permutations(range(cpus)).map(tuple),
        changes=st.lists(st.integers(0, 300), max_size=2, unique=True).map(tuple),
    )


# Pool weights.  Most NMIs go to a window step (vmxfuzz.engines.windows: IRQs off,
# right after a hardware change, inside a function between two of its actions), half
# to one of the IRQs-off/hardware windows this CPU has executed before: the first
# time a CPU runs a path it rarely has anything to lose.  ``all`` keeps every step
# reachable.  (Measured on 300 generated scenarios, seed 1: reference violations in
# 33 with these weights, 4 when NMIs were spread evenly over every window kind and
# over flows first; docs/performance.md.)
POOLS = ("all", "masked", "after_hw", "interior", "repeat", "repeat", "repeat")
SCHEDULE_MODES = ("runs", "pct")
WINDOW_MODES = ("window", "runs", "window", "pct")  # for programs with racing ops
# Where a window schedule stops its CPU (vmxfuzz.engines.windows.stop_points): right
# before a window step of the kind drawn; ``all`` keeps every step reachable.
STOP_POOLS = ("after_hw", "after_hw", "interior", "masked", "all")


@st.composite
def window_schedules(draw: Any, base: Scenario, variant: str) -> tuple[RunEntry, ...]:
    """An anchored schedule that stops one CPU right before a window step of its own
    flow and lets another CPU run: whatever that CPU does (its stores, the IPIs it
    sends, which land at the stopped CPU's next step with IRQs on) happens inside the
    half-done state.  The stopped CPU is one with an op in a group of parallel ops
    where there is one (the others only take IPIs)."""
    cpus = base.config.cpus
    ops_ = base.ops
    busy = sorted(
        {
            o.cpu
            for i, o in enumerate(ops_)
            if o.parallel or (i + 1 < len(ops_) and ops_[i + 1].parallel)
        }
    )
    c = draw(st.sampled_from(busy or list(range(cpus))))
    stops = stop_points(base, variant, c)
    kind = draw(st.sampled_from(STOP_POOLS))
    pool = stops[kind] or stops["all"]
    if not pool:
        return ()
    event(f"schedule: window stop ({kind})")
    label, nth = draw(st.sampled_from(pool))
    d = draw(st.sampled_from([x for x in range(cpus) if x != c]))
    return (RunEntry(c, label, nth), RunEntry(d))


@st.composite
def scenarios(
    draw: Any,
    variants: tuple[str, ...] = ("reference", "patched"),
    max_cpus: int = 4,
    nested: bool | None = None,
) -> Scenario:
    config = draw(configs(max_cpus, nested))
    swarm = draw(swarms(config.nested))
    body = draw(ops(config.cpus, config.nested, swarm))
    base = Scenario(body, config)
    # A window schedule needs ops that run concurrently (a stop elsewhere lets nobody
    # in), more than one CPU, and no weak memory (its entries are step-indexed); where
    # it applies it gets half the draws, the most direct way into a half-done state.
    racing = config.cpus > 1 and not config.weak_memory and any(o.parallel for o in body)
    mode = draw(st.sampled_from(WINDOW_MODES if racing else SCHEDULE_MODES))
    event(f"schedule: {mode}{' + weak memory' if config.weak_memory else ''}")
    schedule: tuple[int | str | RunEntry, ...]
    if mode == "pct":
        pct = draw(pcts(config.cpus))
        event(f"schedule: pct depth {pct.depth}")
        schedule = pct_schedule(base, variants[0], pct)
    elif mode == "window":
        schedule = draw(window_schedules(base, variants[0]))
    else:
        schedule = draw(schedules(config.cpus, config.weak_memory))
    base = replace(base, schedule=schedule)
    # A cheap (untraced) run of the fault-free program says where faults can go, so
    # they are drawn after the schedule, from the run it makes.  The NMI targets come
    # from traced runs of the program *with* its faults: an error path is where some
    # windows are (between a handled VMXON fault and the fixup's CR4 clear).
    sites = _reached_sites(base, variants[0])
    base = replace(base, faults=draw(reached_faults(swarm.fault_sites, sites)))
    # NMIs in 3 examples of 5 (were 2 of 3): a panic NMI ends the run where it lands,
    # so fewer NMIs let deep programs (an L2 entry, a migration under a reboot) run
    # to their end; 1 in 2 cost the seed window most of its hits.  The first entry
    # (Hypothesis' simplest choice, where its generation keeps returning) is none:
    # with an NMI there, a 180 s campaign spent 7,804 of 8,008 examples on one shape.
    count = draw(st.sampled_from((0, 1, 0, 2, 1)))
    targets = NmiTargets.of(base, variants) if count else None
    nmis: list[NmiSpec] = []
    for _ in range(count if targets is not None and targets.all else 0):
        assert targets is not None
        pool = targets.pool(draw(st.sampled_from(POOLS)))
        cpu, label, nth = draw(st.sampled_from(pool))
        kind = draw(st.sampled_from(swarm.nmi_kinds))
        nmis.append(NmiSpec(cpu, label, nth, kind))
    base = replace(base, nmis=tuple(nmis))
    # Drawn last, so the draws above mean what they meant before preemptions existed.
    if not draw(st.sampled_from((False, False, False, True))):
        return base
    if targets is None:
        targets = NmiTargets.of(base, variants)
    points = [p for p in targets.all if p[1] in PREEMPT_POINTS]
    if not points:
        return base
    # a vCPU ioctl preempted at a point it reaches, resumed on any CPU
    cpu, label, nth = draw(st.sampled_from(points))
    to = draw(st.integers(0, config.cpus - 1))
    return replace(base, preempts=(PreemptSpec(cpu, label, nth, to),))
