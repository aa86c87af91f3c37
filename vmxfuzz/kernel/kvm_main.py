"""``virt/kvm/kvm_main.c`` code the seed did not change (spec section 4).

``kvm_init`` itself *was* changed by the seed (patch 1/9 passes the opaque pointer on
to two more arch hooks), so it lives in the variants' ``kvm_main.py``.
"""

from __future__ import annotations

from typing import Any

from ..machine.errors import NullDeref
from .list import Flow
from .state import EBUSY, ENOMEM
from .structs import Kvm, VcpuVmx


def _cpus_hardware_enabled(k: Any) -> set[int]:
    mask = k.cpus_hardware_enabled
    if mask is None:
        raise NullDeref("cpus_hardware_enabled used before kvm_init allocated it")
    return mask


def hardware_enable_nolock(k: Any) -> Flow:
    cpu = k.cpu
    yield "hardware_enable_nolock:test_bit"
    if cpu in _cpus_hardware_enabled(k):
        return
    yield "hardware_enable_nolock:set_bit"
    _cpus_hardware_enabled(k).add(cpu)
    r = yield from k.f.kvm_arch_hardware_enable(k)
    if r:
        yield "hardware_enable_nolock:clear_bit"
        _cpus_hardware_enabled(k).discard(cpu)
        yield "hardware_enable_nolock:inc_failed"
        k.hardware_enable_failed += 1
        k.warn(f"kvm: enabling virtualization on CPU{cpu} failed")


def hardware_disable_nolock(k: Any) -> Flow:
    cpu = k.cpu
    yield "hardware_disable_nolock:test_bit"
    if cpu not in _cpus_hardware_enabled(k):
        return
    yield "hardware_disable_nolock:clear_bit"
    _cpus_hardware_enabled(k).discard(cpu)
    yield from k.f.kvm_arch_hardware_disable(k)


def hardware_disable_all_nolock(k: Any) -> Flow:
    yield "hardware_disable_all_nolock:dec"
    k.kvm_usage_count -= 1
    if not k.kvm_usage_count:
        yield from k.f.on_each_cpu(
            k, "hardware_disable_nolock", lambda: k.f.hardware_disable_nolock(k)
        )


def hardware_disable_all(k: Any) -> Flow:
    yield from k.f.raw_spin_lock(k, "kvm_count_lock")
    yield from k.f.hardware_disable_all_nolock(k)
    yield from k.f.raw_spin_unlock(k, "kvm_count_lock")


def hardware_enable_all(k: Any) -> Flow:
    r = 0
    yield from k.f.raw_spin_lock(k, "kvm_count_lock")
    yield "hardware_enable_all:inc"
    k.kvm_usage_count += 1
    if k.kvm_usage_count == 1:
        yield "hardware_enable_all:reset_failed"
        k.hardware_enable_failed = 0
        yield from k.f.on_each_cpu(
            k, "hardware_enable_nolock", lambda: k.f.hardware_enable_nolock(k)
        )
        yield "hardware_enable_all:read_failed"
        if k.hardware_enable_failed:
            yield from k.f.hardware_disable_all_nolock(k)
            r = EBUSY
    yield from k.f.raw_spin_unlock(k, "kvm_count_lock")
    return r


def kvm_starting_cpu(k: Any) -> Flow:
    yield from k.f.raw_spin_lock(k, "kvm_count_lock")
    yield "kvm_starting_cpu:read_usage"
    if k.kvm_usage_count:
        yield from k.f.hardware_enable_nolock(k)
    yield from k.f.raw_spin_unlock(k, "kvm_count_lock")


def kvm_dying_cpu(k: Any) -> Flow:
    yield from k.f.raw_spin_lock(k, "kvm_count_lock")
    yield "kvm_dying_cpu:read_usage"
    if k.kvm_usage_count:
        yield from k.f.hardware_disable_nolock(k)
    yield from k.f.raw_spin_unlock(k, "kvm_count_lock")


