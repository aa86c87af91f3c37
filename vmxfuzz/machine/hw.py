"""The hardware: CPUs, CR4, VMX root, the current-VMCS pointer and the VMCS cache.

Only the SDM rules that matter to the modelled kernel code are implemented (spec
section 2).  Instructions raise :class:`CpuException` for #UD/#GP and return a
:class:`VmFail` for VMfail; they never decide what is a violation: they tell the
:class:`Observer` (the oracle) what happened and let it judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .errors import CpuException, UseAfterFree, VmFail
from .faults import FaultPlan
from .memory import KObject, is_freed, peek

CLEAR = "clear"
LAUNCHED = "launched"


class Vmcs(KObject):
    """A VMCS region in memory (ordinary or shadow) and the fields we model."""

    kind = "vmcs"

    def __init__(self, name: str, shadow: bool = False, owner: str = "") -> None:
        super().__init__(name)
        self.shadow = shadow
        self.owner = owner
        # Memory image of the launch state (written back by VMCLEAR).
        self.launch_state = CLEAR
        # VMCS fields that matter here: secondary control SHADOW_VMCS and the link.
        self.shadowing = False
        self.link: Vmcs | None = None

    def describe(self) -> str:
        what = "shadow VMCS" if peek(self, "shadow") else "VMCS"
        owner = peek(self, "owner")
        return f"{what} {peek(self, 'name')}" + (f" (of {owner})" if owner else "")


class Observer(Protocol):
    """What the machine reports; the oracle implements it."""

    def vmptrld(self, cpu: int, vmcs: Vmcs) -> None: ...

    def vmcs_freed(self, vmcs: Vmcs) -> None: ...

    def vmx_event(self, cpu: int, event: str, vmcs: Vmcs | None = None) -> None: ...


@dataclass
class Cpu:
    """One logical CPU: architectural state plus the scheduler-visible flags."""

    id: int
    online: bool = True
    halted: bool = False
    has_vmx: bool = True
    feat_ctl_vmx: bool = True  # IA32_FEAT_CTL locked with VMX enabled
    cr4_vmxe: bool = False  # the register
    cr4_shadow_vmxe: bool = False  # the kernel's per-CPU shadow copy (cpu_tlbstate.cr4)
    vmx_root: bool = False
    current_vmcs: Vmcs | None = None  # the processor's current-VMCS pointer
    cache: dict[Vmcs, str] = field(default_factory=dict)  # active VMCSes -> launch state
    irqs_enabled: bool = True
    pt_vmx_off: bool = False  # intel_pt_handle_vmx(1) stopped PT for VMX operation
    cr4_reserved: int = 0  # reserved-bit mask, compared by the compat check
    vmx_caps: int = 0  # VMX capability signature, compared by the compat check


@dataclass
class Hardware:
    """All CPUs and the VMX instruction set."""

    cpus: list[Cpu]
    faults: FaultPlan
    observer: Observer

    def _note(self, c: int, event: str, vmcs: Vmcs | None = None) -> None:
        """Tell the observer about a VMX-operation transition (the cause analysis
        keeps each CPU's last one: vmxfuzz/causes.py)."""
        note = getattr(self.observer, "vmx_event", None)
        if note is not None:
            note(c, event, vmcs)

    # ---- CR4 ---------------------------------------------------------------------
    def write_cr4_vmxe(self, c: int, value: bool) -> None:
        cpu = self.cpus[c]
        if not value and cpu.vmx_root:
            raise CpuException("GP", "clearing CR4.VMXE in VMX operation")
        cpu.cr4_vmxe = value
        self._note(c, "cr4-vmxe-set" if value else "cr4-vmxe-clear")

    # ---- VMX ---------------------------------------------------------------------
    def _need_root(self, c: int, insn: str) -> Cpu:
        cpu = self.cpus[c]
        if not cpu.vmx_root:
            raise CpuException("UD", f"{insn} outside VMX root operation")
        return cpu

    def _touch(self, vmcs: Vmcs, insn: str) -> None:
        if is_freed(vmcs):
            raise UseAfterFree(f"{insn} of freed {vmcs.describe()}", (str(peek(vmcs, "name")),))

    def vmxon(self, c: int, region: KObject | None) -> VmFail | None:
        try:
            r = self._vmxon(c, region)
        except CpuException:
            self._note(c, "vmxon-fault")
            raise
        if r is None or not self.cpus[c].vmx_root:
            self._note(c, "vmxon" if r is None else "vmxon-vmfail")
        return r

    def _vmxon(self, c: int, region: KObject | None) -> VmFail | None:
        cpu = self.cpus[c]
        injected = self.faults.check("vmxon", c)
        if not cpu.cr4_vmxe:
            raise CpuException("UD", "VMXON with CR4.VMXE clear")
        if injected == "UD":
            raise CpuException("UD", "VMXON (injected fault)")
        if not cpu.feat_ctl_vmx or not cpu.has_vmx:
            raise CpuException("GP", "VMXON with VMX disabled in IA32_FEAT_CTL")
        if injected == "GP":
            raise CpuException("GP", "VMXON (injected fault)")
        if cpu.vmx_root:
            return VmFail("VMfailValid", "VMXON executed in VMX root operation")
        if region is None or is_freed(region) or injected == "VMfailInvalid":
            return VmFail("VMfailInvalid", "bad VMXON region")
        cpu.vmx_root = True
        cpu.current_vmcs = None
        return None

    def vmxoff(self, c: int) -> None:
        cpu = self._need_root(c, "VMXOFF")
        cpu.vmx_root = False  # the VMCS cache is NOT flushed or written back
        self._note(c, "vmxoff")

    def vmclear(self, c: int, vmcs: Vmcs) -> VmFail | None:
        cpu = self._need_root(c, "VMCLEAR")
        self._touch(vmcs, "VMCLEAR")
        state = cpu.cache.pop(vmcs, None)
        vmcs.launch_state = CLEAR
        del state
        if cpu.current_vmcs is vmcs:
            cpu.current_vmcs = None
        return None

    def vmptrld(self, c: int, vmcs: Vmcs) -> VmFail | None:
        cpu = self._need_root(c, "VMPTRLD")
        self._touch(vmcs, "VMPTRLD")
        self.observer.vmptrld(c, vmcs)
        if vmcs not in cpu.cache:
            cpu.cache[vmcs] = vmcs.launch_state
        cpu.current_vmcs = vmcs
        return None

    def vmread(self, c: int, fld: str) -> VmFail | None:
        cpu = self._need_root(c, "VMREAD")
        if cpu.current_vmcs is None:
            return VmFail("VMfailInvalid", "VMREAD with no current VMCS")
        self._touch(cpu.current_vmcs, "VMREAD")
        return None

    def vmwrite(self, c: int, fld: str, value: object = None) -> VmFail | None:
        cpu = self._need_root(c, "VMWRITE")
        cur = cpu.current_vmcs
        if cur is None:
            return VmFail("VMfailInvalid", "VMWRITE with no current VMCS")
        self._touch(cur, "VMWRITE")
        if fld == "SECONDARY_EXEC_SHADOW_VMCS":
            cur.shadowing = bool(value)
        elif fld == "VMCS_LINK_POINTER":
            cur.link = value if isinstance(value, Vmcs) else None
        return None

    def invept(self, c: int) -> VmFail | None:
        self._need_root(c, "INVEPT")
        return None

    def vmentry(self, c: int, launch: bool) -> VmFail | None:
        """VMLAUNCH (``launch``) or VMRESUME, then (for the model) the VM exit."""
        cpu = self._need_root(c, "VMLAUNCH" if launch else "VMRESUME")
        cur = cpu.current_vmcs
        if cur is None:
            return VmFail("VMfailInvalid", "VM entry with no current VMCS")
        self._touch(cur, "VM entry")
        state = cpu.cache.get(cur, CLEAR)
        if launch and state != CLEAR:
            return VmFail("VMfailValid", "VMLAUNCH with non-clear VMCS")
        if not launch and state != LAUNCHED:
            return VmFail("VMfailValid", "VMRESUME with non-launched VMCS")
        cpu.cache[cur] = LAUNCHED
        link = cur.link
        # The processor may cache the shadow VMCS; model the worst case: it does.
        if cur.shadowing and isinstance(link, Vmcs) and not is_freed(link):  # noqa: SIM102
            if link not in cpu.cache:
                cpu.cache[link] = CLEAR
                self._note(c, "cache-shadow", link)
        return None

    def active_on(self, vmcs: Vmcs) -> list[int]:
        return [cpu.id for cpu in self.cpus if vmcs in cpu.cache]

    def free_vmcs(self, vmcs: Vmcs) -> None:
        self.observer.vmcs_freed(vmcs)
