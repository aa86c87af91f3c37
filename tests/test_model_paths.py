"""Each modelled kernel path, driven through a scenario, with its exact outcome.

These pin the models' behaviour on the paths the examples do not cover: error
returns of every op, allocation and init-step failures, the nested VMX paths, the
crash and reboot variants (second panic, NMI-context panic, no kdump kernel).
"""

from __future__ import annotations

from typing import Any

import pytest

from vmxfuzz.differential import run_both
from vmxfuzz.executor import Result, run
from vmxfuzz.kernel.state import Config
from vmxfuzz.machine.faults import FaultSpec
from vmxfuzz.scenario import Op, Scenario
from vmxfuzz.sched import NmiSpec

L, VM, VM1 = Op("module_load"), Op("create_vm", vm="vm0"), Op("create_vm", vm="vm1")


def C(vcpu: str = "v0", cpu: int = 0, vm: str = "vm0") -> Op:
    return Op("create_vcpu", cpu, vm=vm, vcpu=vcpu)


def R(vcpu: str = "v0", cpu: int = 0) -> Op:
    return Op("run_vcpu", cpu, vcpu=vcpu)


def N(op: str, cpu: int = 0, vcpu: str = "v0") -> Op:
    return Op(op, cpu, vcpu=vcpu)


def go(
    ops: list[Op],
    variant: str = "patched",
    faults: tuple[FaultSpec, ...] = (),
    nmis: tuple[NmiSpec, ...] = (),
    schedule: tuple[int, ...] = (),
    **config: Any,
) -> Result:
    cfg = Config(**{"cpus": 2, **config})
    return run(Scenario(tuple(ops), cfg, schedule, nmis, faults), variant)


BOTH = pytest.mark.parametrize("variant", ["reference", "patched"])


# ---- op-level errors ------------------------------------------------------------------------
@BOTH
def test_op_errors(variant: str) -> None:
    ops = [
        VM,  # no /dev/kvm yet
        Op("module_unload"),  # not loaded
        L,
        L,  # already loaded
        VM,
        VM,  # name taken
        C(vm="nope"),
        C(),
        C(),  # duplicate vCPU
        R("nope"),
        Op("destroy_vm", vm="nope"),
        Op("module_unload"),  # a VM pins the module
        Op("cpu_online", 0, target=1),  # already online
        Op("destroy_vm", vm="vm0"),
        Op("module_unload"),
    ]
    r = go(ops, variant)
    assert r.op_results == [
        "-ENOENT",
        "-ENOENT",
        "0",
        "-EEXIST",
        "0",
        "-EEXIST",
        "-ENOENT",
        "0",
        "-EEXIST",
        "-ENOENT",
        "-ENOENT",
        "-EBUSY",
        "-EBUSY",
        "0",
        "0",
    ]
    assert r.violations == []


def test_hotplug_errors_and_offline_cpu_ops() -> None:
    ops = [
        L,
        Op("cpu_offline", 0, target=1),
        Op("cpu_offline", 0, target=1),  # already offline
        Op("module_load", 1),  # op on an offline CPU is not run
        Op("cpu_online", 0, target=1),
    ]
    r = go(ops)
    assert r.op_results == ["0", "0", "-ENODEV", "cpu offline", "0"]


def test_cannot_offline_the_last_cpu() -> None:
    r = go([Op("cpu_offline", 1, target=0)], cpus=2, offline=(1,))
    assert r.op_results == ["cpu offline"]
    r = go([Op("cpu_offline", 0, target=1), Op("cpu_offline", 1, target=0)], cpus=2)
    assert r.op_results == ["0", "cpu offline"]


# ---- module init failures --------------------------------------------------------------------
@BOTH
@pytest.mark.parametrize(
    ("config", "result"),
    [
        ({"no_vmx": (0,)}, "-EOPNOTSUPP"),
        ({"bios_disabled": (0,)}, "-EOPNOTSUPP"),
        ({"cr4_mismatch": (1,)}, "-EIO"),
        ({"vmx_caps_mismatch": (1,)}, "-EIO"),
    ],
)
def test_module_load_checks(variant: str, config: dict[str, Any], result: str) -> None:
    r = go([L, VM, L], variant, **config)
    assert r.op_results == [result, "-ENOENT", result]
    assert r.violations == []


