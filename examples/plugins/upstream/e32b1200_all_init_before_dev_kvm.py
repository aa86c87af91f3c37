"""Upstream fix for F07 (and F13), as a plug-in on the series state before it
(``BASE = "4f8396b9_kvm_x86_vendor_init.py"``, itself on the F04 fix).

Commit e32b120071ea114efc0b4ddd439547750b85f618, "KVM: VMX: Do _all_ initialization
before exposing /dev/kvm to userspace", Sean Christopherson, 2022-11-30 (Linux 6.3;
Cc: stable).  ``kvm_init`` exposes ``/dev/kvm``, so userspace may create VMs as soon as
it returns; ``vmx_init`` still had work after it: ``vmx_setup_l1d_flush`` (whose
failure path tears KVM down under a live VM: F07) and the ``loaded_vmcss_on_cpu``
initialisation (a vCPU created before it dereferences a NULL list head: the oops in
the commit message, F13).  The fix calls ``kvm_init`` last; the vendor cleanup that
used to be reached through ``vmx_exit`` becomes ``__vmx_exit`` (crash callback
cleared, RCU synchronised, L1D flush pages freed), used by both ``vmx_exit`` (after
``kvm_exit`` and ``kvm_x86_vendor_exit``) and ``vmx_init``'s new error path.

File/functions: ``arch/x86/kvm/vmx/vmx.c``: ``vmx_init``, ``vmx_exit``, new
``__vmx_exit``.  Nothing else: the functions the commit touches.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.plugin import new_function

BASE = "4f8396b9_kvm_x86_vendor_init.py"


@new_function
def __vmx_exit(k: Any) -> Flow:
    yield "__vmx_exit:clear_crash_callback"
    k.crash_vmclear_loaded_vmcss = None  # RCU_INIT_POINTER(..., NULL)
    yield "__vmx_exit:synchronize_rcu"


def vmx_exit(k: Any) -> Flow:
    yield from k.f.kvm_exit(k)
    yield from k.f.kvm_x86_vendor_exit(k)
    yield from k.f.__vmx_exit(k)


def vmx_init(k: Any) -> Flow:
    ops = k.statics["vmx_init_ops"]
    r = yield from k.f.kvm_x86_vendor_init(k, ops)
    if r:
        return r
    r = yield from k.f.vmx_setup_l1d_flush(k)
    if r:
        yield from k.f.kvm_x86_vendor_exit(k)  # err_l1d_flush
        return r
    for cpu in range(len(k.hw.cpus)):  # for_each_possible_cpu
        yield from k.f.INIT_LIST_HEAD(k, k.loaded_vmcss_on_cpu[cpu])
        yield from k.f.INIT_LIST_HEAD(k, k.blocked_vcpu_on_cpu[cpu])
        yield from k.f.spin_lock_init(k, f"blocked_vcpu_on_cpu_lock[{cpu}]")
    yield "vmx_init:rcu_assign_pointer"
    k.crash_vmclear_loaded_vmcss = "crash_vmclear_local_loaded_vmcss"
    # Common KVM initialisation comes last: after it, /dev/kvm is exposed to userspace.
    r = yield from k.f.kvm_init(k, ops)
    if r:
        yield from k.f.__vmx_exit(k)  # err_kvm_init, falling into err_l1d_flush
        yield from k.f.kvm_x86_vendor_exit(k)
        return r
    return 0
