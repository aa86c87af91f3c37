"""Every invariant of spec section 8 (``vmxfuzz.oracle.INVARIANTS``): at least one
scenario that triggers it and one where it stays quiet, run through the executor.

Real scenarios of the two models come first.  Where neither model can reach an
invariant (or only through a long race), a *test variant* replaces one kernel function
in the variant's namespace, exactly how plug-ins work:
``SimpleNamespace(**{**vars(build("patched")), "name": replacement})`` (``helpers.variant``).

The last part pins the known real findings exactly (spec section 9 classes included).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import (
    EXAMPLES,
    LOAD,
    create_vcpu,
    create_vm,
    run_vcpu,
    scenario,
    variant,
    violations,
)

from vmxfuzz.differential import run_both
from vmxfuzz.executor import Result, run
from vmxfuzz.kernel.state import EBUSY, EFAULT
from vmxfuzz.machine.errors import CpuException
from vmxfuzz.machine.faults import FaultSpec
from vmxfuzz.oracle import INVARIANTS
from vmxfuzz.scenario import Op, Scenario, load
from vmxfuzz.sched import NmiSpec
from vmxfuzz.variants import build

Flow = Generator[Any, Any, Any]

SPEC_IDS = {
    "kexec-active-vmcs",
    "oops",
    "vmcs-active-on-two-cpus",
    "list-corrupt",
    "use-after-free",
    "vmxe-leak",
    "current-vmcs-stale",
    "hook-before-setup",
    "initdata-after-init",
    "hang",
    "restart-vmx-on",  # beyond spec section 8: the emergency restart (issue 14, item 3)
}

# ---- scenarios ----
SEED = EXAMPLES / "seed-nmi-in-list-add.json"
VMXON_GP = EXAMPLES / "vmxon-gp.json"

# A vCPU created on CPU 0 runs on CPU 1, then back on CPU 0 (two migrations).
MIGRATE = scenario(LOAD, create_vm(), create_vcpu("v0"), run_vcpu("v0", 1), run_vcpu("v0", 0))
# Create, destroy, unload: every VMCS is cleared and freed.
LIFECYCLE = scenario(
    LOAD, create_vm(), create_vcpu("v0"), Op("destroy_vm", vm="vm0"), Op("module_unload"), cpus=1
)
GP = FaultSpec("vmxon", 1, 0, "GP")
# VMXON #GP during the first VM creation, then a second VM creation (spec 6.2 / 6.3).
VMXON_GP_TWICE = scenario(LOAD, create_vm("vm0"), create_vm("vm1"), cpus=1, faults=[GP])
# A CPU with VMX disabled by firmware is offline at module load (so the compat check
# never runs there), comes online while a VM exists, and a vCPU is run on it.
HOTPLUG_NO_VMX = scenario(
    LOAD,
    create_vm(),
    Op("cpu_online", 0, target=1),
    create_vcpu("v0", 0),
    run_vcpu("v0", 1),
    bios_disabled=(1,),
    offline=(1,),
    kexec_loaded=False,
)
# A CPU with VMX disabled by firmware comes online (patched: VMXON's #GP is handled and
# CR4.VMXE cleared again) and SysRq-B runs there: emergency_vmx_disable_all() looks at
# that CPU's CR4.VMXE only, so CPU 0 restarts in VMX operation.
RESTART_FROM_CPU_WITHOUT_VMX = scenario(
    LOAD,
    create_vm(),
    Op("cpu_online", 0, target=1),
    Op("emergency_restart", 1),
    bios_disabled=(1,),
    offline=(1,),
    kexec_loaded=False,
)
# SysRq-B on a CPU in VMX operation: VMXOFF here, the VMXOFF NMI for the others.
RESTART_FROM_VMX_CPU = scenario(
    LOAD, create_vm(), create_vcpu("v0"), run_vcpu("v0", 1), Op("emergency_restart", 0)
)
# L1 enables VMCS shadowing and runs; a panic then finds the cached shadow VMCS.
NESTED_SHADOW_PANIC = scenario(
    LOAD,
    create_vm(),
    create_vcpu("v0"),
    Op("l1_vmxon", vcpu="v0"),
    Op("l1_vmptrld", vcpu="v0"),
    run_vcpu("v0", 0),
    Op("panic", 1),
    nested=True,
)


def vm_in_the_failed_init_window() -> Scenario:
    """``create_vm`` on CPU 1 right after ``kvm_init`` registered /dev/kvm, while
    ``vmx_init`` goes on to fail at ``vmx_setup_l1d_flush`` (then ``create_vcpu``).

    The schedule lets CPU 0 run exactly up to ``kvm_init:misc_register`` (counted from
    a solo run, so it follows the model's step count), then prefers CPU 1.
    """
    solo = run(scenario(LOAD), "patched")
    labels = [(e.cpu, e.label) for e in solo.trace]
    upto = labels.index((0, "kvm_init:misc_register")) + 1
    cpu0_steps = 1 + sum(1 for c, _ in labels[:upto] if c == 0)  # +1: starting the task
    return scenario(
        LOAD,
        create_vm("vm0", cpu=1, parallel=True),
        create_vcpu("vcpu0", cpu=1),
        schedule=[0] * cpu0_steps + [1] * 64,
        faults=[FaultSpec("vmx_setup_l1d_flush")],
    )


# ---- test variants ----
def load_vmcs_without_clear(k: Any, vmx: Any, cpu: int) -> Flow:
    """vmx_vcpu_load_vmcs (seed) that skips loaded_vmcs_clear: no VMCLEAR on the old CPU."""
    yield "vmx_vcpu_load_vmcs:read_cpu"
    already_loaded = vmx.loaded_vmcs.cpu == cpu
    if not already_loaded:
        yield from k.f.local_irq_disable(k)
        yield from k.f.smp_rmb(k)
        link = vmx.loaded_vmcs.loaded_vmcss_on_cpu_link
        yield from k.f.list_add(k, link, k.loaded_vmcss_on_cpu[cpu])
        yield from k.f.local_irq_enable(k)
    yield "vmx_vcpu_load_vmcs:read_current_vmcs"
    if k.current_vmcs[cpu] is not vmx.loaded_vmcs.vmcs:
        yield "vmx_vcpu_load_vmcs:set_current_vmcs"
        k.current_vmcs[cpu] = vmx.loaded_vmcs.vmcs
        yield from k.f.vmcs_load(k, vmx.loaded_vmcs.vmcs)
    if not already_loaded:
        yield "vmx_vcpu_load_vmcs:set_cpu"
        vmx.loaded_vmcs.cpu = cpu


def load_vmcs_without_list_add(k: Any, vmx: Any, cpu: int) -> Flow:
    """vmx_vcpu_load_vmcs that VMPTRLDs but never puts the loaded_vmcs on the list."""
    yield "vmx_vcpu_load_vmcs:read_cpu"
    already_loaded = vmx.loaded_vmcs.cpu == cpu
    if not already_loaded:
        yield from k.f.loaded_vmcs_clear(k, vmx.loaded_vmcs)
    yield "vmx_vcpu_load_vmcs:read_current_vmcs"
    if k.current_vmcs[cpu] is not vmx.loaded_vmcs.vmcs:
        yield "vmx_vcpu_load_vmcs:set_current_vmcs"
        k.current_vmcs[cpu] = vmx.loaded_vmcs.vmcs
        yield from k.f.vmcs_load(k, vmx.loaded_vmcs.vmcs)
    if not already_loaded:
        yield "vmx_vcpu_load_vmcs:set_cpu"
        vmx.loaded_vmcs.cpu = cpu


def clear_without_list_del(k: Any, lv: Any) -> Flow:
    """__loaded_vmcs_clear (seed) that forgets list_del: the entry stays on the list."""
    cpu = k.cpu
    yield "__loaded_vmcs_clear:read_cpu"
    if lv.cpu != cpu:
        return
    yield "__loaded_vmcs_clear:current_vmcs"
    if k.current_vmcs[cpu] is lv.vmcs:
        k.current_vmcs[cpu] = None
    yield from k.f.vmcs_clear(k, lv.vmcs)
    yield "__loaded_vmcs_clear:cpu"
    lv.cpu = -1
    yield "__loaded_vmcs_clear:launched"
    lv.launched = 0


def clear_keeping_current_vmcs(k: Any, lv: Any) -> Flow:
    """__loaded_vmcs_clear (seed) that forgets ``per_cpu(current_vmcs) = NULL``."""
    cpu = k.cpu
    yield "__loaded_vmcs_clear:read_cpu"
    if lv.cpu != cpu:
        return
    yield from k.f.vmcs_clear(k, lv.vmcs)
    yield from k.f.list_del(k, lv.loaded_vmcss_on_cpu_link)
    yield from k.f.smp_wmb(k)
    yield "__loaded_vmcs_clear:cpu"
    lv.cpu = -1
    yield "__loaded_vmcs_clear:launched"
    lv.launched = 0


def free_without_clear(k: Any, lv: Any) -> Flow:
    """free_loaded_vmcs that frees the VMCS without loaded_vmcs_clear (still active)."""
    yield "free_loaded_vmcs:read_vmcs"
    if lv.vmcs is None:
        return
    yield from k.f.free_vmcs(k, lv.vmcs)
    yield "free_loaded_vmcs:vmcs_null"
    lv.vmcs = None


def hardware_enable_forgetting(what: str) -> Callable[[Any], Flow]:
    """Seed hardware_enable whose VMXON fault path forgets to restore ``what``."""

    def hardware_enable(k: Any) -> Flow:
        cpu = k.cpu
        yield "hardware_enable:cr4_read_shadow"
        if k.cpu_state().cr4_shadow_vmxe:
            return EBUSY
        yield from k.f.INIT_LIST_HEAD(k, k.loaded_vmcss_on_cpu[cpu])
        yield from k.f.cr4_set_bits_vmxe(k)
        yield from k.f.intel_pt_handle_vmx(k, 1)
        yield "kvm_cpu_vmxon:vmxon"
        try:
            k.hw.vmxon(cpu, k.vmxarea[cpu])
        except CpuException:
            if what != "pt":
                yield from k.f.intel_pt_handle_vmx(k, 0)
            if what != "cr4":
                yield from k.f.cr4_clear_bits_vmxe(k)
            return EFAULT
        if k.config.ept:
            yield from k.f.ept_sync_global(k)
        return 0

    return hardware_enable


def kvm_arch_init_calling_a_runtime_hook(base: str) -> Callable[[Any, Any], Flow]:
    """kvm_arch_init that calls a runtime hook once it is done (before hardware_setup)."""
    orig = build(base).kvm_arch_init

    def kvm_arch_init(k: Any, opaque: Any) -> Flow:
        r = yield from orig(k, opaque)
        if not r:
            yield from k.f.kvm_x86_call(k, "has_emulated_msr")
        return r

    return kvm_arch_init


def vmx_exit_reading_vmx_x86_ops(base: str) -> Callable[[Any], Flow]:
    """vmx_exit that reads a hook out of ``vmx_x86_ops`` (k.statics) first."""
    orig = build(base).vmx_exit

    def vmx_exit(k: Any) -> Flow:
        yield "vmx_exit:read_vmx_x86_ops"
        k.statics["vmx_x86_ops"].read(k, "hardware_enable")
        yield from orig(k)

    return vmx_exit


def vmx_init_reading_vmx_x86_ops(base: str) -> Callable[[Any], Flow]:
    """vmx_init that reads ``vmx_x86_ops`` while init is still running (legal)."""
    orig = build(base).vmx_init

    def vmx_init(k: Any) -> Flow:
        yield "vmx_init:read_vmx_x86_ops"
        k.statics["vmx_x86_ops"].read(k, "hardware_enable")
        return (yield from orig(k))

    return vmx_init


def spy_hardware_enable(base: str, log: list[dict[str, Any]]) -> Callable[[Any], Flow]:
    """The real hardware_enable, logging its return value and the CPU state around it."""
    orig = build(base).hardware_enable

    def state(k: Any) -> dict[str, bool]:
        c = k.cpu_state()
        return {"vmxe": c.cr4_vmxe, "shadow": c.cr4_shadow_vmxe, "pt_off": c.pt_vmx_off}

    def hardware_enable(k: Any) -> Flow:
        before = state(k)
        r = yield from orig(k)
        log.append({"cpu": k.cpu, "ret": r, "before": before, "after": state(k)})
        return r

    return hardware_enable


# ---- the table: every invariant, triggered and quiet ----
Case = Callable[[], Result]

TRIGGER: dict[str, list[tuple[str, Case]]] = {
    "kexec-active-vmcs": [
        ("seed example, reference", lambda: run(load(SEED), "reference")),
        ("cached shadow VMCS at panic, patched", lambda: run(NESTED_SHADOW_PANIC, "patched")),
    ],
    "oops": [
        ("vmxon-gp example, reference", lambda: run(load(VMXON_GP), "reference")),
        (
            "panic with no VM, patched",
            lambda: run(scenario(LOAD, Op("panic", 1)), "patched"),
        ),
    ],
    "vmcs-active-on-two-cpus": [
        (
            "migration without VMCLEAR (variant)",
            lambda: run(
                MIGRATE,
                "patched",
                functions=variant("patched", vmx_vcpu_load_vmcs=load_vmcs_without_clear),
            ),
        ),
    ],
    "list-corrupt": [
        (
            "clear without list_del (variant)",
            lambda: run(
                MIGRATE,
                "patched",
                functions=variant("patched", __loaded_vmcs_clear=clear_without_list_del),
            ),
        ),
        (
            "load without list_add (variant)",
            lambda: run(
                MIGRATE,
                "patched",
                functions=variant("patched", vmx_vcpu_load_vmcs=load_vmcs_without_list_add),
            ),
        ),
    ],
    "use-after-free": [
        (
            "VM outlives failed vmx_init, patched",
            lambda: run(vm_in_the_failed_init_window(), "patched"),
        ),
        (
            "VMCS freed while active (variant)",
            lambda: run(
                LIFECYCLE,
                "patched",
                functions=variant("patched", free_loaded_vmcs=free_without_clear),
            ),
        ),
    ],
    "vmxe-leak": [
        (
            "VMXON fault path keeps CR4.VMXE (variant)",
            lambda: run(
                VMXON_GP_TWICE,
                "patched",
                functions=variant("patched", hardware_enable=hardware_enable_forgetting("cr4")),
            ),
        ),
        (
            "VMXON fault path keeps PT off (variant)",
            lambda: run(
                VMXON_GP_TWICE,
                "patched",
                functions=variant("patched", hardware_enable=hardware_enable_forgetting("pt")),
            ),
        ),
    ],
    "current-vmcs-stale": [
        ("hot-added CPU without VMX, patched", lambda: run(HOTPLUG_NO_VMX, "patched")),
        (
            "clear keeps per_cpu(current_vmcs) (variant)",
            lambda: run(
                MIGRATE,
                "patched",
                functions=variant("patched", __loaded_vmcs_clear=clear_keeping_current_vmcs),
            ),
        ),
    ],
    "hook-before-setup": [
        (
            "runtime hook from kvm_arch_init, reference (variant)",
            lambda: run(
                scenario(LOAD, create_vm(), cpus=1),
                "reference",
                functions=variant(
                    "reference", kvm_arch_init=kvm_arch_init_calling_a_runtime_hook("reference")
                ),
            ),
        ),
    ],
    "initdata-after-init": [
        (
            "vmx_exit reads vmx_x86_ops, patched (variant)",
            lambda: run(
                scenario(LOAD, Op("module_unload"), cpus=1),
                "patched",
                functions=variant("patched", vmx_exit=vmx_exit_reading_vmx_x86_ops("patched")),
            ),
        ),
    ],
    "hang": [
        ("second VM after VMXON #GP, reference", lambda: run(VMXON_GP_TWICE, "reference")),
    ],
    "restart-vmx-on": [
        (
            "SysRq-B on a CPU without VMX, patched",
            lambda: run(RESTART_FROM_CPU_WITHOUT_VMX, "patched"),
        ),
    ],
}

QUIET: dict[str, list[tuple[str, Case]]] = {
    "kexec-active-vmcs": [
        ("seed example, patched", lambda: run(load(SEED), "patched")),
        (
            "orderly kexec, reference",
            lambda: run(load(EXAMPLES / "clean-orderly-kexec.json"), "reference"),
        ),
    ],
    "oops": [
        ("vmxon-gp example, patched", lambda: run(load(VMXON_GP), "patched")),
        ("panic with no VM, reference", lambda: run(scenario(LOAD, Op("panic", 1)), "reference")),
    ],
    "vmcs-active-on-two-cpus": [
        ("migration, reference", lambda: run(MIGRATE, "reference")),
        ("migration, patched", lambda: run(MIGRATE, "patched")),
    ],
    "list-corrupt": [
        ("migration, reference", lambda: run(MIGRATE, "reference")),
        ("migration, patched", lambda: run(MIGRATE, "patched")),
    ],
    "use-after-free": [
        ("lifecycle, patched", lambda: run(LIFECYCLE, "patched")),
        ("lifecycle, reference", lambda: run(LIFECYCLE, "reference")),
    ],
    "vmxe-leak": [
        ("VMXON #GP, patched", lambda: run(VMXON_GP_TWICE, "patched")),
    ],
    "current-vmcs-stale": [
        ("migration, patched", lambda: run(MIGRATE, "patched")),
        ("migration, reference", lambda: run(MIGRATE, "reference")),
    ],
    "hook-before-setup": [
        ("module load and VM, reference", lambda: run(scenario(LOAD, create_vm()), "reference")),
        ("module load and VM, patched", lambda: run(scenario(LOAD, create_vm()), "patched")),
    ],
    "initdata-after-init": [
        (
            "vmx_exit reads vmx_x86_ops, reference (__ro_after_init: legal)",
            lambda: run(
                scenario(LOAD, Op("module_unload"), cpus=1),
                "reference",
                functions=variant("reference", vmx_exit=vmx_exit_reading_vmx_x86_ops("reference")),
            ),
        ),
        (
            "vmx_init reads vmx_x86_ops during init, patched",
            lambda: run(
                scenario(LOAD, Op("module_unload"), cpus=1),
                "patched",
                functions=variant("patched", vmx_init=vmx_init_reading_vmx_x86_ops("patched")),
            ),
        ),
    ],
    "hang": [
        ("second VM after VMXON #GP, patched", lambda: run(VMXON_GP_TWICE, "patched")),
    ],
    "restart-vmx-on": [
        (
            "SysRq-B on a CPU in VMX operation, reference",
            lambda: run(RESTART_FROM_VMX_CPU, "reference"),
        ),
        (
            "SysRq-B on a CPU in VMX operation, patched",
            lambda: run(RESTART_FROM_VMX_CPU, "patched"),
        ),
    ],
}


def _cases(table: dict[str, list[tuple[str, Case]]]) -> list[Any]:
    return [
        pytest.param(inv, case, id=f"{inv}: {name}")
        for inv, entries in table.items()
        for name, case in entries
    ]


def test_the_invariant_ids_are_the_spec_ids() -> None:
    assert set(INVARIANTS) == SPEC_IDS


def test_every_invariant_has_a_trigger_and_a_quiet_case() -> None:
    assert set(TRIGGER) == set(INVARIANTS)
    assert set(QUIET) == set(INVARIANTS)
    assert all(TRIGGER[i] and QUIET[i] for i in INVARIANTS)


@pytest.mark.parametrize(("inv", "case"), _cases(TRIGGER))
def test_triggered(inv: str, case: Case) -> None:
    r = case()
    assert inv in r.invariants
    for v in r.violations:
        assert v.invariant in SPEC_IDS and v.detail, "every report names a spec invariant"


@pytest.mark.parametrize(("inv", "case"), _cases(QUIET))
def test_quiet(inv: str, case: Case) -> None:
    r = case()
    assert r.violations == [], "the quiet cases are entirely clean"
    assert r.ended in ("idle", "kexec (crash)", "kexec (kexec -e)", "restart (emergency)")


# ---- each invariant in detail ----
def test_vmcs_active_on_two_cpus_names_both_cpus() -> None:
    (case,) = [c for _, c in TRIGGER["vmcs-active-on-two-cpus"]]
    r = case()
    (v,) = [v for v in r.violations if v.invariant == "vmcs-active-on-two-cpus"]
    assert (v.cpu, v.context, v.site) == (1, "task", "vmcs_load:vmptrld")
    assert v.objects == ("VMCS v0.vmcs01.vmcs#3 (of v0.vmcs01)", "CPU 1", "CPU 0")
    assert r.caches[0] == r.caches[1] == ["VMCS v0.vmcs01.vmcs#3 (of v0.vmcs01)"]


@pytest.mark.parametrize("base", ["reference", "patched"])
def test_vmcs_active_on_two_cpus_in_both_versions(base: str) -> None:
    r = run(MIGRATE, base, functions=variant(base, vmx_vcpu_load_vmcs=load_vmcs_without_clear))
    assert "vmcs-active-on-two-cpus" in r.invariants


def test_list_corrupt_ring_and_cache_disagreement() -> None:
    r = TRIGGER["list-corrupt"][0][1]()
    details = sorted(v.detail for v in r.violations)
    assert {v.invariant for v in r.violations} == {"list-corrupt"}
    assert details == [
        "VMCS v0.vmcs01.vmcs#3 (of v0.vmcs01) is active on CPU 0 but loaded_vmcs v0.vmcs01 "
        "is not on that CPU's list",
        "loaded_vmcss_on_cpu[0] is not a well-formed ring",
        "loaded_vmcss_on_cpu[1] is not a well-formed ring",
    ]
    assert all(v.context is None for v in r.violations), "found at a quiescent point"


def test_list_corrupt_active_but_not_on_the_list() -> None:
    """Without list_add the VMCS is active on CPU 0 but on no list (flagged at the first
    quiescent point); the migration's IPI'd list_del then follows the zeroed link."""
    r = TRIGGER["list-corrupt"][1][1]()
    assert violations(r) == [
        ("list-corrupt", "-", None, 0),
        ("oops", "list_del:next_prev", "ipi", 0),
    ]
    assert r.violations[0].detail == (
        "VMCS v0.vmcs01.vmcs#3 (of v0.vmcs01) is active on CPU 0 but loaded_vmcs v0.vmcs01 "
        "is not on that CPU's list"
    )
    assert r.ended == "kexec (crash)", "an oops in IPI context panics"


def test_use_after_free_vmcs_freed_while_active() -> None:
    """The free itself is flagged; VM destruction then walks CPU 0's list (kvm_usage_count
    drops to 0: hardware_disable) and touches the freed vCPU's list node."""
    r = TRIGGER["use-after-free"][1][1]()
    assert violations(r) == [
        ("use-after-free", "free_vmcs:free", "task", 0),
        ("use-after-free", "list_for_each_entry_safe:load", "task", 0),
    ]
    assert r.violations[0].detail == (
        "VMCS v0.vmcs01.vmcs#2 (of v0.vmcs01) freed while active on CPU 0"
    )
    assert "touch of freed list_head v0.vmcs01.link" in r.violations[1].detail
    assert r.op_results == ["0", "0", "0", "oops", "-EBUSY"], (
        "the dying task kept the VM's module ref"
    )


