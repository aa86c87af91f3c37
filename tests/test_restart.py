"""Issue 14 items 3-5: the emergency restart, the kexec/reboot details, the smaller
paths.  Each test drives one path through a scenario and pins what the kernel source
says happens there (docs/kernel-notes.md, "The emergency restart, kexec/reboot
details, smaller paths")."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from fuzz.decoder import decode, encode
from vmxfuzz.executor import Result, run
from vmxfuzz.kernel.state import Config
from vmxfuzz.scenario import Op, Scenario, from_json, schema
from vmxfuzz.sched import NmiSpec, RunEntry

ROOT = Path(__file__).resolve().parent.parent
L, VM = Op("module_load"), Op("create_vm", vm="vm0")
BOTH = pytest.mark.parametrize("variant", ["reference", "patched"])


def C(vcpu: str = "v0", cpu: int = 0) -> Op:
    return Op("create_vcpu", cpu, vm="vm0", vcpu=vcpu)


def R(vcpu: str = "v0", cpu: int = 0, parallel: bool = False) -> Op:
    return Op("run_vcpu", cpu, parallel, vcpu=vcpu)


def go(
    ops: list[Op],
    variant: str = "patched",
    nmis: tuple[NmiSpec, ...] = (),
    schedule: tuple[int, ...] = (),
    **config: object,
) -> Result:
    cfg = Config(**{"cpus": 2, **config})  # type: ignore[arg-type]
    return run(Scenario(tuple(ops), cfg, schedule, nmis), variant)


def ran(r: Result, cpu: int, label: str, name: str | None = None) -> bool:
    return any(
        e.cpu == cpu and e.label == label and (name is None or e.name == name) for e in r.trace
    )


# ---- the emergency restart -------------------------------------------------------------------
@BOTH
def test_sysrq_b_turns_vmx_off_everywhere_by_nmi(variant: str) -> None:
    r = go([L, VM, C(), R("v0", 1), Op("emergency_restart", 0)], variant)
    assert r.ended == "restart (emergency)" and r.violations == []
    assert ran(r, 0, "cpu_vmxoff:vmxoff", "emergency_restart")
    # CPU 1 runs vmxoff_nmi from the shootdown NMI (the callback nmi_shootdown_cpus stored)
    assert ran(r, 1, "cpu_vmxoff:vmxoff", "NMI(crash shootdown)")
    assert not ran(r, 1, "kdump_nmi_callback:crash_save_cpu")


@BOTH
def test_sysrq_b_on_a_cpu_without_vmxe_tells_nobody(variant: str) -> None:
    """The restarting CPU's CR4.VMXE alone decides: no module, nothing to do."""
    r = go([Op("emergency_restart", 1)], variant)
    assert r.ended == "restart (emergency)" and r.violations == []
    assert ran(r, 1, "emergency_vmx_disable_all:read_cr4")
    assert not any(e.label == "nmi_shootdown_cpus:send_nmi" for e in r.trace)


def test_restart_from_a_cpu_without_vmx_leaves_the_others_in_vmx() -> None:
    """F16: patched handles VMXON's #GP on a firmware-disabled CPU brought online and
    clears its CR4.VMXE; SysRq-B there skips emergency_vmx_disable_all entirely."""
    ops = [L, VM, Op("cpu_online", 0, target=1), Op("emergency_restart", 1)]
    r = go(ops, "patched", bios_disabled=(1,), offline=(1,), kexec_loaded=False)
    (v,) = r.violations
    assert (v.invariant, v.cause, v.cpu) == (
        "restart-vmx-on",
        "restart-vmx-on/emergency-vmxoff-skipped",
        0,
    )


@BOTH
def test_panic_without_kdump_restarts_after_panic_timeout(variant: str) -> None:
    r = go([L, VM, C(), R("v0", 1), Op("panic", 0)], variant, kexec_loaded=False, panic_timeout=5)
    assert r.ended == "restart (emergency)" and r.violations == []
    # smp_send_stop first: CPU 1 stops (its own VMXOFF), so the shootdown finds nobody
    assert ran(r, 1, "stop_this_cpu:set_offline")
    assert ran(r, 0, "cpu_vmxoff:vmxoff")
    assert not any(e.label == "crash_nmi_callback:ack" for e in r.trace)


