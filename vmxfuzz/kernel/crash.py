"""The crash (kdump) path, panic, and orderly reboot/kexec (spec section 7).

``arch/x86/kernel/crash.c``, ``reboot.c``, ``asm/virtext.h``, ``kernel/panic.c``.
The same in both versions: what differs is the vendor callback the crash path calls
through the RCU pointer ``crash_vmclear_loaded_vmcss``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..machine.errors import CpuException
from ..sched import Migrate, Wait
from .list import Flow
from .state import EBUSY


def _never() -> bool:
    return False


# ---- the VMX pieces of the crash path (virtext.h, crash.c) ---------------------------------
def cpu_crash_vmclear_loaded_vmcss(k: Any) -> Flow:
    yield "cpu_crash_vmclear_loaded_vmcss:rcu_dereference"
    fn = k.crash_vmclear_loaded_vmcss
    k.oracle.crash_vmclear(k, fn)  # history for the cause analysis, not a judgement
    if fn:
        yield from getattr(k.f, fn)(k)


def cpu_vmxoff(k: Any) -> Flow:
    """VMXOFF with NO exception fixup: a #UD here is an oops in the crash path."""
    yield "cpu_vmxoff:vmxoff"
    k.hw.vmxoff(k.cpu)
    yield from k.f.cr4_clear_bits_vmxe(k)


def cpu_emergency_vmxoff(k: Any) -> Flow:
    yield "cpu_emergency_vmxoff:read_cr4"
    cpu = k.cpu_state()
    if cpu.has_vmx and cpu.cr4_vmxe:  # cpu_has_vmx() && __read_cr4() & X86_CR4_VMXE
        yield from k.f.cpu_vmxoff(k)


def cpu_emergency_stop_pt(k: Any) -> Flow:
    yield "cpu_emergency_stop_pt:stop"


def kdump_nmi_callback(k: Any) -> Flow:
    yield "kdump_nmi_callback:crash_save_cpu"
    yield from k.f.cpu_crash_vmclear_loaded_vmcss(k)
    yield from k.f.cpu_emergency_vmxoff(k)
    yield from k.f.cpu_emergency_stop_pt(k)


def crash_nmi_callback(k: Any) -> Flow:
    """The shootdown NMI on another CPU: the callback ``nmi_shootdown_cpus`` stored,
    ack, then halt forever (``arch/x86/kernel/reboot.c: crash_nmi_callback``, 5.6.4 and
    5.7.14 alike: ``kdump_nmi_callback`` for a crash, ``vmxoff_nmi`` for an emergency
    restart)."""
    cpu = k.cpu
    if cpu == k.crashing_cpu:
        return
    k.ctx.crash = True
    yield from getattr(k.f, k.shootdown_callback)(k)
    yield "crash_nmi_callback:ack"
    k.waiting_for_crash_ipi -= 1
    yield "crash_nmi_callback:halt"
    k.sched.halt(cpu)
    yield Wait("crash_nmi_callback:halt", _never, what="halted")


def nmi_shootdown_cpus(k: Any, callback: str = "kdump_nmi_callback") -> Flow:
    """``arch/x86/kernel/reboot.c: nmi_shootdown_cpus`` (shmily1012/linux-5.6.4; the
    same in a5221985/linux-5.7.14).  ``shootdown_callback`` is stored in the same step
    as ``crashing_cpu``: no other CPU reads it before the NMI is sent (``wmb()``).
    ``apic_send_IPI_allbutself`` sends nothing when this is the only online CPU (the
    others already stopped).  The wait is bounded: 1000 x 1 ms, the model's "nothing
    else can run" stand-in (a CPU already inside an NMI handler cannot take the NMI,
    and the crashing CPU goes on without it)."""
    yield from k.f.local_irq_disable(k)
    yield "nmi_shootdown_cpus:set_crashing_cpu"
    k.crashing_cpu = k.cpu
    k.shootdown_callback = callback
    others = [c for c in k.online_cpus() if c != k.cpu]
    yield "nmi_shootdown_cpus:set_waiting"
    k.waiting_for_crash_ipi = len(others)
    yield "nmi_shootdown_cpus:send_nmi"
    for c in others:  # apic_send_IPI_allbutself: nothing when num_online_cpus() < 2
        k.sched.send_nmi(c, "NMI(crash shootdown)", lambda: k.f.crash_nmi_callback(k))
    k.crash_ipi_issued = True
    # Wait up to one second for the others; then proceed without them.
    yield Wait(
        "nmi_shootdown_cpus:wait",
        lambda: k.waiting_for_crash_ipi <= 0,
        what="CPUs to answer the crash NMI",
        timeout=True,
    )


