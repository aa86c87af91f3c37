"""The 2022 init-order series up to the step before e32b120071ea, as a plug-in on the
F04 fix (``BASE = "dbef2808_crash_cleanup_when_kvm_unused.py"``, as upstream: by 2022
``vmx_init`` initialised the per-CPU lists).

Models the state the prerequisite commits of Sean Christopherson's series "KVM:
Rework kvm_init() and hardware enabling" (v2, 2022-11-30, merged for Linux 6.3) leave
``vmx_init`` in, so that ``e32b1200_all_init_before_dev_kvm.py`` overrides only what
that commit touches:

- 4f8396b96a9fc672964842fe7adbe8ddca8a3adf, "KVM: x86: Move guts of kvm_arch_init()
  to standalone helper": ``kvm_arch_init()``'s body becomes ``kvm_x86_vendor_init()``
  (and ``kvm_arch_exit()``'s ``kvm_x86_vendor_exit()``), called by ``vmx_init`` before
  ``kvm_init``; ``kvm_arch_init``/``kvm_arch_exit`` are left empty;
- b7483387e374977396152298bfbddee1ca0a062e, "KVM: x86: Move hardware setup/unsetup to
  init/exit", and 63a1bd8ad1ac9e4e8bfcd5914c8899606e04898d, "KVM: Drop arch hardware
  (un)setup hooks": the vendor ``hardware_setup``/``hardware_unsetup`` calls move from
  ``kvm_init``/``kvm_exit`` into the vendor init/exit.

The per-CPU compatibility check stays in ``kvm_init`` (it moved to CPU onlining later in
the same series), and ``/dev/kvm`` is still registered inside ``kvm_init``, *before*
``vmx_init`` runs ``vmx_setup_l1d_flush`` and initialises ``loaded_vmcss_on_cpu``: F07's
window and F13's are both still open.  The goto-labels of the upstream ``vmx_init``
are kept: its ``err_l1d_flush`` path runs ``vmx_exit()`` (which already calls
``kvm_x86_vendor_exit()``) and then falls into ``err_kvm_init``'s second
``kvm_x86_vendor_exit()``.

Functions (kernel names): ``vmx_init``, ``vmx_exit`` (``arch/x86/kvm/vmx/vmx.c``);
``kvm_arch_init``, ``kvm_arch_exit``, new ``kvm_x86_vendor_init`` /
``kvm_x86_vendor_exit`` (``arch/x86/kvm/x86.c``); ``kvm_init`` with its error labels
(``kvm_init_unwind``) and ``kvm_exit`` (``virt/kvm/kvm_main.c``).
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.state import ENOMEM
from vmxfuzz.kernel.structs import KStruct
from vmxfuzz.patched.x86 import kvm_arch_init as _kvm_arch_init_guts
from vmxfuzz.plugin import new_function

BASE = "dbef2808_crash_cleanup_when_kvm_unused.py"


# ---- arch/x86/kvm/x86.c ---------------------------------------------------------------------
@new_function
def kvm_x86_vendor_init(k: Any, ops: KStruct) -> Flow:
    """The old ``kvm_arch_init`` guts, moved verbatim (the seed's function, called as a
    helper), then the vendor ``hardware_setup`` (with the seed's runtime-ops copy)."""
    r = yield from _kvm_arch_init_guts(k, ops)
    if r:
        return r
    r = yield from k.f.kvm_arch_hardware_setup(k, ops)  # the moved setup, same steps
    if r < 0:
        yield from _arch_exit_guts(k)
        return r
    return 0


def _arch_exit_guts(k: Any) -> Flow:
    """The old ``kvm_arch_exit`` body, the tail of ``kvm_x86_vendor_exit``."""
    yield "kvm_arch_exit:clear_hardware_enable"
    k.kvm_x86_ops.write(k, "hardware_enable", None)


@new_function
def kvm_x86_vendor_exit(k: Any) -> Flow:
    yield from k.f.kvm_x86_call(k, "hardware_unsetup")
    yield from _arch_exit_guts(k)


def kvm_arch_init(k: Any, opaque: KStruct) -> Flow:
    """Empty after 4f8396b96a9f."""
    return 0
    yield


def kvm_arch_exit(k: Any) -> Flow:
    """Empty after 4f8396b96a9f."""
    return
    yield


# ---- virt/kvm/kvm_main.c ------------------------------------------------------------------
def kvm_init(k: Any, opaque: Any) -> Flow:
    """``kvm_init`` without the arch hardware setup; ``/dev/kvm`` still in the tail."""
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
    for cpu in k.online_cpus():
        rtn = [0]
        c = (rtn, opaque)
        yield from k.f.smp_call_function_single(
            k, cpu, "check_processor_compat", lambda c=c: k.f.check_processor_compat(k, c)
        )
        if rtn[0] < 0:
            return (yield from k.f.kvm_init_unwind(k, rtn[0], "out_free_2"))
    return (yield from k.f.kvm_init_register(k))


def kvm_init_unwind(k: Any, r: int, label: str) -> Flow:
    """``kvm_init``'s error labels without ``kvm_arch_hardware_unsetup`` (63a1bd8ad1ac)."""
    if label == "out_free_3":
        yield "kvm_init:unregister_reboot_notifier"
        k.reboot_notifier_registered = False
        yield "kvm_init:cpuhp_remove_state_nocalls"
        k.hotplug_registered = False
    if label != "out_free_0":
        yield "kvm_init:free_cpumask"
        k.cpus_hardware_enabled = None
    yield "kvm_init:kvm_irqfd_exit"
    yield from k.f.kvm_arch_exit(k)
    return r


def kvm_exit(k: Any) -> Flow:
    """``kvm_exit`` without ``kvm_arch_hardware_unsetup`` (63a1bd8ad1ac)."""
    yield "kvm_exit:misc_deregister"
    k.dev_kvm_registered = False
    yield "kvm_exit:unregister_syscore_ops"
    k.syscore_registered = False
    yield "kvm_exit:unregister_reboot_notifier"
    k.reboot_notifier_registered = False
    yield "kvm_exit:cpuhp_remove_state"
    k.hotplug_registered = False
    yield from k.f.on_each_cpu(k, "hardware_disable_nolock", lambda: k.f.hardware_disable_nolock(k))
    yield from k.f.kvm_arch_exit(k)
    yield "kvm_exit:kvm_irqfd_exit"
    yield "kvm_exit:free_cpumask"
    k.cpus_hardware_enabled = None


# ---- arch/x86/kvm/vmx/vmx.c -----------------------------------------------------------------
def vmx_init(k: Any) -> Flow:
    ops = k.statics["vmx_init_ops"]
    r = yield from k.f.kvm_x86_vendor_init(k, ops)
    if r:
        return r
    r = yield from k.f.kvm_init(k, ops)
    if r:
        yield from k.f.kvm_x86_vendor_exit(k)  # err_kvm_init
        return r
    r = yield from k.f.vmx_setup_l1d_flush(k)
    if r:
        yield from k.f.vmx_exit(k)  # err_l1d_flush, falling into err_kvm_init
        yield from k.f.kvm_x86_vendor_exit(k)
        return r
    for cpu in range(len(k.hw.cpus)):  # for_each_possible_cpu
        yield from k.f.INIT_LIST_HEAD(k, k.loaded_vmcss_on_cpu[cpu])
        yield from k.f.INIT_LIST_HEAD(k, k.blocked_vcpu_on_cpu[cpu])
        yield from k.f.spin_lock_init(k, f"blocked_vcpu_on_cpu_lock[{cpu}]")
    yield "vmx_init:rcu_assign_pointer"
    k.crash_vmclear_loaded_vmcss = "crash_vmclear_local_loaded_vmcss"
    return 0


def vmx_exit(k: Any) -> Flow:
    yield "vmx_exit:clear_crash_callback"
    k.crash_vmclear_loaded_vmcss = None  # RCU_INIT_POINTER(..., NULL)
    yield "vmx_exit:synchronize_rcu"
    yield from k.f.kvm_exit(k)
    yield from k.f.kvm_x86_vendor_exit(k)