@pytest.mark.parametrize(
    ("forgot", "detail"),
    [
        ("cr4", "leaving CR4.VMXE False->True, CR4 shadow VMXE False->True"),
        ("pt", "leaving PT stopped for VMX False->True"),
    ],
)
def test_vmxe_leak_names_what_was_left_changed(forgot: str, detail: str) -> None:
    fns = variant("patched", hardware_enable=hardware_enable_forgetting(forgot))
    r = run(VMXON_GP_TWICE, "patched", functions=fns)
    (v,) = r.violations
    assert (v.invariant, v.cpu, v.context) == ("vmxe-leak", 0, "task")
    assert v.detail == f"hardware_enable() returned -14 on CPU 0 {detail}"
    # A leaked CR4.VMXE makes every later hardware_enable() return -EBUSY.
    assert r.op_results == ["0", "-EBUSY", "-EBUSY" if forgot == "cr4" else "0"]


def test_current_vmcs_stale_from_a_forgotten_null() -> None:
    """Each migration VMCLEARs the VMCS on the old CPU but leaves per_cpu(current_vmcs)
    naming it there: stale on CPU 0 after the first move, on CPU 1 after the second."""
    r = TRIGGER["current-vmcs-stale"][1][1]()
    assert violations(r) == [
        ("current-vmcs-stale", "-", None, 0),
        ("current-vmcs-stale", "-", None, 1),
    ]
    for v in r.violations:
        assert v.detail == (
            f"per_cpu(current_vmcs, {v.cpu}) = v0.vmcs01.vmcs#3 but the CPU's current-VMCS "
            "pointer is NULL"
        )
    # Back on CPU 0 the stale pointer makes vmx_vcpu_load_vmcs skip the VMPTRLD: the
    # entry finds no current VMCS and userspace sees KVM_EXIT_FAIL_ENTRY.
    assert r.op_results == ["0"] * 4 + ["KVM_EXIT_FAIL_ENTRY"]