def native_machine_crash_shutdown(k: Any) -> Flow:
    yield from k.f.local_irq_disable(k)
    yield from k.f.nmi_shootdown_cpus(k)  # crash_smp_send_stop -> kdump_nmi_shootdown_cpus
    yield from k.f.cpu_crash_vmclear_loaded_vmcss(k)
    yield from k.f.cpu_emergency_vmxoff(k)
    yield from k.f.cpu_emergency_stop_pt(k)


def machine_kexec(k: Any, how: str) -> Flow:
    """Jump to the new kernel: the oracle checks every CPU's VMCS cache now."""
    yield "machine_kexec:start"
    k.oracle.kexec(k, how)
    k.sched.end(f"kexec ({how})")
    yield Wait("machine_kexec:new_kernel", _never)


def __crash_kexec(k: Any) -> Flow:
    """``kernel/kexec_core.c: __crash_kexec``: only with ``kexec_mutex`` (a
    ``mutex_trylock``: an orderly ``kexec -e`` in flight holds it, even on this CPU)
    and a crash image loaded; otherwise it returns and ``panic`` goes on."""
    yield "__crash_kexec:mutex_trylock"
    if k.kexec_mutex is not None:
        return
    k.kexec_mutex = k.cpu
    if k.config.kexec_loaded:
        yield from k.f.native_machine_crash_shutdown(k)  # machine_crash_shutdown
        yield from k.f.machine_kexec(k, "crash")
    yield "__crash_kexec:mutex_unlock"
    k.kexec_mutex = None


def panic_smp_self_stop(k: Any) -> Flow:
    """A CPU that lost the panic race spins; the shootdown NMI will halt it."""
    yield Wait("panic_smp_self_stop:spin", _never, what="stopped by a concurrent panic")


def nmi_panic_self_stop(k: Any) -> Flow:
    """Panic in NMI context that lost the race: run the crash callback when issued."""
    yield Wait(
        "nmi_panic_self_stop:wait",
        lambda: k.crash_ipi_issued,
        what="the panicking CPU to issue the crash NMI",
    )
    yield from k.f.crash_nmi_callback(k)


def panic(k: Any, msg: str) -> Flow:
    """``kernel/panic.c: panic`` (5.6.4 = 5.7.14; ``crash_kexec_post_notifiers`` off):
    ``__crash_kexec``; if that returns (no crash kernel, or ``kexec_mutex`` busy),
    ``smp_send_stop()``; then, with ``panic_timeout`` != 0, ``emergency_restart()``
    (the delay loop is not a step: nothing else runs meanwhile that the model does
    not already interleave); with 0 the CPU spins forever and the run ends."""
    yield from k.f.local_irq_disable(k)
    this = k.cpu
    yield "panic:cmpxchg_panic_cpu"
    old = k.panic_cpu
    if old is None:
        k.panic_cpu = this
    elif old != this:
        yield from k.f.panic_smp_self_stop(k)
        return
    k.ctx.crash = True
    yield from k.f.__crash_kexec(k)
    yield from k.f.smp_send_stop(k)
    yield "panic:panic_timeout"
    if k.config.panic_timeout:
        yield from k.f.emergency_restart(k)
    # panic_timeout == 0: "end Kernel panic" and spin; the machine is gone, no kexec.
    yield "panic:no_kexec"
    k.sched.end("panic without kdump kernel")
    yield Wait("panic:halt", _never)


def nmi_panic(k: Any, msg: str) -> Flow:
    """``nmi_panic()``: the NMI watchdog (or a panic-on-NMI) fires on this CPU."""
    this = k.cpu
    yield "nmi_panic:cmpxchg_panic_cpu"
    old = k.panic_cpu
    if old is None:
        yield from k.f.panic(k, msg)
    elif old != this:
        yield from k.f.nmi_panic_self_stop(k)


def nmi_benign(k: Any) -> Flow:
    """A perf/watchdog NMI that touches no VMX state (it still blocks other NMIs)."""
    yield "nmi_handle:benign"


def nmi_handler(k: Any) -> Callable[[str], Callable[[], Flow]]:
    def make(kind: str) -> Callable[[], Flow]:
        if kind == "panic":
            return lambda: k.f.nmi_panic(k, "NMI")
        return lambda: k.f.nmi_benign(k)

    return make


