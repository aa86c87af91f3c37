"""The crash (kdump) path, panic, and orderly reboot/kexec (spec section 7).

``arch/x86/kernel/crash.c``, ``reboot.c``, ``asm/virtext.h``, ``kernel/panic.c``.
The same in both versions: what differs is the vendor callback the crash path calls
through the RCU pointer ``crash_vmclear_loaded_vmcss``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..machine.errors import CpuException
from ..sched import Wait
from .list import Flow


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
    """The shootdown NMI on another CPU: dump, ack, then halt forever."""
    cpu = k.cpu
    if cpu == k.crashing_cpu:
        return
    k.ctx.crash = True
    yield from k.f.kdump_nmi_callback(k)
    yield "crash_nmi_callback:ack"
    k.waiting_for_crash_ipi -= 1
    yield "crash_nmi_callback:halt"
    k.sched.halt(cpu)
    yield Wait("crash_nmi_callback:halt", _never, what="halted")


def nmi_shootdown_cpus(k: Any) -> Flow:
    yield from k.f.local_irq_disable(k)
    yield "nmi_shootdown_cpus:set_crashing_cpu"
    k.crashing_cpu = k.cpu
    others = [c for c in k.online_cpus() if c != k.cpu]
    yield "nmi_shootdown_cpus:set_waiting"
    k.waiting_for_crash_ipi = len(others)
    yield "nmi_shootdown_cpus:send_nmi"
    k.crash_ipi_issued = True
    for c in others:
        k.sched.send_nmi(c, "NMI(crash shootdown)", lambda: k.f.crash_nmi_callback(k))
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
    yield from k.f.native_machine_crash_shutdown(k)  # machine_crash_shutdown
    yield from k.f.machine_kexec(k, "crash")


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
    if k.config.kexec_loaded:
        yield from k.f.__crash_kexec(k)
    # No crash kernel: smp_send_stop() and spin; the machine is gone, no kexec.
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


def native_stop_other_cpus(k: Any) -> Flow:
    me = k.cpu

    def others() -> list[int]:
        return [c for c in k.online_cpus() if c != me]

    yield "native_stop_other_cpus:send_reboot_vector"
    k.stopping_cpu = me
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
        # wait=1 (kexec, reboot): after the NMI the wait is unbounded.
        yield Wait(
            "native_stop_other_cpus:wait_nmi",
            lambda: not others(),
            what="other CPUs to stop (NMI)",
        )
    yield from k.f.local_irq_disable(k)


def kernel_restart_prepare(k: Any) -> Flow:
    """``blocking_notifier_call_chain(&reboot_notifier_list, ...)``."""
    yield "kernel_restart_prepare:notifiers"
    if k.reboot_notifier_registered:
        yield from k.f.kvm_reboot(k)


def kernel_kexec(k: Any, how: str) -> Flow:
    """Orderly ``kexec -e`` (and reboot): notifiers, stop CPUs, then the new kernel."""
    yield from k.f.kernel_restart_prepare(k)
    yield from k.f.native_stop_other_cpus(k)  # machine_shutdown
    yield from k.f.machine_kexec(k, how)


__all__ = ["CpuException"]
