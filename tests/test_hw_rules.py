"""The VMX instruction rules of spec section 2, on the hardware model directly."""

from __future__ import annotations

import pytest

from vmxfuzz.machine.errors import CpuException, UseAfterFree, VmFail
from vmxfuzz.machine.faults import FaultPlan, FaultSpec
from vmxfuzz.machine.hw import CLEAR, LAUNCHED, Cpu, Hardware, Vmcs
from vmxfuzz.machine.memory import KObject, poison


class Recorder:
    def __init__(self) -> None:
        self.vmptrlds: list[tuple[int, Vmcs]] = []
        self.freed: list[Vmcs] = []

    def vmptrld(self, cpu: int, vmcs: Vmcs) -> None:
        self.vmptrlds.append((cpu, vmcs))

    def vmcs_freed(self, vmcs: Vmcs) -> None:
        self.freed.append(vmcs)


def hw(n: int = 2, faults: tuple[FaultSpec, ...] = (), **cpu0: bool) -> Hardware:
    cpus = [Cpu(id=c) for c in range(n)]
    for key, value in cpu0.items():
        setattr(cpus[0], key, value)
    return Hardware(cpus, FaultPlan(faults), Recorder())


def root(h: Hardware, c: int = 0) -> None:
    h.write_cr4_vmxe(c, True)
    assert h.vmxon(c, KObject("region")) is None


def test_vmxon_needs_cr4_vmxe() -> None:
    h = hw()
    with pytest.raises(CpuException) as e:
        h.vmxon(0, KObject("region"))
    assert e.value.vector == "UD"
    assert not h.cpus[0].vmx_root


def test_vmxon_gp_when_firmware_disabled_vmx() -> None:
    h = hw(feat_ctl_vmx=False)
    h.write_cr4_vmxe(0, True)
    with pytest.raises(CpuException) as e:
        h.vmxon(0, KObject("region"))
    assert e.value.vector == "GP"


@pytest.mark.parametrize("kind", ["GP", "UD"])
def test_vmxon_injected_faults(kind: str) -> None:
    h = hw(faults=(FaultSpec("vmxon", 2, None, kind),))
    root(h, 0)
    h.write_cr4_vmxe(1, True)
    with pytest.raises(CpuException) as e:
        h.vmxon(1, KObject("region"))
    assert e.value.vector == kind
    assert not h.cpus[1].vmx_root


def test_vmxon_injected_vmfail_and_bad_region() -> None:
    h = hw(faults=(FaultSpec("vmxon", 1, 0, "VMfailInvalid"),))
    h.write_cr4_vmxe(0, True)
    r = h.vmxon(0, KObject("region"))
    assert isinstance(r, VmFail) and r.kind == "VMfailInvalid"
    assert not h.cpus[0].vmx_root
    r = h.vmxon(0, None)
    assert isinstance(r, VmFail) and r.kind == "VMfailInvalid"


def test_vmxon_in_root_is_vmfail_valid() -> None:
    h = hw()
    root(h)
    r = h.vmxon(0, KObject("region"))
    assert isinstance(r, VmFail) and r.kind == "VMfailValid"


def test_vmxoff_needs_root_and_does_not_flush_the_cache() -> None:
    h = hw()
    with pytest.raises(CpuException):
        h.vmxoff(0)
    root(h)
    v = Vmcs("v")
    h.vmptrld(0, v)
    h.vmxoff(0)
    assert not h.cpus[0].vmx_root
    assert v in h.cpus[0].cache, "VMXOFF neither flushes nor writes back the VMCS cache"


def test_clearing_cr4_vmxe_in_root_is_gp() -> None:
    h = hw()
    root(h)
    with pytest.raises(CpuException) as e:
        h.write_cr4_vmxe(0, False)
    assert e.value.vector == "GP"


def test_vmclear_only_affects_this_cpu_and_invalidates_current() -> None:
    h = hw()
    root(h, 0)
    root(h, 1)
    v, w = Vmcs("v"), Vmcs("w")
    h.vmptrld(0, v)
    h.vmptrld(1, w)
    h.vmclear(1, v)  # not active on CPU 1: no effect on CPU 0's cache
    assert v in h.cpus[0].cache
    h.vmclear(0, v)
    assert v not in h.cpus[0].cache and h.cpus[0].current_vmcs is None
    assert h.cpus[1].current_vmcs is w


def test_vmclear_vmptrld_need_root() -> None:
    h = hw()
    for op in (h.vmclear, h.vmptrld):
        with pytest.raises(CpuException) as e:
            op(0, Vmcs("v"))
        assert e.value.vector == "UD"
    with pytest.raises(CpuException):
        h.invept(0)


def test_vmptrld_reports_every_load_to_the_observer() -> None:
    h = hw()
    root(h, 0)
    root(h, 1)
    v = Vmcs("v")
    h.vmptrld(0, v)
    h.vmptrld(1, v)
    rec = h.observer
    assert isinstance(rec, Recorder)
    assert rec.vmptrlds == [(0, v), (1, v)]
    assert h.active_on(v) == [0, 1]


def test_launch_state_rules() -> None:
    h = hw()
    root(h)
    assert isinstance(h.vmentry(0, launch=True), VmFail), "no current VMCS"
    v = Vmcs("v")
    h.vmptrld(0, v)
    r = h.vmentry(0, launch=False)
    assert isinstance(r, VmFail) and r.kind == "VMfailValid", "VMRESUME needs launched"
    assert h.vmentry(0, launch=True) is None
    assert h.cpus[0].cache[v] == LAUNCHED
    r = h.vmentry(0, launch=True)
    assert isinstance(r, VmFail), "VMLAUNCH needs clear"
    assert h.vmentry(0, launch=False) is None
    h.vmclear(0, v)
    assert v.launch_state == CLEAR


def test_vm_entry_with_shadowing_caches_the_shadow_vmcs() -> None:
    h = hw()
    root(h)
    v, s = Vmcs("v"), Vmcs("s", shadow=True)
    h.vmptrld(0, v)
    assert h.vmentry(0, launch=True) is None
    assert s not in h.cpus[0].cache, "no shadowing yet"
    h.vmwrite(0, "SECONDARY_EXEC_SHADOW_VMCS", True)
    h.vmwrite(0, "VMCS_LINK_POINTER", s)
    assert h.vmentry(0, launch=False) is None
    assert s in h.cpus[0].cache
    h.vmwrite(0, "VMCS_LINK_POINTER", None)
    h.vmclear(0, s)
    assert h.vmentry(0, launch=False) is None
    assert s not in h.cpus[0].cache, "link pointer -1: nothing to cache"


def test_vmread_vmwrite_need_a_current_vmcs() -> None:
    h = hw()
    root(h)
    assert isinstance(h.vmread(0, "x"), VmFail)
    assert isinstance(h.vmwrite(0, "x"), VmFail)
    h.vmptrld(0, Vmcs("v"))
    assert h.vmread(0, "x") is None and h.vmwrite(0, "x") is None


def test_touching_a_freed_vmcs_is_use_after_free() -> None:
    h = hw()
    root(h)
    v = Vmcs("v")
    poison(v)
    with pytest.raises(UseAfterFree):
        h.vmptrld(0, v)
    with pytest.raises(UseAfterFree):
        h.vmclear(0, v)
    with pytest.raises(UseAfterFree):
        _ = v.launch_state