def test_hook_before_setup_in_reference_is_a_null_call_with_the_seed() -> None:
    """The seed's point (series 2): runtime hooks exist only once hardware_setup() is
    done.  The same early call is flagged in 5.6, and in 5.6+seed finds a zeroed
    ``kvm_x86_ops`` (a NULL call: oops) instead of a hook that is not ready."""
    sc = scenario(LOAD, create_vm(), cpus=1)
    ref = TRIGGER["hook-before-setup"][0][1]()
    (v,) = ref.violations
    assert (v.invariant, v.site) == ("hook-before-setup", "kvm_x86_ops:load")
    assert v.objects == ("kvm_x86_ops.has_emulated_msr",)
    assert ref.op_results == ["0", "0"], "5.6 carries on with an unpopulated vmcs_config"
    fns = variant("patched", kvm_arch_init=kvm_arch_init_calling_a_runtime_hook("patched"))
    pat = run(sc, "patched", functions=fns)
    assert violations(pat) == [("oops", "kvm_x86_ops:load", "task", 0)]
    assert "NULL hook .has_emulated_msr" in pat.violations[0].detail
    assert pat.op_results == ["oops", "-ENOENT"]


def kvm_arch_init_calling_a_hook_on_load(base: str, nth: int) -> Callable[[Any, Any], Flow]:
    """kvm_arch_init that calls a runtime hook early, on the ``nth`` module load only."""
    orig = build(base).kvm_arch_init
    loads = [0]

    def kvm_arch_init(k: Any, opaque: Any) -> Flow:
        loads[0] += 1
        r = yield from orig(k, opaque)
        if not r and loads[0] == nth:
            yield from k.f.kvm_x86_call(k, "has_emulated_msr")
        return r

    return kvm_arch_init


