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
* the schedule is drawn as runs (CPU, length), so one CPU can get far ahead of
  another, into the middle of its flow, in a single draw;
* NMI and panic points are drawn from the steps the scenario actually executes: it is
  run once without NMIs and ``(cpu, label, nth)`` is sampled from the trace (for
  ``both``, from the steps both variants execute, so an NMI never fires in one variant
  only), mostly from steps inside state-changing primitives taken with IRQs off (or in
  IPI context) that this CPU has executed before: with IRQs off only an NMI can come in
  between, so the schedule cannot reach those windows, and a step's second execution
  is where the first one left state behind to lose;
* the machine configuration keeps its defaults most of the time and sometimes has
  quirks (CPUs offline at boot, VMX disabled by firmware, no EPT, ...).

Shrinking: every choice shrinks towards the simple case (the first name, the
protocol's next step, no quirks, the earliest step, fewer ops), and the campaign's
delta debugging (``vmxfuzz.minimize``) makes every reported reproducer 1-minimal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from ..executor import run
from ..kernel.state import Config
from ..machine.faults import SITES, FaultSpec
from ..scenario import NESTED_OPS, Op, Scenario
from ..sched import NmiSpec, TraceEvent

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
    """Mostly the default machine; one time in eight a machine with quirks."""
    cpus = draw(st.sampled_from([c for c in (2, 1, 3, 4) if c <= max_cpus]))
    use_nested = draw(st.booleans()) if nested is None else nested
    if cpus < 2 or draw(st.integers(0, 7)) < 7:
        return Config(cpus=cpus, nested=use_nested)
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
    )


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


@st.composite
def ops(draw: Any, cpus: int, nested: bool) -> tuple[Op, ...]:
    """A prefix that sets things up, a body, and usually a crash or a kexec."""
    seq: list[Op] = []
    names = _Names()
    if draw(st.integers(0, 9)) > 0:
        seq.append(Op("module_load", 0))
        if draw(st.integers(0, 9)) > 0:
            seq.append(Op("create_vm", 0, vm=names.new(draw, names.vms, "vm")))
    # Category first, so the many nested and rare kinds do not dilute the vCPU ops
    # that set up the interesting states (several VMCSes loaded on one CPU).
    categories = [BASIC, BASIC, BASIC, RARE] + ([tuple(NESTED_OPS)] if nested else [])
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(draw(st.sampled_from(categories))))
        cpu = draw(st.integers(0, cpus - 1))
        parallel = bool(seq) and draw(st.integers(0, 4)) == 0
        if kind == "create_vm":
            seq.append(Op(kind, cpu, parallel, vm=names.new(draw, names.vms, "vm")))
        elif kind == "destroy_vm":
            seq.append(Op(kind, cpu, parallel, vm=names.used(draw, names.vms, "vm0")))
        elif kind == "create_vcpu":
            vm = names.used(draw, names.vms, "vm0")
            vcpu = names.new(draw, names.vcpus, "v")
            seq.append(Op(kind, cpu, parallel, vm=vm, vcpu=vcpu))
        elif kind == "run_vcpu":
            seq.append(Op(kind, cpu, parallel, vcpu=names.used(draw, names.vcpus, "v0")))
        elif kind in NESTED_OPS:
            vcpu = names.used(draw, names.vcpus, "v0")
            state = names.l1.get(vcpu, "off")
            if draw(st.integers(0, 3)) > 0:  # mostly what L1 would do next
                kind = draw(st.sampled_from(L1_NEXT[state]))
            names.l1[vcpu] = L1_AFTER.get((state, kind), state)
            seq.append(Op(kind, cpu, parallel, vcpu=vcpu))
        elif kind in ("cpu_offline", "cpu_online"):
            if cpus < 2:
                continue
            target = draw(st.integers(1, cpus - 1))
            seq.append(Op(kind, 0, parallel, target=target))
        else:
            seq.append(Op(kind, 0, parallel))
    if draw(st.integers(0, 4)) > 0:
        seq.append(Op(draw(st.sampled_from(TERMINAL)), draw(st.integers(0, cpus - 1))))
    return tuple(seq)


def faults() -> st.SearchStrategy[tuple[FaultSpec, ...]]:
    one = st.sampled_from(sorted(SITES)).flatmap(
        lambda site: st.builds(
            FaultSpec,
            site=st.just(site),
            nth=st.integers(1, 3),
            cpu=st.none(),
            kind=st.sampled_from(SITES[site][0]),
        )
    )
    return st.lists(one, max_size=2).map(tuple)


def schedules(cpus: int) -> st.SearchStrategy[tuple[int, ...]]:
    """Runs of (CPU, length): one draw lets a CPU get well ahead of the others."""
    runs = st.lists(st.tuples(st.integers(0, cpus - 1), st.integers(1, 24)), max_size=5)
    return runs.map(lambda rs: tuple(c for c, n in rs for _ in range(n)))