@BOTH
def test_panic_without_kdump_and_no_timeout_stops_the_others_then_spins(variant: str) -> None:
    r = go([L, VM, C(), R("v0", 1), Op("panic", 0)], variant, kexec_loaded=False)
    assert r.ended == "panic without kdump kernel" and not r.kexec_checked
    assert ran(r, 0, "native_stop_other_cpus:send_reboot_vector")
    assert ran(r, 1, "stop_this_cpu:set_offline")


@BOTH
def test_an_oops_in_the_restart_path_ends_the_run(variant: str) -> None:
    """An NMI panic (no kdump, panic_timeout) lands between CR4.VMXE and VMXON on the
    CPU that creates the VM: emergency_vmx_disable_all's VMXOFF #UDs there."""
    nmis = (NmiSpec(0, "kvm_cpu_vmxon:vmxon", 1, "panic"),)
    r = go([L, VM], variant, nmis=nmis, cpus=1, kexec_loaded=False, panic_timeout=1)
    assert r.ended.startswith("oops in crash path")
    assert [v.invariant for v in r.violations] == ["oops"]
    assert r.violations[0].label == "cpu_vmxoff:vmxoff"


# ---- kernel_kexec / kernel_restart details --------------------------------------------------
@BOTH
def test_kexec_from_another_cpu_migrates_to_the_reboot_cpu(variant: str) -> None:
    r = go([L, VM, C(), Op("kexec", 1)], variant)
    assert r.ended == "kexec (kexec -e)" and r.violations == []
    assert ran(r, 1, "kernel_restart_prepare:notifiers")  # the notifiers run where it started
    assert ran(r, 1, "migrate_to_reboot_cpu:switch_to")
    assert ran(r, 0, "cpu_hotplug_enable:dec") and ran(
        r, 0, "native_stop_other_cpus:send_reboot_vector"
    )


@BOTH
@pytest.mark.parametrize(("kind", "k"), [("reboot", 32), ("kexec", 34)])
def test_hotplug_is_refused_while_migrate_to_reboot_cpu_disabled_it(
    variant: str, kind: str, k: int
) -> None:
    """cpu_up between cpu_hotplug_disable() and the end (reboot) or
    cpu_hotplug_enable() (kexec) is -EBUSY (kernel/cpu.c: do_cpu_up)."""
    ops = [L, VM, Op("cpu_offline", 0, target=2), Op(kind, 0), Op("cpu_online", 1, True, target=2)]
    r = go(ops, variant, cpus=3, schedule=(0,) * k + (1,) * 100)
    assert r.op_results[-1] == "-EBUSY"
    first = [e.label for e in r.trace].index
    assert first("cpu_hotplug_disable:inc") < first("cpu_up:start")


@BOTH
def test_a_cpu_can_come_up_after_kvm_reboot(variant: str) -> None:
    """kvm_reboot takes no hotplug lock: a cpu_up in flight brings its CPU up after the
    notifier, and kvm_starting_cpu enables VMX there (kvm_usage_count > 0); the stop
    handler's VMXOFF is all that turns it off again."""
    ops = [
        L,
        VM,
        Op("cpu_offline", 0, target=2),
        Op("kexec", 0),
        Op("cpu_online", 1, True, target=2),
    ]
    sched = (RunEntry(0, "cpu_hotplug_disable:inc", 1), RunEntry(1))
    r = run(Scenario(tuple(ops), Config(cpus=3), sched), variant)
    steps = [(e.cpu, e.label) for e in r.trace]
    last_vmxon = max(i for i, s in enumerate(steps) if s == (2, "kvm_cpu_vmxon:vmxon"))
    assert steps.index((0, "kvm_reboot:set_rebooting")) < last_vmxon
    assert r.ended == "kexec (kexec -e)" and r.violations == []