@pytest.mark.parametrize(
    ("ops", "faults"),
    [
        ((LOAD, LOAD), [FaultSpec("kvm_arch_init:mmu")]),  # first load fails before setup
        ((LOAD, LOAD), [FaultSpec("alloc_vmxarea")]),  # ... inside hardware_setup
    ],
    ids=["reload-after-arch-init-failure", "reload-after-setup-failure"],
)
def test_hook_before_setup_on_a_second_load(ops: tuple[Op, ...], faults: list[FaultSpec]) -> None:
    fns = variant("reference", kvm_arch_init=kvm_arch_init_calling_a_hook_on_load("reference", 2))
    r = run(scenario(*ops, cpus=1, faults=faults), "reference", functions=fns)
    assert r.op_results == ["-ENOMEM", "0"]
    assert violations(r) == [("hook-before-setup", "kvm_x86_ops:load", "task", 0)]


@pytest.mark.parametrize(
    ("ops", "faults"),
    [
        ((LOAD, Op("module_unload"), LOAD), []),
        ((LOAD, LOAD), [FaultSpec("kvm_init:register")]),
        ((LOAD, LOAD), [FaultSpec("vmx_setup_l1d_flush")]),
    ],
    ids=["reload-after-unload", "reload-after-register-failure", "reload-after-l1d-failure"],
)
def test_hook_before_setup_on_a_load_after_hardware_unsetup(
    ops: tuple[Op, ...], faults: list[FaultSpec]
) -> None:
    n = sum(1 for o in ops if o.op == "module_load")
    fns = variant("reference", kvm_arch_init=kvm_arch_init_calling_a_hook_on_load("reference", n))
    r = run(scenario(*ops, cpus=1, faults=faults), "reference", functions=fns)
    assert r.op_results[-1] == "0"
    assert violations(r) == [("hook-before-setup", "kvm_x86_ops:load", "task", 0)]


