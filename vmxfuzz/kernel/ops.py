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
    if k.vms:
        return EBUSY  # module refcount held by the VMs
    k.module_state = "going"
    yield from k.f.vmx_exit(k)
    yield "free_module:done"
    k.module_state = "unloaded"
    k.module_init_done = False
    return 0


def op_create_vm(k: Any, vm: str) -> Flow:
    yield "kvm_dev_ioctl_create_vm:open"
    if not k.dev_kvm_registered:
        return ENOENT
    if vm in k.vms:
        return EEXIST
    r = yield from k.f.kvm_create_vm(k, vm)
    return r if isinstance(r, int) else 0


def op_destroy_vm(k: Any, vm: str) -> Flow:
    yield "kvm_vm_release:start"
    kvm = k.vms.get(vm)
    if kvm is None:
        return ENOENT
    for vcpu in kvm.vcpus:  # every vCPU fd is closed first: wait for running threads
        yield from k.f.mutex_lock_vcpu(k, vcpu)
        yield from k.f.mutex_unlock_vcpu(k, vcpu)
    yield from k.f.kvm_destroy_vm(k, kvm)
    return 0


def op_create_vcpu(k: Any, vm: str, vcpu: str) -> Flow:
    yield "kvm_vm_ioctl_create_vcpu:start"
    kvm = k.vms.get(vm)
    if kvm is None:
        return ENOENT
    if vcpu in k.vcpus:
        return EEXIST
    return (yield from k.f.kvm_vm_ioctl_create_vcpu(k, kvm, vcpu))


def op_run_vcpu(k: Any, vcpu: str) -> Flow:
    """``ioctl(KVM_RUN)`` on this CPU: loading here is how a vCPU migrates."""
    yield "kvm_vcpu_ioctl:start"
    v = k.vcpus.get(vcpu)
    if v is None:
        return ENOENT
    yield from k.f.mutex_lock_vcpu(k, v)
    r = yield from k.f.kvm_arch_vcpu_ioctl_run(k, v)
    yield from k.f.mutex_unlock_vcpu(k, v)
    return r


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


def take_cpu_down(k: Any) -> Flow:
    """The dying CPU under stop_machine: offline, DYING callbacks, flush IPIs."""
    yield from k.f.local_irq_disable(k)
    yield "__cpu_disable:set_offline"
    k.cpu_state().online = False
    if k.hotplug_registered:
        yield from k.f.kvm_dying_cpu(k)
    yield from k.f.flush_smp_call_function_queue(k)
    return 0


def flush_smp_call_function_queue(k: Any) -> Flow:
    """``smpcfd_dying_cpu``: run the IPI functions still queued for this CPU."""
    q = k.sched.ipis[k.cpu]
    while q:
        yield "flush_smp_call_function_queue:run"
        req = q.popleft()
        yield from req.factory()
        req.done = True


def op_cpu_online(k: Any, cpu: int) -> Flow:
    yield "cpu_up:start"
    if k.hw.cpus[cpu].online:
        return EBUSY
    return (yield from k.f.run_on(k, cpu, "cpu_bringup", lambda: k.f.cpu_bringup(k)))


def op_cpu_offline(k: Any, cpu: int) -> Flow:
    yield "cpu_down:start"
    if not k.hw.cpus[cpu].online:
        return ENODEV
    if len(k.online_cpus()) == 1:
        return EBUSY
    return (yield from k.f.run_on(k, cpu, "take_cpu_down", lambda: k.f.take_cpu_down(k)))


def run_on(k: Any, cpu: int, name: str, factory: Any) -> Flow:
    """Run a flow as a task on ``cpu`` (stopper / bring-up) and wait for it."""
    if cpu == k.cpu:
        return (yield from factory())
    box: list[Any] = []
    k.sched.submit(cpu, Task(name, factory, on_done=box.append, on_oops=box.append))
    yield Wait("run_on:wait", lambda: bool(box), what=f"{name} on CPU {cpu}")
    return box[0]


def op_suspend(k: Any) -> Flow:
    """A suspend/resume cycle (``enter_state``), run from this CPU.

    Freeze the non-boot CPUs (their DYING callbacks run), ``kvm_suspend`` as a
    syscore op with IRQs off, wake, ``kvm_resume``, then thaw the CPUs (STARTING).
    """
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
    return 0


def op_panic(k: Any) -> Flow:
    yield from k.f.panic(k, "scenario panic")
    return 0


def op_reboot(k: Any) -> Flow:
    yield from k.f.kernel_kexec(k, "reboot")
    return 0


def op_kexec(k: Any) -> Flow:
    yield from k.f.kernel_kexec(k, "kexec -e")
    return 0