def kvm_suspend(k: Any) -> Flow:
    yield "kvm_suspend:read_usage"
    if k.kvm_usage_count:
        yield from k.f.hardware_disable_nolock(k)


def kvm_resume(k: Any) -> Flow:
    yield "kvm_resume:read_usage"
    if k.kvm_usage_count:
        yield from k.f.hardware_enable_nolock(k)


def kvm_reboot(k: Any) -> Flow:
    """The reboot notifier: after this, KVM's VMX instruction faults are skipped."""
    yield "kvm_reboot:set_rebooting"
    k.kvm_rebooting = True
    yield from k.f.on_each_cpu(k, "hardware_disable_nolock", lambda: k.f.hardware_disable_nolock(k))


def kvm_exit(k: Any) -> Flow:
    """``kvm_main.c: kvm_exit`` (shmily1012/linux-5.6.4, a5221985/linux-5.7.14: the
    same): the syscore ops are unregistered *before* the reboot notifier, and
    ``kvm_irqfd_exit`` runs between ``kvm_arch_exit`` and freeing the mask."""
    yield "kvm_exit:misc_deregister"
    k.dev_kvm_registered = False
    yield "kvm_exit:unregister_syscore_ops"
    k.syscore_registered = False
    yield "kvm_exit:unregister_reboot_notifier"
    k.reboot_notifier_registered = False
    yield "kvm_exit:cpuhp_remove_state"
    k.hotplug_registered = False
    yield from k.f.on_each_cpu(k, "hardware_disable_nolock", lambda: k.f.hardware_disable_nolock(k))
    yield from k.f.kvm_arch_hardware_unsetup(k)
    yield from k.f.kvm_arch_exit(k)
    yield "kvm_exit:kvm_irqfd_exit"
    yield "kvm_exit:free_cpumask"
    k.cpus_hardware_enabled = None


def vcpu_load(k: Any, vcpu: VcpuVmx) -> Flow:
    """``kvm_main.c: vcpu_load``: the preempt notifier is this task's from here to
    ``vcpu_put``, so a preemption at ``put_cpu`` (or later) runs ``kvm_sched_out`` /
    ``kvm_sched_in``."""
    cpu = yield from k.f.get_cpu(k)
    k.ctx.preempt_notifier = vcpu  # preempt_notifier_register (per task: not a step)
    yield from k.f.kvm_arch_vcpu_load(k, vcpu, cpu)
    yield from k.f.put_cpu(k)


def vcpu_put(k: Any, vcpu: VcpuVmx) -> Flow:
    """``kvm_main.c: vcpu_put``: with the notifier gone, the final ``preempt_enable``
    is no KVM preemption point."""
    yield "vcpu_put:preempt_disable"
    yield from k.f.kvm_arch_vcpu_put(k, vcpu)
    k.ctx.preempt_notifier = None  # preempt_notifier_unregister


def kvm_sched_out(k: Any, vcpu: VcpuVmx) -> Flow:
    """``kvm_main.c: kvm_sched_out`` (the task is TASK_RUNNING: preempted)."""
    yield "kvm_sched_out:preempted"
    vcpu.preempted = True
    yield from k.f.kvm_arch_vcpu_put(k, vcpu)


def kvm_sched_in(k: Any, vcpu: VcpuVmx, cpu: int) -> Flow:
    """``kvm_main.c: kvm_sched_in``: load the vCPU on the CPU the task now runs on
    (``kvm_arch_sched_in`` -> ``vmx_sched_in`` only adjusts the PLE window: not
    modelled)."""
    yield "kvm_sched_in:preempted"
    vcpu.preempted = False
    yield from k.f.kvm_arch_vcpu_load(k, vcpu, cpu)


def kvm_create_vm(k: Any, name: str) -> Flow:
    yield "kvm_arch_alloc_vm:alloc"
    if k.fail("alloc_vm"):
        return ENOMEM
    vm = Kvm(name)
    r = yield from k.f.kvm_arch_init_vm(k, vm)
    if r:
        k.kfree(vm)
        return r
    r = yield from k.f.hardware_enable_all(k)
    if r:
        yield from k.f.kvm_arch_destroy_vm(k, vm)
        yield "kvm_create_vm:free"
        k.kfree(vm)
        return r
    yield "kvm_create_vm:vm_list_add"
    return vm