# ---- orderly reboot / kexec -e ------------------------------------------------------------
def stop_this_cpu(k: Any) -> Flow:
    """The stop IPI/NMI handler (``smp_reboot_interrupt``/``smp_stop_nmi_callback``):
    ``cpu_emergency_vmxoff()`` (no VMCLEAR), then go offline and halt.  The spec says
    "without any VMCLEAR or VMXOFF"; the 5.6 source does the VMXOFF, and it wins."""
    yield from k.f.cpu_emergency_vmxoff(k)
    yield "stop_this_cpu:set_offline"
    k.cpu_state().online = False
    yield "stop_this_cpu:halt"
    k.sched.halt(k.cpu)
    yield Wait("stop_this_cpu:halt", _never)


def native_stop_other_cpus(k: Any, wait: bool) -> Flow:
    """``arch/x86/kernel/smp.c: native_stop_other_cpus(wait)`` (5.6.4 = 5.7.14).

    Only the first caller stops the others (``atomic_cmpxchg(&stopping_cpu, -1,
    this)``); the REBOOT vector (taken only with IRQs on) gets a bounded wait, then the
    stop NMI: a bounded wait again with ``wait == 0`` (``smp_send_stop`` from panic), an
    unbounded one with ``wait == 1`` (``machine_shutdown``: kexec -e and reboot)."""
    me = k.cpu

    def others() -> list[int]:
        return [c for c in k.online_cpus() if c != me]

    if others():  # num_online_cpus() > 1
        yield "native_stop_other_cpus:cmpxchg_stopping_cpu"
        if k.stopping_cpu is not None:
            return  # did someone beat us here?
        k.stopping_cpu = me
        yield "native_stop_other_cpus:send_reboot_vector"
        for c in others():
            k.sched.send_ipi(c, "stop_this_cpu", lambda: k.f.stop_this_cpu(k))
        yield Wait(
            "native_stop_other_cpus:wait",
            lambda: not others(),
            what="other CPUs to stop",
            timeout=True,
        )
    if others():
        yield "native_stop_other_cpus:send_nmi"
        for c in others():
            k.sched.send_nmi(c, "NMI(stop)", lambda: k.f.stop_this_cpu(k))
        yield Wait(
            "native_stop_other_cpus:wait_nmi",
            lambda: not others(),
            what="other CPUs to stop (NMI)",
            timeout=not wait,
        )


def smp_send_stop(k: Any) -> Flow:
    """``smp_send_stop()`` = ``native_stop_other_cpus(0)`` (``asm/smp.h``)."""
    yield from k.f.native_stop_other_cpus(k, False)


def native_machine_shutdown(k: Any) -> Flow:
    """``reboot.c: native_machine_shutdown``: IRQs off, then stop the others and wait."""
    yield from k.f.local_irq_disable(k)
    yield from k.f.native_stop_other_cpus(k, True)


def kernel_restart_prepare(k: Any) -> Flow:
    """``kernel/reboot.c: kernel_restart_prepare``: the reboot notifier chain
    (``blocking_notifier_call_chain(&reboot_notifier_list, ...)``: ``kvm_reboot``)."""
    yield "kernel_restart_prepare:notifiers"
    if k.reboot_notifier_registered:
        yield from k.f.kvm_reboot(k)


def cpu_hotplug_disable(k: Any) -> Flow:
    """``kernel/cpu.c: cpu_hotplug_disable``: under ``cpu_add_remove_lock``."""
    yield from k.f.cpu_maps_update_begin(k)
    yield "cpu_hotplug_disable:inc"
    k.cpu_hotplug_disabled += 1
    yield from k.f.cpu_maps_update_done(k)


def cpu_hotplug_enable(k: Any) -> Flow:
    """``kernel/cpu.c: cpu_hotplug_enable``: from here ``cpu_up``/``cpu_down`` work
    again, so a CPU can come up (``kvm_starting_cpu``) after ``kvm_reboot``."""
    yield from k.f.cpu_maps_update_begin(k)
    yield "cpu_hotplug_enable:dec"
    k.cpu_hotplug_disabled -= 1
    yield from k.f.cpu_maps_update_done(k)


def migrate_to_reboot_cpu(k: Any) -> Flow:
    """``kernel/reboot.c: migrate_to_reboot_cpu``: disable hotplug, then pin this task
    to ``reboot_cpu`` (0, or the first online CPU): ``set_cpus_allowed_ptr`` switches
    the task away and it resumes there."""
    yield from k.f.cpu_hotplug_disable(k)
    yield "migrate_to_reboot_cpu:set_cpus_allowed_ptr"
    cpu = 0 if 0 in k.online_cpus() else k.online_cpus()[0]
    if cpu != k.cpu:
        yield Migrate("migrate_to_reboot_cpu:switch_to", cpu, resume="migrate_to_reboot_cpu:on_cpu")