def test_initdata_after_init_in_patched_only() -> None:
    r = TRIGGER["initdata-after-init"][0][1]()
    assert violations(r) == [("initdata-after-init", "vmx_exit:read_vmx_x86_ops", "task", 0)]
    assert "vmx_x86_ops.hardware_enable (__initdata)" in r.violations[0].detail
    assert r.op_results == ["0", "oops"]


# ---- the known real findings, exactly ----
def test_seed_example_reference_leaks_a_vmcs_patched_is_clean() -> None:
    d = run_both(load(SEED))
    ref, pat = d.reference, d.patched
    (v,) = ref.violations
    assert (v.invariant, v.site, v.context, v.cpu) == (
        "kexec-active-vmcs",
        "machine_kexec:vmcs@list_add:publish",
        "crash",
        0,
    )
    assert v.objects == ("VMCS vcpu0.vmcs01.vmcs#3 (of vcpu0.vmcs01)", "CPU 0")
    assert ref.caches == {0: ["VMCS vcpu0.vmcs01.vmcs#3 (of vcpu0.vmcs01)"], 1: []}
    assert pat.violations == [] and pat.caches == {0: [], 1: []}
    for r in (ref, pat):
        assert r.kexec_checked and r.ended == "kexec (crash)"
        assert r.nmis_fired == [0]
        assert r.op_results == ["0", "0", "0", "0", "interrupted"]
    assert [(f.cls, f.invariant, f.variant) for f in d.findings] == [
        ("fixed", "kexec-active-vmcs", "reference")
    ]


