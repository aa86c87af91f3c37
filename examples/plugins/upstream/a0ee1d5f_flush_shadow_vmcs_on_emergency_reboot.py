"""Upstream fix for F08 and F09, as a plug-in on the seed (``BASE = "patched"``).

Commit a0ee1d5faff135e28810f29e0f06328c66f89852, "KVM: VMX: Flush shadow VMCS on
emergency reboot", Chao Gao, 2025-03-24 (Linux 6.15; ``Fixes: 16f5b9034b69`` "KVM:
nVMX: Copy processor-specific shadow-vmcs to VMCS12"; reviewed by Kai Huang, applied by
Sean Christopherson).  The crash-time walk VMCLEARs each ``loaded_vmcs``'s VMCS but not
its shadow VMCS, which is on no list: a shadow VMCS cached by the processor after a VM
entry with shadowing (F08), or made current by ``copy_shadow_to_vmcs12`` /
``copy_vmcs12_to_shadow`` when the panic NMI arrives (F09), is still active when the
kdump kernel starts.  The fix VMCLEARs ``v->shadow_vmcs`` too, when there is one, and
deliberately without ``__loaded_vmcs_clear``'s ``launched`` test, since an NMI right
after those helpers' VMPTRLD sees the shadow active but ``launched`` not yet set.

File/function: ``arch/x86/kvm/vmx/vmx.c``, ``crash_vmclear_local_loaded_vmcss``
(upstream by then named ``vmx_emergency_disable``, which also does the VMXOFF; the
model keeps the seed's split between the callback and ``cpu_emergency_vmxoff``).
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.structs import LoadedVmcs

BASE = "patched"


def _vmclear_both(k: Any, v: LoadedVmcs) -> Flow:
    yield from k.f.vmcs_clear(k, v.vmcs)
    if v.shadow_vmcs:
        yield from k.f.vmcs_clear(k, v.shadow_vmcs)


def crash_vmclear_local_loaded_vmcss(k: Any) -> Flow:
    """The seed's walk, VMCLEARing each entry's shadow VMCS as well."""
    cpu = k.cpu
    yield from k.f.list_for_each_entry(k, k.loaded_vmcss_on_cpu[cpu], lambda v: _vmclear_both(k, v))