@BOTH
def test_a_panic_during_kexec_finds_kexec_mutex_held(variant: str) -> None:
    """__crash_kexec's trylock fails while kernel_kexec holds kexec_mutex: no crash
    kernel, panic goes on with smp_send_stop (and stops here: panic_timeout 0)."""
    nmis = (NmiSpec(1, "kvm_vcpu_ioctl:fdget", 1, "panic"),)
    ops = [L, VM, C(), C("v1", 1), Op("kexec", 0), R("v1", 1, True)]
    r = go(ops, variant, nmis=nmis, schedule=(0,) * 3 + (1,) * 40)
    assert ran(r, 1, "__crash_kexec:mutex_trylock")
    assert not r.ended.startswith("kexec (crash)")
    assert not any(e.label == "nmi_shootdown_cpus:send_nmi" for e in r.trace)


# ---- smaller paths ----------------------------------------------------------------------------
@BOTH
def test_hardware_enable_initialises_the_wakeup_list_beside_the_vmcs_list(variant: str) -> None:
    r = go([L, VM], variant, cpus=1)
    labels = [e.label for e in r.trace if e.cpu == 0]
    i = labels.index("hardware_enable:cr4_read_shadow")
    assert labels[i + 1 : i + 6] == [
        "INIT_LIST_HEAD:next",
        "INIT_LIST_HEAD:prev",
        "INIT_LIST_HEAD:next",
        "INIT_LIST_HEAD:prev",
        "spin_lock_init:init",
    ]


@BOTH
def test_kvm_exit_unregisters_syscore_before_the_reboot_notifier(variant: str) -> None:
    r = go([L, Op("module_unload")], variant, cpus=1)
    labels = [e.label for e in r.trace if e.label.startswith("kvm_exit:")]
    assert labels[:3] == [
        "kvm_exit:misc_deregister",
        "kvm_exit:unregister_syscore_ops",
        "kvm_exit:unregister_reboot_notifier",
    ]
    assert labels.index("kvm_exit:kvm_irqfd_exit") < labels.index("kvm_exit:free_cpumask")


@BOTH
def test_cpumask_failure_in_kvm_init_runs_kvm_irqfd_exit(variant: str) -> None:
    from vmxfuzz.machine.faults import FaultSpec

    sc = Scenario((L,), Config(cpus=1), faults=(FaultSpec("alloc_cpus_hardware_enabled", 1),))
    r = run(sc, variant)
    labels = [e.label for e in r.trace]
    assert r.op_results == ["-ENOMEM"]
    assert "kvm_init:kvm_irqfd_exit" in labels and "kvm_init:free_cpumask" not in labels


# ---- scenario format v5 and the byte layout -------------------------------------------------
def test_format_v5_round_trips_and_old_versions_stay() -> None:
    sc = Scenario((L, VM, Op("emergency_restart", 1)), Config(panic_timeout=-1))
    doc = sc.to_json()
    assert doc["version"] == 5 and doc["config"]["panic_timeout"] == -1
    jsonschema.Draft202012Validator(schema(5)).validate(doc)
    assert from_json(doc) == sc
    plain = Scenario((L, VM, Op("panic")), Config())
    assert plain.version == 1 and "panic_timeout" not in plain.to_json()["config"]


def test_the_byte_layout_carries_restart_ops_and_panic_timeout() -> None:
    sc = Scenario(
        (L, Op("emergency_restart", 1), VM, Op("emergency_restart", 0, True)),
        Config(panic_timeout=-3),
    )
    assert decode(encode(sc)) == sc
    # an input without the extension bit decodes as before: no restart op, timeout 0
    old = encode(Scenario((L, VM, Op("kexec")), Config()))
    assert decode(old).config.panic_timeout == 0


def test_the_restart_example_is_clean() -> None:
    path = ROOT / "examples" / "clean-emergency-restart.json"
    doc = json.loads(path.read_text())
    assert doc["version"] == 5
    for variant in ("reference", "patched"):
        r = run(from_json(doc), variant)
        assert r.violations == [] and r.ended == "restart (emergency)"