def test_vmxon_gp_example_oops_in_reference_efault_path_in_patched() -> None:
    sc = load(VMXON_GP)
    ref = run(sc, "reference")
    assert violations(ref) == [("oops", "kvm_cpu_vmxon:vmxon", "task", 0)]
    assert ref.violations[0].detail.startswith("#GP: VMXON (injected fault)")
    assert ref.op_results == ["0", "oops"]

    log: list[dict[str, Any]] = []
    pat = run(
        sc,
        "patched",
        functions=variant("patched", hardware_enable=spy_hardware_enable("patched", log)),
    )
    assert pat.violations == []
    assert pat.op_results == ["0", "-EBUSY"]
    clean = {"vmxe": False, "shadow": False, "pt_off": False}
    assert log == [{"cpu": 0, "ret": EFAULT, "before": clean, "after": clean}]
    labels = [e.label for e in pat.trace]
    i = labels.index("kvm_cpu_vmxon:vmxon")
    assert labels[i + 1 :].index("intel_pt_handle_vmx:pt") < labels[i + 1 :].index(
        "cr4_clear_bits:write_cr4"
    ), "PT restored, then CR4.VMXE cleared (6.3)"
    assert pat.warnings[-1] == "CPU 0: kvm: enabling virtualization on CPU0 failed"

    d = run_both(sc)
    assert [(f.cls, f.invariant, f.site) for f in d.findings] == [
        ("fixed", "oops", "kvm_cpu_vmxon:vmxon")
    ]


