"""The VMX instruction rules of spec section 2, on :class:`Hardware` directly.

The machine never judges: it raises #UD/#GP, returns VMfail, and reports VMPTRLDs and
VMCS frees to its observer.  A tiny fake observer stands in for the oracle here.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vmxfuzz.machine.errors import CpuException, UseAfterFree, VmFail
from vmxfuzz.machine.faults import FaultPlan, FaultSpec
from vmxfuzz.machine.hw import CLEAR, LAUNCHED, Cpu, Hardware, Vmcs
from vmxfuzz.machine.memory import KObject, poison
from vmxfuzz.oracle import Oracle


class FakeObserver:
    """Records what the machine reports, and which *other* CPUs had the VMCS active."""

    def __init__(self) -> None:
        self.hw: Hardware | None = None
        self.loads: list[tuple[int, str, list[int]]] = []
        self.freed: list[str] = []

    def vmptrld(self, cpu: int, vmcs: Vmcs) -> None:
        assert self.hw is not None
        others = [c for c in self.hw.active_on(vmcs) if c != cpu]
        self.loads.append((cpu, vmcs.name, others))

    def vmcs_freed(self, vmcs: Vmcs) -> None:
        self.freed.append(vmcs.name)


def machine(
    ncpus: int = 2, faults: tuple[FaultSpec, ...] = (), **cpu0: bool
) -> tuple[Hardware, FakeObserver]:
    cpus = [Cpu(id=c) for c in range(ncpus)]
    for name, value in cpu0.items():
        setattr(cpus[0], name, value)
    obs = FakeObserver()
    hw = Hardware(cpus, FaultPlan(faults), obs)
    obs.hw = hw
    return hw, obs


def region(name: str = "vmxarea") -> KObject:
    return KObject(name)


def enter_root(hw: Hardware, c: int = 0) -> None:
    hw.write_cr4_vmxe(c, True)
    assert hw.vmxon(c, region()) is None
    assert hw.cpus[c].vmx_root


def ud_or_gp(excinfo: pytest.ExceptionInfo[CpuException]) -> str:
    return excinfo.value.vector


# ---- VMXON ----
def test_vmxon_with_cr4_vmxe_clear_is_ud() -> None:
    hw, _ = machine()
    with pytest.raises(CpuException) as e:
        hw.vmxon(0, region())
    assert ud_or_gp(e) == "UD"
    assert not hw.cpus[0].vmx_root


def test_vmxon_cr4_check_comes_before_the_firmware_check() -> None:
    hw, _ = machine(feat_ctl_vmx=False)
    with pytest.raises(CpuException) as e:
        hw.vmxon(0, region())
    assert ud_or_gp(e) == "UD"


def test_vmxon_with_vmx_disabled_by_firmware_is_gp() -> None:
    hw, _ = machine(feat_ctl_vmx=False)
    hw.write_cr4_vmxe(0, True)
    with pytest.raises(CpuException) as e:
        hw.vmxon(0, region())
    assert ud_or_gp(e) == "GP"
    assert not hw.cpus[0].vmx_root
    hw.write_cr4_vmxe(1, True)
    assert hw.vmxon(1, region()) is None, "the firmware setting is per CPU"


@pytest.mark.parametrize("kind", ["GP", "UD"])
def test_injected_vmxon_fault_hits_the_named_occurrence(kind: str) -> None:
    """FaultSpec(site, nth, cpu): the 2nd VMXON on CPU 0 faults; the others succeed."""
    hw, _ = machine(faults=(FaultSpec("vmxon", 2, 0, kind),))
    hw.write_cr4_vmxe(1, True)
    assert hw.vmxon(1, region()) is None, "VMXON on CPU 1 does not count for CPU 0"
    enter_root(hw, 0)  # first VMXON on CPU 0
    hw.vmxoff(0)
    with pytest.raises(CpuException) as e:
        hw.vmxon(0, region())  # second: injected
    assert ud_or_gp(e) == kind
    assert not hw.cpus[0].vmx_root
    assert hw.vmxon(0, region()) is None, "only the named occurrence faults"
    assert [(spec.kind, cpu) for spec, cpu in hw.faults.fired] == [(kind, 0)]


def test_injected_vmfail_invalid() -> None:
    hw, _ = machine(faults=(FaultSpec("vmxon", 1, None, "VMfailInvalid"),))
    hw.write_cr4_vmxe(0, True)
    r = hw.vmxon(0, region())
    assert r == VmFail("VMfailInvalid", "bad VMXON region")
    assert not hw.cpus[0].vmx_root


@pytest.mark.parametrize("bad", ["missing", "freed"])
def test_vmxon_with_a_bad_region_is_vmfail_invalid(bad: str) -> None:
    hw, _ = machine()
    hw.write_cr4_vmxe(0, True)
    area = region()
    if bad == "freed":
        poison(area)
    r = hw.vmxon(0, None if bad == "missing" else area)
    assert isinstance(r, VmFail) and r.kind == "VMfailInvalid"
    assert not hw.cpus[0].vmx_root


def test_vmxon_in_vmx_root_is_vmfail_valid() -> None:
    hw, _ = machine()
    enter_root(hw)
    v = Vmcs("v")
    hw.vmptrld(0, v)
    r = hw.vmxon(0, region())
    assert isinstance(r, VmFail) and r.kind == "VMfailValid"
    assert hw.cpus[0].vmx_root and hw.cpus[0].current_vmcs is v, "a VMfail changes nothing"


def test_vmxon_makes_the_current_vmcs_pointer_invalid() -> None:
    hw, _ = machine()
    enter_root(hw)
    hw.vmptrld(0, Vmcs("v"))
    hw.vmxoff(0)
    assert hw.vmxon(0, region()) is None
    assert hw.cpus[0].current_vmcs is None


# ---- VMXOFF and CR4 ----
def test_vmxoff_outside_vmx_root_is_ud() -> None:
    hw, _ = machine()
    hw.write_cr4_vmxe(0, True)  # CR4.VMXE alone is not VMX operation
    with pytest.raises(CpuException) as e:
        hw.vmxoff(0)
    assert ud_or_gp(e) == "UD"


def test_vmxoff_leaves_root_and_does_not_flush_the_vmcs_cache() -> None:
    hw, _ = machine()
    enter_root(hw)
    v, w = Vmcs("v"), Vmcs("w")
    hw.vmptrld(0, v)
    assert hw.vmentry(0, launch=True) is None
    hw.vmptrld(0, w)
    hw.vmxoff(0)
    assert not hw.cpus[0].vmx_root
    assert hw.cpus[0].cache == {v: LAUNCHED, w: CLEAR}, "nothing flushed"
    assert v.launch_state == CLEAR, "nothing written back to memory either"
    assert hw.active_on(v) == [0]
    hw.write_cr4_vmxe(0, False)  # allowed once out of VMX operation
    assert hw.cpus[0].cache == {v: LAUNCHED, w: CLEAR}


def test_clearing_cr4_vmxe_in_vmx_root_is_gp() -> None:
    hw, _ = machine()
    enter_root(hw)
    with pytest.raises(CpuException) as e:
        hw.write_cr4_vmxe(0, False)
    assert ud_or_gp(e) == "GP"
    assert hw.cpus[0].cr4_vmxe, "the write did not happen"
    hw.write_cr4_vmxe(0, True)  # setting it again is harmless


# ---- VMCLEAR ----
def test_vmclear_outside_vmx_root_is_ud() -> None:
    hw, _ = machine()
    hw.write_cr4_vmxe(0, True)
    with pytest.raises(CpuException) as e:
        hw.vmclear(0, Vmcs("v"))
    assert ud_or_gp(e) == "UD"


def test_vmclear_removes_from_this_cpus_cache_only() -> None:
    hw, _ = machine()
    enter_root(hw, 0)
    enter_root(hw, 1)
    v = Vmcs("v")
    hw.vmptrld(0, v)
    hw.vmptrld(1, v)
    assert hw.active_on(v) == [0, 1]
    assert hw.vmclear(1, v) is None
    assert hw.active_on(v) == [0], "CPU 0's cache is untouched"
    assert hw.cpus[0].current_vmcs is v and hw.cpus[1].current_vmcs is None


def test_vmclear_of_a_vmcs_active_elsewhere_has_no_effect_on_that_cpu() -> None:
    hw, _ = machine()
    enter_root(hw, 0)
    enter_root(hw, 1)
    v, w = Vmcs("v"), Vmcs("w")
    hw.vmptrld(0, v)
    hw.vmptrld(1, w)
    hw.vmclear(1, v)  # not active on CPU 1
    assert hw.cpus[0].cache == {v: CLEAR} and hw.cpus[0].current_vmcs is v
    assert hw.cpus[1].cache == {w: CLEAR} and hw.cpus[1].current_vmcs is w


def test_vmclear_writes_back_clear_and_invalidates_the_current_pointer() -> None:
    hw, _ = machine()
    enter_root(hw)
    v, w = Vmcs("v"), Vmcs("w")
    hw.vmptrld(0, w)
    hw.vmptrld(0, v)
    assert hw.vmentry(0, launch=True) is None
    assert hw.cpus[0].cache[v] == LAUNCHED
    hw.vmclear(0, w)  # not current: the current pointer stays
    assert hw.cpus[0].current_vmcs is v
    hw.vmclear(0, v)
    assert hw.cpus[0].current_vmcs is None
    assert hw.cpus[0].cache == {}
    assert v.launch_state == CLEAR
    hw.vmptrld(0, v)
    assert hw.cpus[0].cache[v] == CLEAR, "reloaded from memory: launch state clear"


# ---- VMPTRLD ----
def test_vmptrld_outside_vmx_root_is_ud() -> None:
    hw, obs = machine()
    with pytest.raises(CpuException) as e:
        hw.vmptrld(0, Vmcs("v"))
    assert ud_or_gp(e) == "UD"
    assert obs.loads == [], "a faulting VMPTRLD loads nothing"


def test_vmptrld_makes_the_vmcs_current_and_active() -> None:
    hw, obs = machine()
    enter_root(hw)
    v = Vmcs("v")
    assert hw.vmptrld(0, v) is None
    assert hw.cpus[0].current_vmcs is v and hw.cpus[0].cache == {v: CLEAR}
    assert hw.active_on(v) == [0]
    assert obs.loads == [(0, "v", [])]


def test_vmptrld_reports_a_vmcs_still_active_on_another_cpu() -> None:
    hw, obs = machine(3)
    for c in range(3):
        enter_root(hw, c)
    v = Vmcs("v")
    hw.vmptrld(0, v)
    hw.vmptrld(2, v)
    assert obs.loads == [(0, "v", []), (2, "v", [0])]
    assert hw.active_on(v) == [0, 2]
    hw.vmclear(0, v)
    hw.vmptrld(1, v)
    assert obs.loads[-1] == (1, "v", [2])


def test_the_oracle_flags_vmptrld_of_a_vmcs_active_elsewhere() -> None:
    """The same machine event, judged by the real observer."""
    oracle = Oracle()
    cpus = [Cpu(id=0), Cpu(id=1)]
    hw = Hardware(cpus, FaultPlan(), oracle)
    k = SimpleNamespace(hw=hw, cpu=1, ctx=None)
    oracle.bind(k)
    enter_root(hw, 0)
    enter_root(hw, 1)
    v = Vmcs("v")
    hw.vmptrld(0, v)
    assert oracle.violations == []
    hw.vmptrld(1, v)
    (viol,) = oracle.violations
    assert viol.invariant == "vmcs-active-on-two-cpus"
    assert viol.objects == ("VMCS v", "CPU 1", "CPU 0")


# ---- VMLAUNCH / VMRESUME ----
@pytest.mark.parametrize("launch", [True, False], ids=["vmlaunch", "vmresume"])
def test_vm_entry_needs_vmx_root(launch: bool) -> None:
    hw, _ = machine()
    with pytest.raises(CpuException) as e:
        hw.vmentry(0, launch)
    assert ud_or_gp(e) == "UD"


@pytest.mark.parametrize("launch", [True, False], ids=["vmlaunch", "vmresume"])
def test_vm_entry_needs_a_current_vmcs(launch: bool) -> None:
    hw, _ = machine()
    enter_root(hw)
    r = hw.vmentry(0, launch)
    assert isinstance(r, VmFail) and r.kind == "VMfailInvalid"


def test_vmlaunch_needs_clear_and_sets_launched() -> None:
    hw, _ = machine()
    enter_root(hw)
    v = Vmcs("v")
    hw.vmptrld(0, v)
    assert hw.vmentry(0, launch=True) is None
    assert hw.cpus[0].cache[v] == LAUNCHED
    r = hw.vmentry(0, launch=True)
    assert isinstance(r, VmFail) and r.kind == "VMfailValid"
    assert hw.cpus[0].cache[v] == LAUNCHED


def test_vmresume_needs_launched() -> None:
    hw, _ = machine()
    enter_root(hw)
    v = Vmcs("v")
    hw.vmptrld(0, v)
    r = hw.vmentry(0, launch=False)
    assert isinstance(r, VmFail) and r.kind == "VMfailValid"
    assert hw.cpus[0].cache[v] == CLEAR, "a failed VMRESUME does not launch"
    assert hw.vmentry(0, launch=True) is None
    assert hw.vmentry(0, launch=False) is None
    assert hw.cpus[0].cache[v] == LAUNCHED
    hw.vmclear(0, v)
    hw.vmptrld(0, v)
    r = hw.vmentry(0, launch=False)
    assert isinstance(r, VmFail), "after VMCLEAR the VMCS must be launched again"


# ---- VMCS shadowing ----
def _current_with_shadow(shadowing: bool, link: bool) -> tuple[Hardware, Vmcs, Vmcs]:
    hw, _ = machine()
    enter_root(hw)
    v, s = Vmcs("vmcs01"), Vmcs("shadow", shadow=True)
    hw.vmptrld(0, v)
    assert hw.vmwrite(0, "SECONDARY_EXEC_SHADOW_VMCS", shadowing) is None
    assert hw.vmwrite(0, "VMCS_LINK_POINTER", s if link else None) is None
    return hw, v, s


def test_vm_entry_with_shadowing_and_link_caches_the_shadow_vmcs() -> None:
    hw, v, s = _current_with_shadow(True, True)
    assert hw.vmentry(0, launch=True) is None
    assert s in hw.cpus[0].cache and hw.active_on(s) == [0]
    assert hw.cpus[0].current_vmcs is v, "the shadow is cached, not made current"
    hw.vmclear(0, v)
    assert hw.active_on(s) == [0], "active until VMCLEARed itself"
    hw.vmclear(0, s)
    assert hw.active_on(s) == []


@pytest.mark.parametrize(("shadowing", "link"), [(False, True), (True, False), (False, False)])
def test_no_shadow_caching_without_both_control_and_link(shadowing: bool, link: bool) -> None:
    hw, v, _shadow = _current_with_shadow(shadowing, link)
    assert hw.vmentry(0, launch=True) is None
    assert hw.cpus[0].cache == {v: LAUNCHED}


def test_shadow_caching_on_vmresume_too() -> None:
    hw, _vmcs01, s = _current_with_shadow(False, True)
    assert hw.vmentry(0, launch=True) is None
    assert s not in hw.cpus[0].cache
    hw.vmwrite(0, "SECONDARY_EXEC_SHADOW_VMCS", True)
    assert hw.vmentry(0, launch=False) is None
    assert s in hw.cpus[0].cache


def test_vmxoff_keeps_a_cached_shadow_vmcs() -> None:
    hw, v, s = _current_with_shadow(True, True)
    hw.vmentry(0, launch=True)
    hw.vmxoff(0)
    assert set(hw.cpus[0].cache) == {v, s}


# ---- VMREAD / VMWRITE / INVEPT ----
@pytest.mark.parametrize("insn", ["vmread", "vmwrite", "invept"])
def test_vmread_vmwrite_invept_need_vmx_root(insn: str) -> None:
    hw, _ = machine()
    hw.write_cr4_vmxe(0, True)
    call = {
        "vmread": lambda: hw.vmread(0, "f"),
        "vmwrite": lambda: hw.vmwrite(0, "f", 1),
        "invept": lambda: hw.invept(0),
    }[insn]
    with pytest.raises(CpuException) as e:
        call()
    assert ud_or_gp(e) == "UD"


def test_vmread_vmwrite_need_a_current_vmcs_but_invept_does_not() -> None:
    hw, _ = machine()
    enter_root(hw)
    assert hw.vmread(0, "f") == VmFail("VMfailInvalid", "VMREAD with no current VMCS")
    assert hw.vmwrite(0, "f", 1) == VmFail("VMfailInvalid", "VMWRITE with no current VMCS")
    assert hw.invept(0) is None
    hw.vmptrld(0, Vmcs("v"))
    assert hw.vmread(0, "f") is None and hw.vmwrite(0, "f", 1) is None


# ---- freed VMCSes ----
@pytest.mark.parametrize("insn", ["vmclear", "vmptrld"])
def test_vmclear_or_vmptrld_of_a_freed_vmcs_is_use_after_free(insn: str) -> None:
    hw, obs = machine()
    enter_root(hw)
    v = Vmcs("v")
    poison(v)
    with pytest.raises(UseAfterFree) as e:
        getattr(hw, insn)(0, v)
    assert e.value.objects == ("v",)
    assert obs.loads == [] and hw.cpus[0].cache == {}


@pytest.mark.parametrize("insn", ["vmread", "vmwrite", "vmlaunch"])
def test_using_a_current_vmcs_that_was_freed_is_use_after_free(insn: str) -> None:
    hw, _ = machine()
    enter_root(hw)
    v = Vmcs("v")
    hw.vmptrld(0, v)
    poison(v)
    call = {
        "vmread": lambda: hw.vmread(0, "f"),
        "vmwrite": lambda: hw.vmwrite(0, "f", 1),
        "vmlaunch": lambda: hw.vmentry(0, True),
    }[insn]
    with pytest.raises(UseAfterFree):
        call()


def test_any_field_access_of_a_freed_vmcs_is_use_after_free() -> None:
    v = Vmcs("v")
    poison(v)
    with pytest.raises(UseAfterFree):
        _ = v.launch_state
    with pytest.raises(UseAfterFree):
        v.link = None
    assert v.describe() == "VMCS v", "reports can still name it"


def test_free_vmcs_is_reported_to_the_observer() -> None:
    hw, obs = machine()
    enter_root(hw)
    v = Vmcs("v")
    hw.vmptrld(0, v)
    hw.free_vmcs(v)
    assert obs.freed == ["v"]
