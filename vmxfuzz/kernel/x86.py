"""``arch/x86/kvm/x86.c`` code the seed did not change, and hook dispatch.

Runtime hooks are called as ``kvm_x86_call(k, "hook", ...)``.  How the hook is
*fetched* is version-specific (5.6: ``kvm_x86_ops->hook`` through a pointer;
seed: ``kvm_x86_ops.hook`` from a by-value copy) and lives in the variant's
``kvm_x86_ops_hook``; calling it, and telling the oracle, is shared.
"""

from __future__ import annotations

from typing import Any

from ..machine.errors import InitdataAfterInit, NullDeref, UseAfterFree
from .list import Flow
from .structs import KStruct

# __init functions of the vendor module (text freed after module init).
INIT_TEXT = frozenset(
    {
        "cpu_has_kvm_support",
        "vmx_disabled_by_bios",
        "hardware_setup",
        "vmx_check_processor_compat",
        "vmx_init",
    }
)


def call_op(k: Any, name: str | None, hook: str, *args: Any) -> Flow:
    """Call the function a hook names; NULL is an oops, freed __init text is flagged."""
    if name is None:
        raise NullDeref(f"call of NULL hook .{hook}")
    if name in INIT_TEXT and k.module_init_done:
        raise InitdataAfterInit(f"call of __init function {name} (.{hook}) after init")
    if k.module_state == "unloaded":
        raise UseAfterFree(
            f"call of {name} (.{hook}): kvm_intel's text was freed",
            ("kvm_intel module text",),
        )
    k.oracle.hook_called(k, hook)
    r = yield from getattr(k.f, name)(k, *args)
    k.oracle.hook_returned(k, hook, r)
    return r


def ops_call(k: Any, ops: KStruct | None, hook: str, *args: Any) -> Flow:
    """``ops->hook(args)`` through a struct pointer (init ops, 5.6 kvm_x86_ops)."""
    yield f"ops_call:{hook}"
    if ops is None:
        raise NullDeref(f"NULL ops pointer calling .{hook}")
    name = ops.read(k, hook)
    return (yield from k.f.call_op(k, name, hook, *args))


def kvm_x86_call(k: Any, hook: str, *args: Any) -> Flow:
    """A runtime ``kvm_x86_ops`` hook call from generic code."""
    name = yield from k.f.kvm_x86_ops_hook(k, hook)
    return (yield from k.f.call_op(k, name, hook, *args))


def kvm_arch_hardware_enable(k: Any) -> Flow:
    return (yield from k.f.kvm_x86_call(k, "hardware_enable"))


def kvm_arch_hardware_disable(k: Any) -> Flow:
    yield from k.f.kvm_x86_call(k, "hardware_disable")


def kvm_arch_vcpu_load(k: Any, vcpu: Any, cpu: int) -> Flow:
    yield from k.f.kvm_x86_call(k, "vcpu_load", vcpu, cpu)
    yield "kvm_arch_vcpu_load:vcpu_cpu"
    vcpu.cpu = cpu


def kvm_arch_vcpu_put(k: Any, vcpu: Any) -> Flow:
    """``x86.c: kvm_arch_vcpu_put``: a preempted vCPU records whether it was preempted
    in kernel mode (``get_cpl``, a VMREAD), then the vendor ``vcpu_put``."""
    if vcpu.preempted:
        yield from k.f.kvm_x86_call(k, "get_cpl", vcpu)
    yield from k.f.kvm_x86_call(k, "vcpu_put", vcpu)


def kvm_init_msr_list(k: Any) -> Flow:
    """Queries runtime hooks: the reason the seed copies the ops before calling it."""
    yield from k.f.kvm_x86_call(k, "has_emulated_msr")


def kvm_arch_init_vm(k: Any, vm: Any) -> Flow:
    return (yield from k.f.kvm_x86_call(k, "vm_init", vm))


def kvm_arch_vcpu_create(k: Any, vm: Any, name: str) -> Flow:
    return (yield from k.f.kvm_x86_call(k, "vcpu_create", vm, name))


def kvm_arch_vcpu_setup(k: Any, vcpu: Any) -> Flow:
    """``vcpu_load(); kvm_vcpu_reset(); kvm_init_mmu(); vcpu_put()``."""
    yield from k.f.vcpu_load(k, vcpu)
    yield from k.f.vcpu_put(k, vcpu)
    return 0


def kvm_arch_vcpu_free(k: Any, vcpu: Any) -> Flow:
    yield from k.f.kvm_x86_call(k, "vcpu_free", vcpu)


def kvm_unload_vcpu_mmu(k: Any, vcpu: Any) -> Flow:
    yield from k.f.vcpu_load(k, vcpu)
    yield from k.f.vcpu_put(k, vcpu)


def kvm_free_vcpus(k: Any, vm: Any) -> Flow:
    for vcpu in list(vm.vcpus):
        yield from k.f.kvm_unload_vcpu_mmu(k, vcpu)
    for vcpu in list(vm.vcpus):
        yield from k.f.kvm_arch_vcpu_free(k, vcpu)
        vm.vcpus.remove(vcpu)


def kvm_arch_destroy_vm(k: Any, vm: Any) -> Flow:
    yield from k.f.kvm_free_vcpus(k, vm)


def vcpu_enter_guest(k: Any, vcpu: Any) -> Flow:
    """``x86.c: vcpu_enter_guest`` (5.6.4 and 5.7.14 alike, requests not modelled):
    ``preempt_disable()``, ``prepare_guest_switch`` (IRQs still on), IRQs off, the
    cancel check (``need_resched()``: IRQs and preemption back on, return 1 so
    ``vcpu_run`` enters again), the vendor ``run`` hook (VMLAUNCH/VMRESUME), IRQs on,
    ``preempt_enable()`` (a preemption point before ``handle_exit``).

    A failed entry is not an error of the ioctl: ``vmx_handle_exit`` reports it to
    userspace as ``run->exit_reason = KVM_EXIT_FAIL_ENTRY`` and ``KVM_RUN`` returns 0.
    That exit reason is what userspace observes, so it is the op's result."""
    k.f.preempt_disable(k)
    yield from k.f.kvm_x86_call(k, "prepare_guest_switch", vcpu)
    yield from k.f.local_irq_disable(k)
    yield "vcpu_enter_guest:need_resched"
    to = k.f.need_resched(k)
    if to is not None:
        yield from k.f.local_irq_enable(k)
        k.ctx.preempt_count -= 1  # preempt_enable() with need_resched() set
        yield from k.f.__schedule(k, to)
        return 1  # cancel_injection: vcpu_run enters the guest again
    r = yield from k.f.kvm_x86_call(k, "run", vcpu)
    yield from k.f.local_irq_enable(k)
    yield "vcpu_enter_guest:preempt_enable"
    yield from k.f.preempt_enable(k)
    return "KVM_EXIT_FAIL_ENTRY" if r == -1 else 0


def vcpu_run(k: Any, vcpu: Any) -> Flow:
    """``x86.c: vcpu_run``: enter the guest until an exit goes to userspace (``r <= 0``
    in the kernel; here every entry that ran exits to userspace, and a cancelled entry,
    1, loops)."""
    while True:
        r = yield from k.f.vcpu_enter_guest(k, vcpu)
        if r != 1:
            return r
