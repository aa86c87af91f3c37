"""An upstream follow-up on ``kvm_init``'s own order, as a plug-in on the seed
(``BASE = "patched"``).

Commit 2b01281273738bf2d6551da48d65db2df3f28998, "KVM: Register /dev/kvm as the _very_
last thing during initialization", Sean Christopherson, 2022-11-30 (committed by Paolo
Bonzini 2022-12-29, Linux 6.2; Cc: stable; the first patch of the series e32b120071ea
ends).  Once ``/dev/kvm`` exists userspace can create VMs, so everything ``kvm_init``
sets up must be done before ``misc_register``: in 5.6 the syscore ops (suspend and
resume of VMX), the preemption notifiers, debugfs and the VFIO device ops were still
registered after it.  The fix makes ``misc_register`` the last step of ``kvm_init``.

File/function: ``virt/kvm/kvm_main.c``, ``kvm_init``; in the model its tail,
``kvm_init_register`` (the piece that exposes KVM), is the only function replaced.  Of
the steps that moved, the models have the syscore ops (``register_syscore_ops``); a
``misc_register`` failure has no fault site in the models, so the new error label that
unwinds the syscore ops is not modelled.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.state import ENOMEM

BASE = "patched"


def kvm_init_register(k: Any) -> Flow:
    """The tail of ``kvm_init`` with ``misc_register`` moved to the very end."""
    yield "kvm_init:cpuhp_setup_state_nocalls"
    k.hotplug_registered = True
    yield "kvm_init:register_reboot_notifier"
    k.reboot_notifier_registered = True
    yield "kvm_init:kmem_cache_create"
    if k.fail("kvm_init:register"):
        return (yield from k.f.kvm_init_unwind(k, ENOMEM, "out_free_3"))
    yield "kvm_init:register_syscore_ops"
    k.syscore_registered = True
    yield "kvm_init:misc_register"
    k.dev_kvm_registered = True
    return 0