@BOTH
def test_unload_and_reload(variant: str) -> None:
    r = go([L, VM, C(), Op("destroy_vm", vm="vm0"), Op("module_unload"), L, VM, C()], variant)
    assert r.op_results == ["0"] * 8 and r.violations == []


# ---- allocation failures on vCPU and VM paths ----------------------------------------------
@BOTH
@pytest.mark.parametrize(
    ("site", "nth", "result"),
    [
        ("alloc_vm", 1, "-ENOMEM"),
        ("alloc_vcpu", 1, "-ENOMEM"),
        ("alloc_vmcs", 1, "-ENOMEM"),
        ("alloc_msr_bitmap", 1, "-ENOMEM"),
        ("vcpu_setup", 1, "-ENOMEM"),
    ],
)
def test_vcpu_creation_failures_unwind(variant: str, site: str, nth: int, result: str) -> None:
    ops = [L, VM, C(cpu=1), C("v1", 0), R("v1", 1), Op("destroy_vm", vm="vm0")]
    r = go(ops, variant, faults=(FaultSpec(site, nth),))
    first = 1 if site == "alloc_vm" else 2
    assert r.op_results[first] == result
    assert r.violations == []


# ---- nested VMX paths ---------------------------------------------------------------------------
def test_nested_errors_seen_by_l1() -> None:
    ops = [
        L,
        VM,
        C(),
        N("l1_vmptrld"),
        N("l1_vmlaunch"),
        N("l1_vmxoff"),
        N("l1_vmclear"),
        N("l2_exit"),
        N("l1_vmxon"),
        N("l1_vmxon"),
        N("l1_vmlaunch"),  # no current vmcs12
        N("l1_vmptrld"),
        N("l1_vmresume"),  # vmcs12 not launched
        N("l1_vmptrld"),  # same vmptr again: nothing to release
        N("l1_vmlaunch"),
        N("l1_vmlaunch"),  # already in L2: L1 cannot execute it
        N("l2_exit"),
        N("l1_vmlaunch"),  # vmcs12 launched: VMLAUNCH fails
        N("l1_vmclear"),
        N("l1_vmlaunch"),
        N("l1_vmxoff"),
    ]
    r = go(ops, nested=True)
    assert r.op_results[3:] == [
        "L1 #UD",
        "L1 #UD",
        "L1 #UD",
        "L1 #UD",
        "not in L2",
        "VMsucceed",
        "VMfailValid",
        "VMfailInvalid",
        "VMsucceed",
        "VMfailValid",
        "VMsucceed",
        "L2 entered",
        "L1 #UD",
        "L1 resumed",
        "VMfailValid",
        "VMsucceed",
        "VMfailInvalid",
        "VMsucceed",
    ]
    assert r.violations == []


def test_l1_vmxon_needs_nested() -> None:
    assert go([L, VM, C(), N("l1_vmxon")], nested=False).op_results[-1] == "L1 #UD"


@BOTH
@pytest.mark.parametrize(
    "site",
    [
        FaultSpec("alloc_vmcs", 2),  # vmcs02 (the 1st is vmcs01)
        FaultSpec("alloc_msr_bitmap", 2),
        FaultSpec("alloc_cached_vmcs12"),
        FaultSpec("alloc_cached_shadow_vmcs12"),
        FaultSpec("alloc_shadow_vmcs"),
    ],
    ids=lambda f: f"{f.site}#{f.nth}",
)
def test_l1_vmxon_allocation_failures_unwind(variant: str, site: FaultSpec) -> None:
    ops = [L, VM, C(), N("l1_vmxon"), N("l1_vmxon"), N("l1_vmptrld"), Op("destroy_vm", vm="vm0")]
    r = go(ops, variant, faults=(site,), nested=True)
    assert r.op_results[3:6] == ["-ENOMEM", "VMsucceed", "VMsucceed"]
    assert r.violations == []


@BOTH
def test_nested_without_shadow_vmcs(variant: str) -> None:
    ops = [
        L,
        VM,
        C(),
        N("l1_vmxon"),
        N("l1_vmptrld"),
        N("l1_vmlaunch"),
        N("l2_exit"),
        N("l1_vmclear"),
        N("l1_vmxoff"),
        Op("kexec", 1),
    ]
    r = go(ops, variant, nested=True, shadow_vmcs=False)
    assert r.op_results[3:9] == ["VMsucceed"] * 2 + ["L2 entered", "L1 resumed"] + ["VMsucceed"] * 2
    assert r.violations == [] and r.kexec_checked


