"""Preemption inside an ioctl: ``preempt_enable``, ``__schedule`` and the preempt
notifiers (``kernel/sched/core.c``, ``include/linux/preempt.h``; the same in 5.6.4 and
5.7.14).

A task running a vCPU ioctl has ``vcpu->preempt_notifier`` registered (``vcpu_load``
to ``vcpu_put``, ``virt/kvm/kvm_main.c``).  Where such a task re-enables preemption
and ``need_resched()`` is set, the kernel switches away: ``prepare_task_switch`` fires
the sched-out notifiers (``kvm_sched_out`` -> ``kvm_arch_vcpu_put``) with the run-queue
lock held and IRQs off, and when the task runs again, possibly on another CPU,
``finish_task_switch`` drops the lock (IRQs on) and fires the sched-in notifiers
(``kvm_sched_in`` -> ``kvm_arch_vcpu_load`` on the new CPU).

``need_resched()`` is the nondeterministic part: the scenario decides it
(``preempts``: at the n-th execution of a preemption point on a CPU, the task resumes
on CPU ``to``), through :meth:`vmxfuzz.sched.Scheduler.preempt_target`.  Only tasks
with a KVM preempt notifier are offered the choice: a switch of any other task has no
KVM-visible effect besides the CPU the rest of it runs on.
"""

from __future__ import annotations

from typing import Any

from ..sched import Migrate
from .list import Flow

# The steps after which the model reads need_resched() (docs/scenarios.md, "preempts").
PREEMPT_POINTS = (
    "put_cpu:preempt_enable",  # vcpu_load's put_cpu(), and every get_cpu() section
    "vcpu_enter_guest:need_resched",  # the cancel path before VM entry
    "vcpu_enter_guest:preempt_enable",  # after the VM exit, before handle_exit
)


def preempt_disable(k: Any) -> None:
    """``preempt_disable()``: the task's preempt count (per task, so not a step)."""
    k.ctx.preempt_count += 1


def need_resched(k: Any) -> int | None:
    """``need_resched()`` where the stepping task may be preempted: the CPU it is to
    resume on if the scenario preempts it at the step it just executed, else None.

    ``preempt_enable`` asks only when ``preemptible()`` (count 0, IRQs on); the cancel
    check in ``vcpu_enter_guest`` reads the flag with both disabled and, when it is
    set, switches at its own ``preempt_enable`` a few steps later."""
    ctx = k.ctx
    if ctx is None or ctx.kind != "task" or ctx.crash or ctx.preempt_notifier is None:
        return None
    return k.sched.preempt_target(k.cpu)


def preempt_enable(k: Any) -> Flow:
    """``preempt_enable()``: at count 0 with IRQs on, ``preempt_schedule()`` if
    ``need_resched()``."""
    ctx = k.ctx
    ctx.preempt_count -= 1
    if ctx.preempt_count or not k.cpu_state().irqs_enabled:
        return
    to = k.f.need_resched(k)
    if to is not None:
        yield from k.f.__schedule(k, to)


def __schedule(k: Any, to: int) -> Flow:
    """``preempt_schedule`` -> ``__schedule(true)``: switch away, resume on ``to``.

    ``select_task_rq`` only picks an online CPU: an offline or halted ``to`` resumes the
    task here (preempted, not migrated)."""
    ctx = k.ctx
    ctx.preempt_count += 1  # PREEMPT_ACTIVE: no nested preemption in the notifiers
    yield from k.f.local_irq_disable(k)  # rq_lock_irq
    vcpu = ctx.preempt_notifier
    if vcpu is not None:
        yield from k.f.kvm_sched_out(k, vcpu)  # prepare_task_switch
    target = k.hw.cpus[to]
    dest = to if target.online and not target.halted else k.cpu
    yield Migrate("context_switch:switch_to", dest, resume="finish_task_switch:resume")
    yield from k.f.local_irq_enable(k)  # finish_lock_switch: raw_spin_unlock_irq
    vcpu = ctx.preempt_notifier
    if vcpu is not None:
        yield from k.f.kvm_sched_in(k, vcpu, k.cpu)  # fire_sched_in_preempt_notifiers
    ctx.preempt_count -= 1
