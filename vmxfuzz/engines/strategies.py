"""Hypothesis strategies for whole scenarios.

Generation aims at the interesting places fast:

* operations are drawn over the spec's vocabulary with small name spaces (one or two
  VMs, three vCPUs), so ops mostly hit objects that exist;
* every op sequence is a legal userspace program (the model enforces the kernel's
  serialisation rules itself), so nothing needs filtering;
* NMI and panic points are drawn from the steps the scenario actually executes: the
  scenario is run once without NMIs and ``(cpu, label, nth)`` is sampled from the
  trace (for ``both``, from the steps both variants execute, so an NMI never fires in
  one variant only).  Shrinking moves them towards earlier steps.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from ..executor import run
from ..kernel.state import Config
from ..machine.faults import SITES, FaultSpec
from ..scenario import NESTED_OPS, Op, Scenario
from ..sched import NmiSpec

VCPUS = ("v0", "v1", "v2")
VMS = ("vm0", "vm0", "vm0", "vm1")  # mostly the VM the prefix creates
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


@st.composite
def ops(draw: Any, cpus: int, nested: bool) -> tuple[Op, ...]:
    """A prefix that sets things up, a body, and usually a crash or a kexec."""
    seq: list[Op] = []
    if draw(st.integers(0, 9)) > 0:
        seq.append(Op("module_load", 0))
        if draw(st.integers(0, 9)) > 0:
            seq.append(Op("create_vm", 0, vm="vm0"))
    # Category first, so the many nested and rare kinds do not dilute the vCPU ops
    # that set up the interesting states (several VMCSes loaded on one CPU).
    categories = [BASIC, BASIC, BASIC, RARE] + ([tuple(NESTED_OPS)] if nested else [])
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(draw(st.sampled_from(categories))))
        cpu = draw(st.integers(0, cpus - 1))
        parallel = bool(seq) and draw(st.integers(0, 4)) == 0
        if kind in ("create_vm", "destroy_vm"):
            seq.append(Op(kind, cpu, parallel, vm=draw(st.sampled_from(VMS))))
        elif kind == "create_vcpu":
            seq.append(
                Op(
                    kind,
                    cpu,
                    parallel,
                    vm=draw(st.sampled_from(VMS)),
                    vcpu=draw(st.sampled_from(VCPUS)),
                )
            )
        elif kind == "run_vcpu" or kind in NESTED_OPS:
            seq.append(Op(kind, cpu, parallel, vcpu=draw(st.sampled_from(VCPUS))))
        elif kind in ("cpu_offline", "cpu_online"):
            if cpus < 2:
                continue
            target = draw(st.integers(1, cpus - 1))
            seq.append(Op(kind, 0 if target else 1, parallel, target=target))
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


def nmi_points(base: Scenario, variants: tuple[str, ...]) -> list[tuple[int, str, int]]:
    """The ``(cpu, label, nth)`` steps every requested variant executes, in order."""
    traces = [
        [(e.cpu, e.label, e.nth) for e in run(base, v).trace if e.context != "crash"]
        for v in variants
    ]
    common = set(traces[0]).intersection(*map(set, traces[1:]))
    return [p for p in traces[0] if p in common]


@st.composite
def scenarios(
    draw: Any,
    variants: tuple[str, ...] = ("reference", "patched"),
    max_cpus: int = 4,
    nested: bool | None = None,
) -> Scenario:
    cpus = draw(st.sampled_from([c for c in (2, 1, 3, 4) if c <= max_cpus]))
    use_nested = draw(st.booleans()) if nested is None else nested
    config = Config(cpus=cpus, nested=use_nested)
    body = draw(ops(cpus, use_nested))
    schedule = tuple(draw(st.lists(st.integers(0, cpus - 1), max_size=40)))
    injected = draw(faults())
    base = Scenario(body, config, schedule, (), injected)
    nmis: list[NmiSpec] = []
    points = nmi_points(base, variants)
    hot = [p for p in points if p[1].split(":", 1)[0] in HOT_FUNCTIONS]
    if points:
        for _ in range(draw(st.sampled_from((1, 2, 0)))):
            pool = hot if hot and draw(st.integers(0, 3)) else points
            cpu, label, nth = draw(st.sampled_from(pool))
            kind = draw(st.sampled_from(("panic", "panic", "benign")))
            nmis.append(NmiSpec(cpu, label, nth, kind))
    return Scenario(body, config, schedule, tuple(nmis), injected)