@BOTH
def test_destroy_while_in_l2_leaves_nested_first(variant: str) -> None:
    ops = [
        L,
        VM,
        C(),
        N("l1_vmxon"),
        N("l1_vmptrld"),
        N("l1_vmlaunch"),
        Op("destroy_vm", 1, vm="vm0"),
        Op("module_unload"),
    ]
    r = go(ops, variant, nested=True)
    assert r.op_results[-2:] == ["0", "0"]
    assert r.violations == []


# ---- crash and reboot variants -------------------------------------------------------------------
@BOTH
def test_panic_without_kdump_kernel_has_no_kexec_check(variant: str) -> None:
    r = go([L, VM, C(), Op("panic", 1)], variant, kexec_loaded=False)
    assert r.ended == "panic without kdump kernel" and not r.kexec_checked


def _ran(r: Result, cpu: int, context_name: str, label: str) -> bool:
    return any(e.cpu == cpu and e.name == context_name and e.label == label for e in r.trace)


@BOTH
def test_two_cpus_panic_the_second_stops_and_is_shot_down(variant: str) -> None:
    ops = [L, VM, C(), C("v1", 1), Op("panic", 0), Op("panic", 1, parallel=True)]
    r = go(ops, variant, schedule=(0, 1) * 40)
    assert r.kexec_checked and r.violations == []
    # CPU 1 lost the race (panic_smp_self_stop) and was then shot down like the others.
    assert _ran(r, 1, "panic", "panic:cmpxchg_panic_cpu")
    assert _ran(r, 1, "NMI(crash shootdown)", "crash_nmi_callback:halt")


@BOTH
def test_nmi_panic_that_loses_the_race_runs_the_crash_callback(variant: str) -> None:
    ops = [L, VM, C(), C("v1", 1), Op("panic", 0), Op("run_vcpu", 1, True, vcpu="v1")]
    nmis = (NmiSpec(1, "kvm_vcpu_ioctl:fdget", 1, "panic"),)
    r = go(ops, variant, nmis=nmis, schedule=(0,) * 3 + (1,) * 50)
    assert r.kexec_checked and r.violations == []
    # The watchdog NMI on CPU 1 found CPU 0 panicking: nmi_panic_self_stop waited for
    # the crash IPI and ran the crash callback from its own NMI context.
    assert _ran(r, 1, "NMI(panic)", "nmi_panic:cmpxchg_panic_cpu")
    assert _ran(r, 1, "NMI(panic)", "crash_nmi_callback:halt")


@BOTH
def test_benign_nmi_is_harmless(variant: str) -> None:
    nmis = (NmiSpec(0, "list_add:publish", 1, "benign"),)
    r = go([L, VM, C(), Op("kexec")], variant, nmis=nmis)
    assert r.violations == [] and any(e.label == "nmi_handle:benign" for e in r.trace)


@BOTH
def test_orderly_reboot_with_a_benign_nmi_in_flight(variant: str) -> None:
    ops = [L, VM, C(), Op("reboot", 0)]
    nmis = (NmiSpec(1, "smp_call_function_many:wait", 1, "benign"),)
    r = go(ops, variant, nmis=nmis)
    assert r.kexec_checked and r.ended == "kexec (reboot)"
    assert r.violations == []


def test_vmx_faults_are_skipped_while_rebooting() -> None:
    """After kvm_reboot, KVM's VMX wrappers skip faults (kvm_spurious_fault)."""
    ops = [L, VM, C(), C("v1", 1), Op("reboot", 0), Op("run_vcpu", 1, True, vcpu="v1")]
    r = go(ops, "patched", schedule=(0,) * 60 + (1,) * 200)
    assert "oops" not in r.invariants


def test_differential_behaviour_class() -> None:
    """An NMI at a label only one variant has gives a `behaviour` difference."""
    sc = Scenario(
        (L, VM, C(), Op("kexec")),
        Config(cpus=1),
        nmis=(NmiSpec(0, "crash_enable_local_vmclear:set_bit", 1, "panic"),),
    )
    d = run_both(sc)
    (f,) = d.findings
    assert f.cls == "behaviour" and "NMI #0 fired only in reference" in f.explanation