def kvm_destroy_vm(k: Any, vm: Kvm) -> Flow:
    yield from k.f.kvm_arch_destroy_vm(k, vm)
    yield "kvm_destroy_vm:kvm_arch_free_vm"
    k.kfree(vm)
    yield from k.f.hardware_disable_all(k)


def kvm_vm_ioctl_create_vcpu(k: Any, vm: Kvm, name: str) -> Flow:
    vcpu = yield from k.f.kvm_arch_vcpu_create(k, vm, name)
    if isinstance(vcpu, int):
        return vcpu
    yield from k.f.kvm_arch_vcpu_setup(k, vcpu)
    yield "kvm_vm_ioctl_create_vcpu:online_vcpus"
    vm.vcpus.append(vcpu)
    k.vcpus[name] = vcpu
    return 0


def kvm_arch_vcpu_ioctl_run(k: Any, vcpu: VcpuVmx) -> Flow:
    yield from k.f.vcpu_load(k, vcpu)
    r = yield from k.f.vcpu_run(k, vcpu)
    yield from k.f.vcpu_put(k, vcpu)
    return r


def kvm_init_register(k: Any) -> Flow:
    """The tail of ``kvm_init``: from here on CPU hotplug, reboot and ``/dev/kvm``
    reach KVM, so VM creation can race with the rest of the vendor module's init.

    ``kvm_init`` (``virt/kvm/kvm_main.c``, 5.6.4 and 5.7.14) is modelled in three pieces
    so that a patch changes only the piece it touches: the versions' ``kvm_init`` (arch
    init, irqfd, cpumask, arch hardware setup, per-CPU compat check: the part the seed
    changed), this tail (unchanged by the seed), and ``kvm_init_unwind`` (its error
    labels).  A patch that moves ``misc_register`` overrides this function; one that
    moves vendor work around ``kvm_init`` (e32b120071ea) overrides ``vmx_init`` and
    ``vmx_exit`` (see ``examples/plugins/upstream/``)."""
    yield "kvm_init:cpuhp_setup_state_nocalls"
    k.hotplug_registered = True
    yield "kvm_init:register_reboot_notifier"
    k.reboot_notifier_registered = True
    yield "kvm_init:kmem_cache_create"
    if k.fail("kvm_init:register"):
        return (yield from k.f.kvm_init_unwind(k, ENOMEM, "out_free_3"))
    yield "kvm_init:misc_register"
    k.dev_kvm_registered = True
    yield "kvm_init:register_syscore_ops"
    k.syscore_registered = True
    return 0


def kvm_init_unwind(k: Any, r: int, label: str) -> Flow:
    """``kvm_init``'s error labels, in reverse order of the setup steps, with the
    5.6.4 names: ``out_free_3`` (after the reboot notifier), ``out_free_2`` (after the
    arch hardware setup: a compat check failed), ``out_free_1`` (the hardware setup
    failed), ``out_free_0`` (the cpumask allocation failed: ``kvm_irqfd_exit`` then
    ``kvm_arch_exit``).  Only the irqfd failure (``out_irqfd``) returns inline in
    ``kvm_init``.  Checked against shmily1012/linux-5.6.4 ``virt/kvm/kvm_main.c:
    kvm_init``."""
    if label == "out_free_3":
        yield "kvm_init:unregister_reboot_notifier"
        k.reboot_notifier_registered = False
        yield "kvm_init:cpuhp_remove_state_nocalls"
        k.hotplug_registered = False
    if label in ("out_free_3", "out_free_2"):
        yield from k.f.kvm_arch_hardware_unsetup(k)
    if label != "out_free_0":
        yield "kvm_init:free_cpumask"
        k.cpus_hardware_enabled = None
    yield "kvm_init:kvm_irqfd_exit"
    yield from k.f.kvm_arch_exit(k)
    return r
