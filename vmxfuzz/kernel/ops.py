"""Entry points a scenario operation starts: module load/unload, ioctls, hotplug,
suspend/resume, reboot, kexec, panic.

Each returns the observable result of the operation (0, a negative errno, or a short
string), which the differential runner compares between variants.  Preconditions
that the kernel enforces outside the modelled code (no ``/dev/kvm`` before
``kvm_init`` registered it; ``rmmod`` refused while a VM holds the module) are
checked here and reported as the errno userspace would see.
"""

from __future__ import annotations

from typing import Any

from ..sched import Task, Wait
from .list import Flow
from .state import EBUSY, EEXIST, ENODEV, ENOENT


def op_module_load(k: Any) -> Flow:
    yield "load_module:start"
    if k.module_state != "unloaded":
        return EEXIST
    k.module_state = "coming"
    k.module_init_done = False
    k.oracle.module_coming(k)
    k.f.vmx_static_data(k)  # the module's data sections come into existence
    r = yield from k.f.vmx_init(k)
    yield "do_init_module:done"
    if r:
        k.module_state = "unloaded"
        return r
    k.module_state = "live"
    k.module_init_done = True  # free_initmem: __init text and __initdata are gone
    return 0


def op_module_unload(k: Any) -> Flow:
    yield "delete_module:start"
    if k.module_state != "live":
        return ENOENT
    if k.module_refs:
        return EBUSY  # module refcount held by open VM files
    k.module_state = "going"
    yield from k.f.vmx_exit(k)
    yield "free_module:done"
    k.module_state = "unloaded"
    k.module_init_done = False
    return 0


def op_create_vm(k: Any, vm: str) -> Flow:
    """``open("/dev/kvm")`` + ``KVM_CREATE_VM``: the VM fd pins the vendor module."""
    yield "kvm_dev_ioctl_create_vm:open"
    if not k.dev_kvm_registered or k.module_state == "going":
        return ENOENT
    if vm in k.vm_names:
        return EEXIST
    k.vm_names.add(vm)
    k.module_refs += 1  # try_module_get(kvm_chardev_ops.owner)
    r = yield from k.f.kvm_create_vm(k, vm)
    if isinstance(r, int):
        k.vm_names.discard(vm)
        k.module_refs -= 1
        return r
    yield "kvm_dev_ioctl_create_vm:fd_install"
    k.vms[vm] = r
    return 0


def op_destroy_vm(k: Any, vm: str) -> Flow:
    """Close the VM fd; the last ``fput`` (after in-flight ioctls) destroys the VM."""
    yield "kvm_vm_release:close"
    kvm = k.vms.pop(vm, None)
    if kvm is None:
        return ENOENT
    yield Wait(
        "kvm_vm_release:last_fput", lambda: kvm.users == 0, what=f"ioctls on {vm}", sleeping=True
    )
    # The vCPU fds are closed with it, including one a racing KVM_CREATE_VCPU installed
    # while this close waited (that vCPU's fd holds the VM too, so it goes first).
    names = [v.name for v in kvm.vcpus]
    for name in names:
        k.vcpus.pop(name, None)
    yield from k.f.kvm_destroy_vm(k, kvm)
    k.vcpu_names.difference_update(names)
    k.vm_names.discard(vm)
    k.module_refs -= 1  # module_put when the file is released
    return 0


def op_create_vcpu(k: Any, vm: str, vcpu: str) -> Flow:
    yield "kvm_vm_ioctl_create_vcpu:fdget"
    kvm = k.vms.get(vm)
    if kvm is None:
        return ENOENT
    if vcpu in k.vcpu_names:
        return EEXIST
    k.vcpu_names.add(vcpu)
    kvm.users += 1
    try:
        r = yield from k.f.kvm_vm_ioctl_create_vcpu(k, kvm, vcpu)
    finally:
        kvm.users -= 1  # fdput, also when the task dies in an oops
    if r:
        k.vcpu_names.discard(vcpu)
    return r


def _vcpu_ioctl(k: Any, vcpu: str, body: Any) -> Flow:
    """A vCPU ioctl: fdget (the VM file stays alive), ``vcpu->mutex``, then ``body``."""
    yield "kvm_vcpu_ioctl:fdget"
    v = k.vcpus.get(vcpu)
    if v is None or k.vms.get(v.vm.name) is not v.vm:
        return ENOENT
    kvm = v.vm
    kvm.users += 1
    try:
        yield from k.f.mutex_lock_vcpu(k, v)
        r = yield from body(v)
        yield from k.f.mutex_unlock_vcpu(k, v)
    finally:
        kvm.users -= 1  # fdput, also when the task dies in an oops
    return r