def kernel_kexec(k: Any) -> Flow:
    """``kernel/kexec_core.c: kernel_kexec`` (orderly ``kexec -e``, no
    preserve_context; 5.6.4 = 5.7.14): ``kexec_mutex`` (-EBUSY if held, e.g. by a
    panicking CPU's ``__crash_kexec``), the reboot notifiers, ``migrate_to_reboot_cpu``,
    ``cpu_hotplug_enable`` again, ``machine_shutdown``, then the new kernel."""
    yield "kernel_kexec:mutex_trylock"
    if k.kexec_mutex is not None:
        return EBUSY
    k.kexec_mutex = k.cpu
    yield "kernel_kexec:kexec_in_progress"
    yield from k.f.kernel_restart_prepare(k)
    yield from k.f.migrate_to_reboot_cpu(k)
    yield from k.f.cpu_hotplug_enable(k)
    yield from k.f.native_machine_shutdown(k)  # machine_shutdown
    yield from k.f.machine_kexec(k, "kexec -e")
    return 0


def kernel_restart(k: Any) -> Flow:
    """``kernel/reboot.c: kernel_restart`` (``reboot(2)``, RESTART): notifiers,
    ``migrate_to_reboot_cpu`` (hotplug stays disabled), ``machine_restart`` ->
    ``native_machine_restart`` -> ``machine_shutdown``.  What follows in the kernel is
    ``__machine_emergency_restart(0)``: firmware reset without
    ``emergency_vmx_disable_all``; the model keeps the kexec check here (the VMCS
    caches after an orderly shutdown), see docs/kernel-notes.md."""
    yield from k.f.kernel_restart_prepare(k)
    yield from k.f.migrate_to_reboot_cpu(k)
    yield from k.f.native_machine_shutdown(k)  # machine_restart -> machine_shutdown
    yield from k.f.machine_kexec(k, "reboot")
    return 0


# ---- emergency restart (issue 14 item 3) ----------------------------------------------------
def vmxoff_nmi(k: Any) -> Flow:
    """``reboot.c: vmxoff_nmi``: the emergency-restart shootdown callback."""
    yield from k.f.cpu_emergency_vmxoff(k)


def emergency_vmx_disable_all(k: Any) -> Flow:
    """``reboot.c: emergency_vmx_disable_all`` (5.6.4 = 5.7.14): only if *this* CPU has
    CR4.VMXE (the register): ``cpu_vmxoff()`` here (plain VMXOFF, no fixup in either
    version: a #UD if CR4.VMXE is set outside VMX operation), then
    ``nmi_shootdown_cpus(vmxoff_nmi)`` for the others.  A CPU without CR4.VMXE skips
    both: the others keep VMX on."""
    yield from k.f.local_irq_disable(k)
    yield "emergency_vmx_disable_all:read_cr4"
    cpu = k.cpu_state()
    if cpu.has_vmx and cpu.cr4_vmxe:  # cpu_has_vmx() && cpu_vmx_enabled()
        yield from k.f.cpu_vmxoff(k)
        yield from k.f.nmi_shootdown_cpus(k, "vmxoff_nmi")


def machine_restart_firmware(k: Any, how: str) -> Flow:
    """The reset itself (ACPI / keyboard controller / CF9 / triple fault): the oracle
    looks at what the firmware and the next kernel find."""
    yield "native_machine_emergency_restart:reset"
    k.oracle.restart(k, how)
    k.sched.end(f"restart ({how})")
    yield Wait("native_machine_emergency_restart:reset", _never)


def native_machine_emergency_restart(k: Any, emergency: bool) -> Flow:
    """``reboot.c: native_machine_emergency_restart``: ``emergency_vmx_disable_all``
    when ``reboot_emergency``, then the reset loop (never returns)."""
    if emergency:
        yield from k.f.emergency_vmx_disable_all(k)
    yield from k.f.machine_restart_firmware(k, "emergency" if emergency else "orderly")


def emergency_restart(k: Any) -> Flow:
    """``kernel/reboot.c: emergency_restart`` -> ``machine_emergency_restart`` ->
    ``__machine_emergency_restart(1)`` (kmsg dump first: not a step of interest)."""
    yield "emergency_restart:kmsg_dump"
    k.ctx.crash = True  # the CPU never returns to what it was doing
    yield from k.f.native_machine_emergency_restart(k, True)


__all__ = ["CpuException"]