def test_vmxon_gp_then_a_second_vm_hangs_reference_only() -> None:
    d = run_both(VMXON_GP_TWICE)
    assert violations(d.reference) == [
        ("oops", "kvm_cpu_vmxon:vmxon", "task", 0),
        ("hang", "raw_spin_lock:acquire", "task", 0),
    ]
    assert "kvm_count_lock held by CPU 0" in d.reference.violations[1].detail
    assert d.reference.ended == "hang"
    assert d.patched.violations == [] and d.patched.op_results == ["0", "-EBUSY", "0"]
    # The hang is the oops' consequence (the killed task still holds kvm_count_lock):
    # one finding, the hang folded under it.
    (f,) = d.findings
    assert (f.cls, f.invariant, f.cause) == ("fixed", "oops", "oops/vmxon-fault-without-fixup")
    assert f.consequences == ("hang hang/lock-held-by-killed-task at raw_spin_lock:acquire",)
    assert d.reference.violations[1].consequence_of == f.cause


def test_panic_with_kvm_loaded_and_no_vm_is_a_regression() -> None:
    """Module loaded, no VM ever: CPU 1 panics; the shootdown NMI on CPU 0 makes the
    seed's crash walk read CPU 0's never-initialised loaded_vmcss_on_cpu."""
    d = run_both(scenario(LOAD, Op("panic", 1)))
    assert d.reference.violations == []
    assert d.reference.kexec_checked and d.reference.ended == "kexec (crash)"
    (v,) = d.patched.violations
    assert (v.invariant, v.site, v.context, v.cpu) == (
        "oops",
        "list_for_each_entry:load",
        "crash",
        0,
    )
    assert v.detail.startswith("NULL list pointer dereference")
    assert d.patched.ended == "oops in crash path on CPU 0"
    assert not d.patched.kexec_checked, "the kdump kernel is never reached"
    assert [(f.cls, f.invariant, f.variant, f.site) for f in d.findings] == [
        ("regression", "oops", "patched", "list_for_each_entry:load")
    ]


@pytest.mark.parametrize("before", ["intel_pt_handle_vmx:pt", "kvm_cpu_vmxon:vmxon"])
@pytest.mark.parametrize("cpus", [1, 2])
def test_nmi_panic_between_cr4_vmxe_and_vmxon_is_shared(cpus: int, before: str) -> None:
    """CR4.VMXE is set, VMXON has not run: cpu_emergency_vmxoff's VMXOFF takes #UD
    with no fixup, in the crash path, in both versions (CPU 0 enables VMX last)."""
    sc = scenario(LOAD, create_vm(), cpus=cpus, nmis=[NmiSpec(0, before, 1, "panic")])
    d = run_both(sc)
    for r in (d.reference, d.patched):
        assert violations(r) == [("oops", "cpu_vmxoff:vmxoff", "crash", 0)]
        assert r.violations[0].detail.startswith("#UD: VMXOFF outside VMX root operation")
        assert r.ended == "oops in crash path on CPU 0" and not r.kexec_checked
    assert [(f.cls, f.invariant, f.site) for f in d.findings] == [
        ("shared", "oops", "cpu_vmxoff:vmxoff")
    ]


