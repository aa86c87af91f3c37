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
    """IRQs off around the entry; the vendor ``run`` hook does VMLAUNCH/VMRESUME.

    A failed entry is not an error of the ioctl: ``vmx_handle_exit`` reports it to
    userspace as ``run->exit_reason = KVM_EXIT_FAIL_ENTRY`` and ``KVM_RUN`` returns 0.
    That exit reason is what userspace observes, so it is the op's result."""
    yield from k.f.local_irq_disable(k)
    r = yield from k.f.kvm_x86_call(k, "run", vcpu)
    yield from k.f.local_irq_enable(k)
    return "KVM_EXIT_FAIL_ENTRY" if r == -1 else 0