def op_run_vcpu(k: Any, vcpu: str) -> Flow:
    """``ioctl(KVM_RUN)`` on this CPU: loading here is how a vCPU migrates."""
    return (yield from _vcpu_ioctl(k, vcpu, lambda v: k.f.kvm_arch_vcpu_ioctl_run(k, v)))


L1_EXITS = {
    "l1_vmxon": lambda k, v: k.f.handle_vmon(k, v),
    "l1_vmptrld": lambda k, v: k.f.handle_vmptrld(k, v),
    "l1_vmclear": lambda k, v: k.f.handle_vmclear(k, v),
    "l1_vmlaunch": lambda k, v: k.f.nested_vmx_run(k, v, True),
    "l1_vmresume": lambda k, v: k.f.nested_vmx_run(k, v, False),
    "l1_vmxoff": lambda k, v: k.f.handle_vmoff(k, v),
    "l2_exit": lambda k, v: k.f.handle_l2_exit(k, v),
}


def nested_exit_ioctl_run(k: Any, v: Any, exit: str) -> Flow:
    """``KVM_RUN`` where the guest exits with a VMX instruction (or L2 exits): load
    the vCPU here, emulate, and re-enter the guest (L1 on vmcs01, L2 on vmcs02)."""
    yield from k.f.vcpu_load(k, v)
    r = yield from L1_EXITS[exit](k, v)
    yield from k.f.vcpu_run(k, v)
    yield from k.f.vcpu_put(k, v)
    return r


def op_nested(k: Any, vcpu: str, exit: str) -> Flow:
    return (yield from _vcpu_ioctl(k, vcpu, lambda v: k.f.nested_exit_ioctl_run(k, v, exit)))


def cpu_bringup(k: Any) -> Flow:
    """The AP side of onlining: STARTING callbacks with IRQs off, then online."""
    yield "notify_cpu_starting:irqs_off"
    k.cpu_state().irqs_enabled = False
    k.cpu_state().halted = False
    if k.hotplug_registered:
        yield from k.f.kvm_starting_cpu(k)
    yield "set_cpu_online:true"
    k.cpu_state().online = True
    yield from k.f.local_irq_enable(k)
    return 0


def _stopped_elsewhere(k: Any, me: int) -> bool:
    """Every other online CPU can run its stopper: idle, or its task is asleep.

    stop_machine's ``multi_cpu_stop`` only proceeds once every online CPU has
    scheduled its stopper thread, i.e. left whatever non-preemptible section it was
    in (a spin in ``smp_call_function_many``, a held ``kvm_count_lock``).
    """
    for c in k.online_cpus():
        if c == me:
            continue
        st = k.sched.stacks[c]
        if st and not getattr(st[-1].pending, "sleeping", False):
            return False
    return True


def take_cpu_down(k: Any) -> Flow:
    """The dying CPU under stop_machine: offline, DYING callbacks, flush IPIs."""
    me = k.cpu
    yield Wait(
        "multi_cpu_stop:rendezvous",
        lambda: _stopped_elsewhere(k, me),
        what="the other CPUs to reach stop_machine",
    )
    yield from k.f.local_irq_disable(k)
    yield "__cpu_disable:set_offline"
    k.cpu_state().online = False
    if k.hotplug_registered:
        yield from k.f.kvm_dying_cpu(k)
    yield from k.f.flush_smp_call_function_queue(k)
    yield "sched_cpu_dying:migrate_tasks"
    others = [c for c in k.online_cpus() if c != k.cpu]
    if others:
        k.sched.migrate_tasks(k.cpu, others[0])
    return 0


def flush_smp_call_function_queue(k: Any) -> Flow:
    """``smpcfd_dying_cpu``: run the IPI functions still queued for this CPU."""
    q = k.sched.ipis[k.cpu]
    while q:
        yield "flush_smp_call_function_queue:run"
        req = q.popleft()
        yield from req.factory()
        req.done = True


