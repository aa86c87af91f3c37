"""Kernel data structures of the modelled code (``vmx.h``, ``kvm_host.h``).

Objects start zeroed, as ``kzalloc``/``kmem_cache_zalloc`` memory does, so a field the
code forgets to initialise has the value the kernel would see (``cpu == 0``).
"""

from __future__ import annotations

from typing import Any

from ..machine.errors import CpuException, InitdataAfterInit, NullDeref
from ..machine.hw import Vmcs
from ..machine.memory import KObject
from .list import ListHead


class LoadedVmcs(KObject):
    """``struct loaded_vmcs``."""

    kind = "loaded_vmcs"
    WEAK_FIELDS = frozenset({"cpu", "launched"})

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.vmcs: Vmcs | None = None
        self.shadow_vmcs: Vmcs | None = None
        self.cpu = 0  # zeroed memory until initialised to -1
        self.launched = 0
        self.hv_timer_soft_disabled = False
        self.loaded_vmcss_on_cpu_link = ListHead(f"{name}.link", owner=self)
        self.msr_bitmap: KObject | None = None
        self.host_state_cached = False


class NestedVmx:
    """``struct nested_vmx``: the parts the VMCS lifecycle touches."""

    def __init__(self, owner: str) -> None:
        self.vmxon = False
        self.smm_vmxon = False
        self.vmcs02 = LoadedVmcs(f"{owner}.vmcs02")
        self.cached_vmcs12: KObject | None = None
        self.cached_shadow_vmcs12: KObject | None = None
        self.current_vmptr: int = -1
        self.need_vmcs12_to_shadow_sync = False
        self.vmcs12_launched = False  # the launch state L1 sees in its vmcs12
        self.need_sync_vmcs02_to_vmcs12_rare = False


class VcpuVmx(KObject):
    """``struct vcpu_vmx`` with its embedded ``kvm_vcpu``."""

    kind = "vcpu"

    def __init__(self, name: str, vm: Kvm) -> None:
        super().__init__(name)
        self.vm = vm
        self.cpu = -1  # vcpu->cpu
        self.vmcs01 = LoadedVmcs(f"{name}.vmcs01")
        # NULL until vmx_create_vcpu points it at vmcs01 (typed Any: never read before)
        self.loaded_vmcs: Any = None
        self.nested = NestedVmx(name)
        self.guest_mode = False
        self.mutex: int | None = None  # vcpu->mutex owner (CPU), None when free
        self.preempted = False  # vcpu->preempted (kvm_sched_out / kvm_sched_in)

    def embedded(self) -> list[KObject]:
        """Objects whose memory is part of this one (freed with it)."""
        out: list[KObject] = [self.vmcs01, self.vmcs01.loaded_vmcss_on_cpu_link]
        v2 = self.nested.vmcs02
        out += [v2, v2.loaded_vmcss_on_cpu_link]
        return out


class Kvm(KObject):
    """``struct kvm``."""

    kind = "kvm"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.vcpus: list[VcpuVmx] = []
        self.users = 0  # ioctls in flight on this VM's files (file references)


class KStruct(KObject):
    """A struct of function pointers (``kvm_x86_ops``, ``kvm_x86_init_ops``).

    ``section`` says where it lives: ``__initdata`` is freed when module init
    completes (a later read is ``initdata-after-init``); ``__ro_after_init`` becomes
    read-only then (a later write faults).  Values are function names resolved through
    the variant's namespace, so a plug-in that overrides a function overrides the hook.
    """

    kind = "ops"

    def __init__(self, name: str, section: str, fields: dict[str, str | None]) -> None:
        super().__init__(name)
        self.section = section
        self.fields = dict(fields)

    def read(self, k: Any, field: str) -> str | None:
        if self.section == "__initdata" and k.module_init_done:
            raise InitdataAfterInit(f"read of {self.name}.{field} (__initdata) after init")
        return self.fields.get(field)

    def write(self, k: Any, field: str, value: str | None) -> None:
        if self.section == "__initdata" and k.module_init_done:
            raise InitdataAfterInit(f"write of {self.name}.{field} (__initdata) after init")
        if self.section == "__ro_after_init" and k.module_init_done:
            raise CpuException("PF", f"write to read-only {self.name}.{field}")
        self.fields[field] = value

    def copy_from(self, k: Any, other: KStruct) -> None:
        """Struct assignment by value (``kvm_x86_ops = *ops->runtime_ops``)."""
        if other.section == "__initdata" and k.module_init_done:
            raise InitdataAfterInit(f"copy of {other.name} (__initdata) after init")
        self.fields = dict(other.fields)


def hook(struct: KStruct | None, k: Any, field: str) -> str | None:
    """``struct->field`` through a pointer: NULL struct pointer is a NULL deref."""
    if struct is None:
        raise NullDeref(f"NULL ops pointer dereference reading .{field}")
    return struct.read(k, field)
