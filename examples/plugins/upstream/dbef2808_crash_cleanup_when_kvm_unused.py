"""Upstream fix for F04, as a plug-in on the seed (``BASE = "patched"``).

Commit dbef2808af6c594922fe32833b30f55f35e9da6d, "KVM: VMX: fix crash cleanup when
KVM wasn't used", Vitaly Kuznetsov, 2020-04-01 (Linux 5.7; ``Fixes: 31603d4fc2bb``,
the seed's patch 1/3).  With the crash bitmap gone, ``crash_vmclear_local_loaded_vmcss``
walks ``loaded_vmcss_on_cpu`` of a CPU where no VM ever ran, a list
``hardware_enable`` never initialised: a NULL dereference in the crash path.  The fix
moves ``INIT_LIST_HEAD(&per_cpu(loaded_vmcss_on_cpu, cpu))`` (and the posted-interrupt
``blocked_vcpu_on_cpu`` list and its lock, initialised beside it) out of
``hardware_enable`` into ``vmx_init``, for every possible CPU, right before the crash
callback is published.

Files/functions (``arch/x86/kvm/vmx/vmx.c``): ``hardware_enable`` (no list init),
``vmx_init`` (a ``for_each_possible_cpu`` loop after ``vmx_setup_l1d_flush``).  The
result is Linux 5.7's code: ``/work/.mirror/a5221985+linux-5.7.14``,
``arch/x86/kvm/vmx/vmx.c``, ``hardware_enable`` and ``vmx_init``.

What it leaves: the lists are initialised *after* ``kvm_init`` registered ``/dev/kvm``,
so a VM created in that window links its VMCS into a list that is still zeroed (and
the loop then re-initialises a list that has an entry).  Upstream fixed that in 2022
with e32b120071ea (``e32b1200_all_init_before_dev_kvm.py``), whose commit message
names exactly this NULL dereference.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.state import EBUSY

BASE = "patched"


def hardware_enable(k: Any) -> Flow:
    """5.7's ``hardware_enable``: the seed's, without the per-CPU list init."""
    cpu = k.cpu
    phys_addr = k.vmxarea[cpu]
    yield "hardware_enable:cr4_read_shadow"
    if k.cpu_state().cr4_shadow_vmxe:
        return EBUSY
    r = yield from k.f.kvm_cpu_vmxon(k, phys_addr)
    if r:
        return r
    if k.config.ept:
        yield from k.f.ept_sync_global(k)
    return 0


def vmx_init(k: Any) -> Flow:
    """5.7's ``vmx_init``: the lists of every possible CPU, before the crash callback."""
    r = yield from k.f.kvm_init(k, k.statics["vmx_init_ops"])
    if r:
        return r
    r = yield from k.f.vmx_setup_l1d_flush(k)
    if r:
        yield from k.f.vmx_exit(k)
        return r
    for cpu in range(len(k.hw.cpus)):  # for_each_possible_cpu
        yield from k.f.INIT_LIST_HEAD(k, k.loaded_vmcss_on_cpu[cpu])
        yield from k.f.INIT_LIST_HEAD(k, k.blocked_vcpu_on_cpu[cpu])
        yield from k.f.spin_lock_init(k, f"blocked_vcpu_on_cpu_lock[{cpu}]")
    yield "vmx_init:rcu_assign_pointer"
    k.crash_vmclear_loaded_vmcss = "crash_vmclear_local_loaded_vmcss"
    return 0
