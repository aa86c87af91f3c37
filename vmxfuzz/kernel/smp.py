"""Kernel primitives: IRQ flags, IPIs, spinlocks, barriers, CR4, Intel PT.

``smp_call_function_single`` and ``on_each_cpu`` (spec section 3) queue the function
on the target CPU, where the scheduler runs it in IPI context once the target's IRQs
are enabled; the caller spins (a :class:`Wait`).  A wait that can never finish (the
target halted, a lock never released) is what the scheduler reports as a hang.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..sched import Wait
from .list import Flow
from .state import ENXIO

FnFactory = Callable[[], Flow]


def local_irq_disable(k: Any) -> Flow:
    yield "local_irq_disable:cli"
    k.cpu_state().irqs_enabled = False


def local_irq_enable(k: Any) -> Flow:
    yield "local_irq_enable:sti"
    k.cpu_state().irqs_enabled = True


def local_irq_save(k: Any) -> Flow:
    yield "local_irq_save:cli"
    cpu = k.cpu_state()
    flags = cpu.irqs_enabled
    cpu.irqs_enabled = False
    return flags


def local_irq_restore(k: Any, flags: bool) -> Flow:
    yield "local_irq_restore:popf"
    k.cpu_state().irqs_enabled = flags


def smp_wmb(k: Any) -> Flow:
    """Orders this CPU's stores (weak-memory mode); no effect under SC."""
    yield "smp_wmb:barrier"
    k.smp_wmb()


def smp_rmb(k: Any) -> Flow:
    """Orders loads; loads are never reordered in this model (machine/weakmem.py)."""
    yield "smp_rmb:barrier"


def raw_spin_lock(k: Any, lock: str) -> Flow:
    me = k.cpu
    yield Wait(
        "raw_spin_lock:acquire",
        lambda: k.locks[lock] is None,
        what=f"{lock} held by CPU {k.locks[lock]}",
    )
    k.locks[lock] = me
    k.smp_mb()  # acquire (modelled as a full barrier)


def spin_lock_init(k: Any, lock: str) -> Flow:
    """``spin_lock_init``: one store (the lock word becomes unlocked)."""
    yield "spin_lock_init:init"
    k.locks[lock] = None


def raw_spin_unlock(k: Any, lock: str) -> Flow:
    yield "raw_spin_unlock:release"
    k.smp_mb()  # release (modelled as a full barrier)
    k.locks[lock] = None


def mutex_lock_vcpu(k: Any, vcpu: Any) -> Flow:
    """``vcpu->mutex``: a vCPU is run by one thread at a time (spec section 4)."""
    me = k.cpu
    yield Wait(
        "mutex_lock:acquire",
        lambda: vcpu.mutex is None,
        what=f"{vcpu.name}->mutex",
        sleeping=True,
    )
    vcpu.mutex = me
    k.smp_mb()


def mutex_unlock_vcpu(k: Any, vcpu: Any) -> Flow:
    yield "mutex_unlock:release"
    k.smp_mb()
    vcpu.mutex = None


def smp_call_function_single(k: Any, cpu: int, name: str, fn: FnFactory) -> Flow:
    """Run ``fn`` on ``cpu`` and wait (wait=1); locally with IRQs disabled."""
    this = k.cpu
    if cpu == this:
        flags = yield from k.f.local_irq_save(k)
        yield from fn()
        yield from k.f.local_irq_restore(k, flags)
        return 0
    if not k.hw.cpus[cpu].online:
        return ENXIO
    yield "smp_call_function_single:send"
    k.smp_mb()  # llist_add of the csd: a full barrier before the IPI
    req = k.sched.send_ipi(cpu, name, fn)
    yield Wait(
        "smp_call_function_single:wait",
        lambda: req.done,
        what=f"IPI {name} to CPU {cpu}",
    )
    return 0


def on_each_cpu(k: Any, name: str, fn: FnFactory) -> Flow:
    """``smp_call_function(fn, wait=1)`` on the other online CPUs, then ``fn`` here."""
    this = k.cpu
    yield "smp_call_function_many:send"
    k.smp_mb()
    reqs = [k.sched.send_ipi(c, name, fn) for c in k.online_cpus() if c != this]
    if reqs:
        yield Wait(
            "smp_call_function_many:wait",
            lambda: all(r.done for r in reqs),
            what=f"IPI {name} to CPUs {[r.target for r in reqs if not r.done]}",
        )
    flags = yield from k.f.local_irq_save(k)
    yield from fn()
    yield from k.f.local_irq_restore(k, flags)


def cr4_set_bits_vmxe(k: Any) -> Flow:
    """``cr4_set_bits(X86_CR4_VMXE)``: the per-CPU shadow copy, then the register
    (both skipped when the shadow already has the bit; IRQs are off inside, so only an
    NMI can fall between the two writes)."""
    if k.cpu_state().cr4_shadow_vmxe:
        return
    yield "cr4_set_bits:shadow"
    k.cpu_state().cr4_shadow_vmxe = True
    yield "cr4_set_bits:write_cr4"
    k.hw.write_cr4_vmxe(k.cpu, True)


def cr4_clear_bits_vmxe(k: Any) -> Flow:
    if not k.cpu_state().cr4_shadow_vmxe:
        return
    yield "cr4_clear_bits:shadow"
    k.cpu_state().cr4_shadow_vmxe = False
    yield "cr4_clear_bits:write_cr4"
    k.hw.write_cr4_vmxe(k.cpu, False)


def intel_pt_handle_vmx(k: Any, on: int) -> Flow:
    yield "intel_pt_handle_vmx:pt"
    k.cpu_state().pt_vmx_off = bool(on)
