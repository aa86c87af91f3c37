"""``virt/kvm/kvm_main.c`` (Linux 5.6 + seed): ``kvm_init`` passes ``opaque`` on."""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.state import ENOMEM


def check_processor_compat(k: Any, c: tuple[list[int], Any]) -> Flow:
    ret, opaque = c  # struct kvm_cpu_compat_check
    ret[0] = yield from k.f.kvm_arch_check_processor_compat(k, opaque)


def kvm_init(k: Any, opaque: Any) -> Flow:
    r = yield from k.f.kvm_arch_init(k, opaque)
    if r:
        return r
    yield "kvm_init:kvm_irqfd_init"
    if k.fail("kvm_irqfd_init"):
        yield from k.f.kvm_arch_exit(k)
        return ENOMEM
    yield "kvm_init:alloc_cpumask"
    if k.fail("alloc_cpus_hardware_enabled"):
        return (yield from k.f.kvm_init_unwind(k, ENOMEM, "out_free_0"))
    k.cpus_hardware_enabled = set()
    r = yield from k.f.kvm_arch_hardware_setup(k, opaque)
    if r < 0:
        return (yield from k.f.kvm_init_unwind(k, r, "out_free_1"))
    for cpu in k.online_cpus():
        rtn = [0]
        c = (rtn, opaque)
        yield from k.f.smp_call_function_single(
            k, cpu, "check_processor_compat", lambda c=c: k.f.check_processor_compat(k, c)
        )
        if rtn[0] < 0:
            return (yield from k.f.kvm_init_unwind(k, rtn[0], "out_free_2"))
    return (yield from k.f.kvm_init_register(k))
