"""``arch/x86/kvm/x86.c`` (Linux 5.6): one ops struct, installed by pointer early."""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.state import EEXIST, EIO, ENOMEM, EOPNOTSUPP
from vmxfuzz.kernel.structs import KStruct, hook


def x86_static_data(k: Any) -> None:
    """``struct kvm_x86_ops *kvm_x86_ops __read_mostly;`` (NULL)."""
    k.kvm_x86_ops = None


def kvm_x86_ops_hook(k: Any, name: str) -> Flow:
    """``kvm_x86_ops->name``: load the pointer, then the member."""
    yield "kvm_x86_ops:load"
    return hook(k.kvm_x86_ops, k, name)


def kvm_arch_init(k: Any, opaque: KStruct) -> Flow:
    ops = opaque
    yield "kvm_arch_init:check_loaded"
    if k.kvm_x86_ops is not None:
        return EEXIST  # "kvm: already loaded the other module"
    if not (yield from k.f.ops_call(k, ops, "cpu_has_kvm_support")):
        return EOPNOTSUPP
    if (yield from k.f.ops_call(k, ops, "disabled_by_bios")):
        return EOPNOTSUPP
    yield "kvm_arch_init:kvm_mmu_module_init"
    if k.fail("kvm_arch_init:mmu"):
        return ENOMEM
    yield "kvm_arch_init:set_kvm_x86_ops"
    k.kvm_x86_ops = ops
    yield "kvm_arch_init:kvm_timer_init"
    return 0


def kvm_arch_hardware_setup(k: Any) -> Flow:
    r = yield from k.f.ops_call(k, k.kvm_x86_ops, "hardware_setup")
    if r != 0:
        return r
    yield "kvm_arch_hardware_setup:cr4_reserved_bits"
    k.cr4_reserved_bits = k.cpu_state().cr4_reserved
    yield from k.f.kvm_init_msr_list(k)
    return 0


def kvm_arch_hardware_unsetup(k: Any) -> Flow:
    yield from k.f.kvm_x86_call(k, "hardware_unsetup")


def kvm_arch_check_processor_compat(k: Any) -> Flow:
    yield "kvm_arch_check_processor_compat:cr4_reserved_bits"
    if k.cpu_state().cr4_reserved != k.cr4_reserved_bits:
        return EIO
    return (yield from k.f.ops_call(k, k.kvm_x86_ops, "check_processor_compatibility"))


def kvm_arch_exit(k: Any) -> Flow:
    yield "kvm_arch_exit:clear_kvm_x86_ops"
    k.kvm_x86_ops = None