@pytest.mark.parametrize("cpus", [1, 2])
def test_nmi_panic_before_cr4_vmxe_is_written_is_clean(cpus: int) -> None:
    sc = scenario(
        LOAD, create_vm(), cpus=cpus, nmis=[NmiSpec(0, "cr4_set_bits:write_cr4", 1, "panic")]
    )
    d = run_both(sc)
    for r in (d.reference, d.patched):
        assert r.violations == [] and r.kexec_checked and r.nmis_fired == [0]
    assert d.findings == []


def test_nmi_panic_between_cr4_vmxe_and_vmxon_on_the_ipi_target() -> None:
    """On 2 CPUs, CPU 1 enables VMX first (by IPI) while CPU 0 waits.  A panic there:
    5.6 oopses at CPU 1's VMXOFF; with the seed the shootdown of CPU 0 walks CPU 0's
    never-initialised list first (the F04 regression masks it).  Still 'shared'."""
    sc = scenario(LOAD, create_vm(), nmis=[NmiSpec(1, "kvm_cpu_vmxon:vmxon", 1, "panic")])
    d = run_both(sc)
    assert violations(d.reference) == [("oops", "cpu_vmxoff:vmxoff", "crash", 1)]
    assert violations(d.patched) == [("oops", "list_for_each_entry:load", "crash", 0)]
    assert [(f.cls, f.invariant, f.cause) for f in d.findings] == [
        ("fixed", "oops", "oops/emergency-vmxoff-outside-vmx-vmxe-set-before-vmxon"),
        ("regression", "oops", "oops/uninitialised-loaded-vmcs-list"),
    ]


def test_vm_outliving_a_failed_vmx_init_fixed_and_regression() -> None:
    d = run_both(vm_in_the_failed_init_window())
    for r in (d.reference, d.patched):
        assert r.op_results == ["-ENOMEM", "0", "oops"], "the VM was created in the window"
    assert violations(d.reference) == [("oops", "kvm_x86_ops:load", "task", 1)]
    assert "NULL ops pointer" in d.reference.violations[0].detail
    assert violations(d.patched) == [("use-after-free", "kvm_x86_ops:load", "task", 1)]
    assert d.patched.violations[0].objects == ("kvm_intel module text", "CPU 1")
    assert sorted((f.cls, f.invariant) for f in d.findings) == [
        ("fixed", "oops"),
        ("regression", "use-after-free"),
    ]


def test_hot_added_cpu_without_vmx() -> None:
    d = run_both(HOTPLUG_NO_VMX)
    # 5.6: the VMXON #GP oopses in the STARTING callback, i.e. in the idle task of the
    # incoming CPU, which panics (no kdump kernel in this scenario).
    assert violations(d.reference) == [("oops", "kvm_cpu_vmxon:vmxon", "task", 1)]
    assert d.reference.op_results[2:] == ["interrupted", "not run", "not run"]
    assert d.reference.ended == "panic without kdump kernel"
    assert violations(d.patched) == [
        ("oops", "kvm_spurious_fault:check", "task", 1),
        ("current-vmcs-stale", "-", None, 1),
    ]
    assert d.patched.op_results == ["0", "0", "0", "0", "oops"]
    # By cause: 5.6's VMXON oops is fixed; the seed's VMPTRLD oops is new, and the
    # stale current_vmcs is its consequence (the task died between the two writes).
    fs = sorted(d.findings, key=lambda f: f.cls)
    assert [(f.cls, f.invariant, f.cause) for f in fs] == [
        ("fixed", "oops", "oops/vmxon-fault-without-fixup"),
        ("regression", "oops", "oops/vmptrld-outside-vmx-after-ignored-enable-failure"),
    ]
    assert fs[1].consequences[0].startswith("current-vmcs-stale ")


def test_cached_shadow_vmcs_survives_the_crash_path_in_both() -> None:
    d = run_both(NESTED_SHADOW_PANIC)
    for r in (d.reference, d.patched):
        (v,) = r.violations
        assert (v.invariant, v.site, v.cpu) == ("kexec-active-vmcs", "machine_kexec:shadow@idle", 0)
        assert r.caches[0] == ["shadow VMCS v0.vmcs01.shadow_vmcs#5 (of v0.vmcs01)"]
    assert [f.cls for f in d.findings] == ["shared"]


def test_fns_must_be_a_namespace() -> None:
    """The executor uses ``functions`` as given: a test variant is just a namespace."""
    fns = variant("patched")
    assert isinstance(fns, SimpleNamespace)
    assert vars(fns) == vars(build("patched"))
    assert run(MIGRATE, "patched", functions=fns).violations == []