def cpu_maps_update_begin(k: Any) -> Flow:
    """``cpu_add_remove_lock``: CPU hotplug and suspend are serialised."""
    me = k.cpu
    yield Wait(
        "cpu_maps_update_begin:lock",
        lambda: k.locks.get("cpu_add_remove_lock") is None,
        what=f"cpu_add_remove_lock held by CPU {k.locks.get('cpu_add_remove_lock')}",
        sleeping=True,
    )
    k.locks["cpu_add_remove_lock"] = me
    k.smp_mb()  # a mutex: acquire


def cpu_maps_update_done(k: Any) -> Flow:
    yield "cpu_maps_update_done:unlock"
    k.smp_mb()  # release
    k.locks["cpu_add_remove_lock"] = None


def op_cpu_online(k: Any, cpu: int) -> Flow:
    yield from k.f.cpu_maps_update_begin(k)
    yield "cpu_up:start"
    r = EBUSY  # also while cpu_hotplug_disabled (kernel/cpu.c: do_cpu_up)
    if not k.hw.cpus[cpu].online and not k.cpu_hotplug_disabled:
        r = yield from k.f.run_on(k, cpu, "cpu_bringup", lambda: k.f.cpu_bringup(k))
    yield from k.f.cpu_maps_update_done(k)
    return r


def op_cpu_offline(k: Any, cpu: int) -> Flow:
    yield from k.f.cpu_maps_update_begin(k)
    yield "cpu_down:start"
    if k.cpu_hotplug_disabled:  # kernel/cpu.c: cpu_down_maps_locked
        r = EBUSY
    elif not k.hw.cpus[cpu].online:
        r = ENODEV
    elif len(k.online_cpus()) == 1:
        r = EBUSY
    else:
        r = yield from k.f.run_on(k, cpu, "take_cpu_down", lambda: k.f.take_cpu_down(k))
    yield from k.f.cpu_maps_update_done(k)
    return r


def run_on(k: Any, cpu: int, name: str, factory: Any) -> Flow:
    """Run a flow as a task on ``cpu`` (stopper / bring-up) and wait for it."""
    if cpu == k.cpu:
        return (yield from factory())
    box: list[Any] = []
    task = Task(name, factory, on_done=box.append, on_oops=box.append, preempt=True)
    k.sched.submit(cpu, task)
    yield Wait("run_on:wait", lambda: bool(box), what=f"{name} on CPU {cpu}", sleeping=True)
    return box[0]


def op_suspend(k: Any) -> Flow:
    """A suspend/resume cycle (``enter_state``), run from this CPU.

    Freeze the non-boot CPUs (their DYING callbacks run), ``kvm_suspend`` as a
    syscore op with IRQs off, wake, ``kvm_resume``, then thaw the CPUs (STARTING).
    """
    yield from k.f.cpu_maps_update_begin(k)  # freeze_secondary_cpus
    yield "suspend_devices_and_enter:start"
    frozen = []
    for c in [c for c in k.online_cpus() if c != k.cpu]:
        yield from k.f.run_on(k, c, "take_cpu_down", lambda: k.f.take_cpu_down(k))
        frozen.append(c)
    yield from k.f.local_irq_disable(k)
    if k.syscore_registered:
        yield from k.f.kvm_suspend(k)
    yield "syscore_resume:start"
    if k.syscore_registered:
        yield from k.f.kvm_resume(k)
    yield from k.f.local_irq_enable(k)
    for c in frozen:
        yield from k.f.run_on(k, c, "cpu_bringup", lambda: k.f.cpu_bringup(k))
    yield from k.f.cpu_maps_update_done(k)
    return 0


def op_panic(k: Any) -> Flow:
    yield from k.f.panic(k, "scenario panic")
    return 0


def op_reboot(k: Any) -> Flow:
    """``reboot(2)`` RESTART -> ``kernel_restart``."""
    return (yield from k.f.kernel_restart(k))


def op_kexec(k: Any) -> Flow:
    """``reboot(2)`` KEXEC -> ``kernel_kexec`` (-EBUSY while ``kexec_mutex`` is held)."""
    return (yield from k.f.kernel_kexec(k))


def op_emergency_restart(k: Any) -> Flow:
    """SysRq-B (``drivers/tty/sysrq.c: sysrq_handle_reboot``, 5.6.4 = 5.7.14): IRQs
    on, then ``emergency_restart()`` at once: no notifiers, no stop of the others."""
    yield from k.f.local_irq_enable(k)
    yield from k.f.emergency_restart(k)
    return 0