# Steps inside the primitives that change state another context can observe half-done:
# the per-CPU list, the VMCS cache, CR4/PT, the crash bitmap.  An NMI between two of
# their steps is where the interesting windows are.
HOT_FUNCTIONS = frozenset(
    {
        "list_add",
        "list_del",
        "INIT_LIST_HEAD",
        "vmcs_clear",
        "vmcs_load",
        "vmcs_read",
        "vmcs_write",
        "__loaded_vmcs_clear",
        "loaded_vmcs_init",
        "loaded_vmcs_clear",
        "crash_enable_local_vmclear",
        "crash_disable_local_vmclear",
        "cr4_set_bits",
        "cr4_clear_bits",
        "kvm_cpu_vmxon",
        "intel_pt_handle_vmx",
        "smp_wmb",
        "smp_rmb",
        "vmx_vcpu_load_vmcs",
        "alloc_loaded_vmcs",
        "alloc_shadow_vmcs",
        "__vmx_vcpu_run",
        "vmx_vcpu_run",
        "free_nested",
        "kvm_cpu_vmxoff",
        "ept_sync_global",
    }
)
_IRQS_OFF = frozenset({"local_irq_disable:cli", "local_irq_save:cli"})
_IRQS_ON = frozenset({"local_irq_enable:sti", "local_irq_restore:popf"})

Point = tuple[int, str, int]


def _points(trace: list[TraceEvent]) -> list[Point]:
    return [(e.cpu, e.label, e.nth) for e in trace if e.context != "crash"]


def nmi_points(base: Scenario, variants: tuple[str, ...]) -> list[Point]:
    """The ``(cpu, label, nth)`` steps every requested variant executes, in order.

    The atheris decoder indexes this list, so its order is part of the corpus format.
    """
    return NmiTargets.of(base, variants).all


def _masked(trace: list[TraceEvent]) -> set[Point]:
    """Steps taken with IRQs off or in IPI context: only an NMI can come in before them.

    A step is masked when its CPU executed ``local_irq_disable``/``save`` and not yet
    the matching enable/restore; "before the enable" still counts (the window is open
    until the enable has run).
    """
    off: dict[int, bool] = defaultdict(bool)
    out: set[Point] = set()
    for e in trace:
        if e.context == "crash":
            continue
        if off[e.cpu] or e.context == "ipi":
            out.add((e.cpu, e.label, e.nth))
        if e.label in _IRQS_OFF:
            off[e.cpu] = True
        elif e.label in _IRQS_ON:
            off[e.cpu] = False
    return out


@dataclass(frozen=True)
class NmiTargets:
    """Where an NMI can go in one scenario: every step, and narrower pools of it."""

    all: list[Point]
    hot: list[Point]  # steps of the state-changing primitives
    masked: list[Point]  # hot steps taken with IRQs off (or in an IPI)
    repeat: list[Point]  # masked steps this CPU has executed before (nth >= 2)

    @classmethod
    def of(cls, base: Scenario, variants: tuple[str, ...]) -> NmiTargets:
        traces = [run(base, v).trace for v in variants]
        first = _points(traces[0])
        common = set(first).intersection(*(set(_points(t)) for t in traces[1:]))
        points = [p for p in first if p in common]
        hot = [p for p in points if p[1].split(":", 1)[0] in HOT_FUNCTIONS]
        in_masked = _masked(traces[0])
        masked = [p for p in hot if p in in_masked]
        return cls(points, hot, masked, [p for p in masked if p[2] >= 2])

    def pool(self, name: str) -> list[Point]:
        """The named pool, or the next wider one while it is empty."""
        order = ("repeat", "masked", "hot", "all")
        for n in order[order.index(name) :]:
            if getattr(self, n):
                return list(getattr(self, n))
        return self.all


# Pool weights.  Most NMIs go to a repeated masked step: the first time a CPU runs a
# primitive it rarely has anything to lose, the second time the first one's state
# (a VMCS on the list, CR4.VMXE set) is there to be lost; measured on generated
# scenarios, that pool holds a seed-window step about 4x as often as the masked pool
# and 10x as often as the hot one (docs/performance.md).  The wider pools keep every
# step reachable.
POOLS = ("all", "hot", "masked", "repeat", "repeat", "repeat")


@st.composite
def scenarios(
    draw: Any,
    variants: tuple[str, ...] = ("reference", "patched"),
    max_cpus: int = 4,
    nested: bool | None = None,
) -> Scenario:
    config = draw(configs(max_cpus, nested))
    body = draw(ops(config.cpus, config.nested))
    schedule = draw(schedules(config.cpus))
    injected = draw(faults())
    base = Scenario(body, config, schedule, (), injected)
    count = draw(st.sampled_from((1, 2, 0)))
    if not count:
        return base  # no pre-run needed
    targets = NmiTargets.of(base, variants)
    nmis: list[NmiSpec] = []
    for _ in range(count if targets.all else 0):
        pool = targets.pool(draw(st.sampled_from(POOLS)))
        cpu, label, nth = draw(st.sampled_from(pool))
        kind = draw(st.sampled_from(("panic", "panic", "benign")))
        nmis.append(NmiSpec(cpu, label, nth, kind))
    return Scenario(body, config, schedule, tuple(nmis), injected)
