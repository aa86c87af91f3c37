"""Why an invariant broke: a root cause, in kernel terms, for every violation.

The oracle decides *that* an invariant is violated; this module says *why*, from the
machine and kernel state at the moment of the violation and from a short history the
oracle records as the run goes (:class:`History`: each CPU's last VMX-operation
transition, how each VMCS became active there, which CPUs ran the crash-time VMCLEAR
and through which callback, which ran ``hardware_disable``, failed
``hardware_enable`` calls and who made them, tasks killed by an oops and the locks
they held).  It never looks at the label where an NMI landed: that is the finding's
*window* (its site), and one cause usually has several.

A cause is a stable id ``<invariant>/<reason>`` and one sentence.  The rules follow
the kernel code paths that should have prevented the state (for ``kexec-active-vmcs``:
the cleanup that should have VMCLEARed the VMCS, and which of its preconditions did
not hold); anything no rule explains gets ``<invariant>/unexplained`` and a warning,
never an exception: the set of causes is open.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .machine.memory import obj_name, peek

UNEXPLAINED = "unexplained"


@dataclass(frozen=True)
class Cause:
    """``id`` is stable across runs and versions; ``consequence_of`` names the cause
    of an earlier violation this one follows from (a hang behind a killed task)."""

    id: str
    text: str
    consequence_of: str | None = None


@dataclass
class Killed:
    """A task or handler an oops killed, and what it still held."""

    cpu: int
    name: str
    locks: tuple[str, ...]
    cause: str


@dataclass
class History:
    """What the analysis needs to remember of a run (cheap: a few dict writes per
    VMX instruction).  Not part of the explorer's state fingerprint: it changes
    explanations, never what can happen next."""

    vmx_last: dict[int, str] = field(default_factory=dict)
    vmxon_last: dict[int, str] = field(default_factory=dict)  # last VMXON/VMXOFF outcome
    activated: dict[tuple[int, int], str] = field(default_factory=dict)
    crash_walk: dict[int, str | None] = field(default_factory=dict)
    hw_disabled: set[int] = field(default_factory=set)
    enable_failed: dict[int, tuple[Any, str]] = field(default_factory=dict)
    killed: list[Killed] = field(default_factory=list)

    def vmx(self, cpu: int, event: str) -> None:
        self.vmx_last[cpu] = event
        if event.startswith("vmxo"):
            self.vmxon_last[cpu] = event

    def activate(self, cpu: int, vmcs: Any, how: str) -> None:
        self.activated[(cpu, id(vmcs))] = how


def stack(ctx: Any) -> list[str]:
    """The function names of a context's suspended call chain, outermost first."""
    out: list[str] = []
    g = getattr(ctx, "gen", None)
    while g is not None and hasattr(g, "gi_code"):
        out.append(g.gi_code.co_name)
        g = g.gi_yieldfrom
    return out


def caller_of(ctx: Any, callee: str) -> str:
    """The function in ``ctx``'s chain that called the (outermost) ``callee``."""
    chain = stack(ctx)
    for i, name in enumerate(chain):
        if name == callee:
            skip = ("on_each_cpu", "smp_call_function_single", "smp_call_function_many")
            up = [c for c in chain[:i] if c not in skip and not c.startswith("op_")]
            return up[-1] if up else f"{ctx.name} ({ctx.kind} context)"
    return ""


# ---- helpers over the kernel state ----------------------------------------------------------
def _cpu_of(v: Any) -> int | None:
    for o in v.objects:
        if isinstance(o, str) and o.startswith("CPU "):
            try:
                return int(o[4:])
            except ValueError:
                return None
    return v.cpu


def _vmcs_on(k: Any, cpu: int, name: str) -> Any:
    for vmcs in k.hw.cpus[cpu].cache:
        if vmcs.describe() == name:
            return vmcs
    return None


def _owner(k: Any, vmcs: Any) -> tuple[Any, str]:
    """The loaded_vmcs holding ``vmcs`` and how: ``vmcs`` or ``shadow_vmcs``."""
    for lv in k.all_loaded_vmcs():
        if peek(lv, "vmcs") is vmcs:
            return lv, "vmcs"
        if peek(lv, "shadow_vmcs") is vmcs:
            return lv, "shadow_vmcs"
    return None, ""


def _list_of(k: Any, link: Any) -> int | None:
    """The CPU whose ``loaded_vmcss_on_cpu`` list reaches ``link`` walking forward."""
    from .kernel.list import ring

    for c, head in enumerate(k.loaded_vmcss_on_cpu):
        if peek(head, "next") is None:
            continue
        entries = ring(head) or _forward(head)
        if any(e is link for e in entries):
            return c
    return None


def _forward(head: Any, limit: int = 64) -> list[Any]:
    out: list[Any] = []
    pos = peek(head, "next")
    while pos is not head and pos is not None and len(out) < limit:
        if not hasattr(pos, "owner"):
            break
        out.append(pos)
        pos = peek(pos, "next")
    return out


def _vmx_window(hist: History, cpu: int) -> tuple[str, str]:
    """Why CPU ``cpu`` is outside VMX operation now, from its last VMX transition."""
    last = hist.vmx_last.get(cpu, "")
    if last != "cr4-vmxe-set":
        last = hist.vmxon_last.get(cpu, "")
    table = {
        "cr4-vmxe-set": (
            "vmxe-set-before-vmxon",
            "CR4.VMXE was set by kvm_cpu_vmxon() but VMXON had not run yet",
        ),
        "vmxon-fault": (
            "after-vmxon-fault",
            "the last VMXON on this CPU faulted, so the CPU never entered VMX operation",
        ),
        "vmxon-vmfail": (
            "after-undetected-vmxon-vmfail",
            "the last VMXON on this CPU VMfailed and nobody checked its flags",
        ),
        "vmxoff": (
            "after-vmxoff",
            "VMXOFF already ran on this CPU (hardware_disable(), or the crash path)",
        ),
    }
    return table.get(last, ("vmx-never-enabled", "VMXON never ran on this CPU"))


# ---- kexec-active-vmcs -------------------------------------------------------------------------
def _kexec(k: Any, hist: History, v: Any) -> Cause:
    cpu = _cpu_of(v)
    name = v.objects[0] if v.objects else ""
    crash = v.context == "crash"
    vmcs = _vmcs_on(k, cpu, name) if cpu is not None else None
    if cpu is None or vmcs is None:
        return _unexplained(v, "the leaked VMCS is no longer in the cache")
    lv, role = _owner(k, vmcs)
    cleanup = (
        f"the crash-time VMCLEAR on CPU {cpu} (crash_vmclear_local_loaded_vmcss)"
        if crash
        else f"hardware_disable() on CPU {cpu} (kvm_reboot's vmclear_local_loaded_vmcss)"
    )
    if peek(vmcs, "shadow") or role == "shadow_vmcs":
        how = hist.activated.get((cpu, id(vmcs)), "")
        if crash:
            why = (
                f"{cleanup} VMCLEARs only loaded_vmcs->vmcs of the listed loaded_vmcs, and a "
                "shadow VMCS is on no list"
            )
        elif cpu in hist.hw_disabled:
            # Orderly: __loaded_vmcs_clear() VMCLEARs the shadow only if vmcs01 launched.
            owner = obj_name(lv) if lv is not None else "its loaded_vmcs"
            launched = peek(lv, "launched") if lv is not None else "?"
            why = (
                f"{cleanup} VMCLEARs a shadow VMCS only when its loaded_vmcs is launched, "
                f"and {owner} had launched = {launched} (not yet entered on this CPU)"
            )
        else:
            why = ""
        if why and how == "vm-entry":
            return Cause(
                "kexec-active-vmcs/shadow-vmcs-cached-by-vm-entry",
                f"{name} was cached by CPU {cpu} at a VM entry of a VMCS that links it "
                f"with VMCS shadowing on; {why}",
            )
        if why:
            return Cause(
                "kexec-active-vmcs/shadow-vmcs-loaded-for-sync",
                f"{name} was made current by VMPTRLD on CPU {cpu} (the vmcs12 <-> shadow "
                f"copy) and the {'crash' if crash else 'cleanup'} came before its VMCLEAR; "
                f"{why}",
            )
    if crash:
        if cpu not in hist.crash_walk:
            return Cause(
                "kexec-active-vmcs/crash-vmclear-not-run",
                f"CPU {cpu} never reached the crash-time VMCLEAR (it did not run "
                "kdump_nmi_callback: halted, offline or never answered the shootdown NMI) "
                f"while {name} was active there",
            )
        if hist.crash_walk[cpu] is None:
            return Cause(
                "kexec-active-vmcs/no-crash-callback",
                f"no crash_vmclear_loaded_vmcss callback was registered when CPU {cpu} ran "
                "the crash path (vmx_init had not published it yet, or vmx_exit had "
                f"cleared it), so nothing VMCLEARed {name}",
            )
        bitmap = getattr(k, "crash_vmclear_enabled_bitmap", None)
        if _has_bitmap(k) and bitmap is not None and cpu not in bitmap:
            return Cause(
                "kexec-active-vmcs/crash-vmclear-disabled",
                f"CPU {cpu}'s bit in crash_vmclear_enabled_bitmap was clear (crash-time "
                "VMCLEAR is disabled while that CPU's loaded_vmcs list is changed), so the "
                f"crash callback returned without VMCLEARing any VMCS there, {name} included",
            )
    elif cpu not in hist.hw_disabled:
        return Cause(
            "kexec-active-vmcs/hardware-disable-not-run",
            f"hardware_disable() never ran on CPU {cpu} before the new kernel started "
            f"(KVM's reboot notifier did not reach it), so nothing VMCLEARed {name}",
        )
    if lv is None:
        return Cause(
            "kexec-active-vmcs/vmcs-without-loaded-vmcs",
            f"{name} belongs to no loaded_vmcs, so {cleanup} cannot find it",
        )
    link = peek(lv, "loaded_vmcss_on_cpu_link")
    on = _list_of(k, link)
    lcpu = peek(lv, "cpu")
    if on == cpu:
        if not crash and lcpu != cpu:
            return Cause(
                "kexec-active-vmcs/loaded-vmcs-cpu-names-other-cpu",
                f"loaded_vmcs {obj_name(lv)} is on CPU {cpu}'s list but its ->cpu is "
                f"{lcpu}, so __loaded_vmcs_clear() in {cleanup} took it for migrated away "
                f"and skipped the VMCLEAR of {name}",
            )
        return Cause(
            "kexec-active-vmcs/listed-but-walk-missed-it",
            f"loaded_vmcs {obj_name(lv)} is on CPU {cpu}'s list and {cleanup} ran, yet it "
            f"never VMCLEARed {name}: the walk skipped the entry or stopped early",
        )
    if on is not None:
        return Cause(
            "kexec-active-vmcs/on-another-cpu-list",
            f"{name} is active on CPU {cpu} but its loaded_vmcs {obj_name(lv)} is on CPU "
            f"{on}'s list, so {cleanup} does not see it",
        )
    nxt = peek(link, "next")
    if nxt is not None and type(nxt).__name__ == "_Poison":
        return Cause(
            "kexec-active-vmcs/unlinked-before-vmclear",
            f"loaded_vmcs {obj_name(lv)} was list_del()ed from CPU {cpu}'s list before "
            f"{name} was VMCLEARed, so {cleanup} does not see it",
        )
    if nxt is not None and peek(link, "prev") is not None:
        return Cause(
            "kexec-active-vmcs/not-yet-published",
            f"loaded_vmcs {obj_name(lv)} was being list_add()ed but not yet reachable from "
            f"CPU {cpu}'s list head, so {cleanup} does not see {name}",
        )
    return Cause(
        "kexec-active-vmcs/never-linked",
        f"{name} was made active on CPU {cpu} without its loaded_vmcs {obj_name(lv)} ever "
        f"being put on a loaded_vmcss_on_cpu list, so {cleanup} does not see it",
    )


def _has_bitmap(k: Any) -> bool:
    """The variant guards the crash walk with the per-CPU bitmap (5.6 does)."""
    fn = getattr(k.f, "crash_vmclear_local_loaded_vmcss", None)
    code = getattr(fn, "__code__", None)
    return code is not None and "crash_vmclear_enabled_bitmap" in code.co_names


# ---- oops -------------------------------------------------------------------------------------
_INSNS = ("VMCLEAR", "VMPTRLD", "VMREAD", "VMWRITE", "INVEPT", "VMXOFF", "VMLAUNCH", "VMRESUME")


def _insn(detail: str) -> str:
    for insn in _INSNS:
        if insn in detail:
            return insn
    return ""


def _oops(k: Any, hist: History, v: Any) -> Cause:
    cpu = _cpu_of(v)
    d = v.detail
    kind = v.fault_kind
    if kind in ("KernelBug", "CpuException") and "VMXON" in d and "outside" not in d:
        return Cause(
            "oops/vmxon-fault-without-fixup",
            f"VMXON faulted on CPU {cpu} ({d.split(' (in ')[0]}) and kvm_cpu_vmxon() has no "
            "exception fixup",
        )
    insn = _insn(d)
    if insn and kind in ("KernelBug", "CpuException") and cpu is not None:
        why, text = _vmx_window(hist, cpu)
        vmxe = k.hw.cpus[cpu].cr4_vmxe
        # A VMXON that oopsed (no fixup) left this CPU outside VMX operation: what
        # faults later is that oops' consequence, not a cause of its own.
        first = "oops/vmxon-fault-without-fixup"
        after_oops = why == "after-vmxon-fault" and any(
            d.cause == first and d.cpu == cpu for d in hist.killed
        )
        if insn == "VMXOFF" and kind == "CpuException":
            return Cause(
                f"oops/emergency-vmxoff-outside-vmx-{why}",
                f"the crash path's cpu_emergency_vmxoff() saw CR4.VMXE "
                f"{'set' if vmxe else 'clear'} on CPU {cpu} and executed VMXOFF with no "
                f"fixup outside VMX operation: {text}",
                consequence_of=first if after_oops else None,
            )
        failed = hist.enable_failed.get(cpu)
        if after_oops:
            return Cause(
                f"oops/{insn.lower()}-outside-vmx-{why}",
                f"{insn} on CPU {cpu} outside VMX operation (#UD, kvm_spurious_fault() BUG): "
                "the earlier VMXON oops left this CPU without VMX",
                consequence_of=first,
            )
        if why == "after-vmxon-fault" and failed is not None:
            why = "after-ignored-enable-failure"
            text = (
                f"hardware_enable() failed ({failed[0]}) on this CPU and its caller "
                f"{failed[1] or '?'} carried on as if VMX were on"
            )
        return Cause(
            f"oops/{insn.lower()}-outside-vmx-{why}",
            f"{insn} on CPU {cpu} outside VMX operation (#UD, kvm_spurious_fault() BUG "
            f"since the kernel is not rebooting): {text}",
        )
    if kind == "NullDeref":
        if "list" in d and "list_del" not in d and cpu is not None:
            head = k.loaded_vmcss_on_cpu[cpu]
            if peek(head, "next") is None:
                return Cause(
                    "oops/uninitialised-loaded-vmcs-list",
                    f"loaded_vmcss_on_cpu[{cpu}] was never initialised (INIT_LIST_HEAD runs "
                    f"in hardware_enable() or module init, which had not run for CPU {cpu}) "
                    f"and {v.function or 'a list operation'} dereferenced its NULL ->next",
                )
        if "list_del" in d or "list_add" in d:
            return Cause(
                "oops/list-op-on-unlinked-entry",
                f"{'list_del' if 'list_del' in d else 'list_add'} followed a NULL link: the "
                "loaded_vmcs link was never initialised by a list_add (zeroed memory), yet "
                "the code took it for being on a list",
            )
        if "hook" in d or "ops" in d:
            vms = [n for n, vm in getattr(k, "vms", {}).items() if vm is not None]
            return Cause(
                "oops/kvm-x86-ops-null",
                "a vendor hook was called through a NULL kvm_x86_ops pointer or member "
                f"(cleared by kvm_arch_exit){' while VM ' + vms[0] + ' was open' if vms else ''}",
            )
        if "cpus_hardware_enabled" in d:
            return Cause(
                "oops/cpus-hardware-enabled-freed",
                "cpus_hardware_enabled was used after kvm_exit freed it (or before "
                "kvm_init allocated it)",
            )
    if kind == "PoisonDeref":
        return Cause(
            "oops/list-poison-deref",
            f"{v.function or 'a list operation'} followed LIST_POISON: an entry already "
            "list_del()ed was used as if still linked",
        )
    if kind == "ForeignHead":
        return Cause(
            "oops/list-walk-reached-foreign-head",
            "a list walk reached another CPU's list head as an entry: a loaded_vmcs link "
            "was on two lists",
        )
    return _unexplained(v, d)


# ---- hang ---------------------------------------------------------------------------------------
def _hang(k: Any, hist: History, v: Any) -> Cause:
    if v.fault_kind == "WalkHang":
        return Cause(
            "hang/list-walk-loops",
            "a loaded_vmcss_on_cpu walk loops without reaching its head: the ring is corrupted",
        )
    for dead in hist.killed:
        if dead.locks:
            return Cause(
                "hang/lock-held-by-killed-task",
                f"{', '.join(dead.locks)} is held forever: the task {dead.name} on CPU "
                f"{dead.cpu} was killed by an oops ({dead.cause}) while holding it",
                consequence_of=dead.cause,
            )
    d = v.detail
    if "held by CPU" in d:
        return Cause("hang/lock-never-released", f"a lock is never released: {d}")
    if "IPI" in d or "can never run" in d:
        return Cause(
            "hang/work-on-cpu-that-cannot-run-it",
            f"work was queued for a CPU that never runs it (halted, offline or IRQs off "
            f"forever): {d}",
        )
    return _unexplained(v, d)


# ---- the other invariants -----------------------------------------------------------------
def _list_corrupt(k: Any, hist: History, v: Any) -> Cause:
    d = v.detail
    if hist.killed:
        dead = hist.killed[-1]
        if "not a well-formed ring" in d:
            return Cause(
                "list-corrupt/list-op-killed-midway",
                f"the task {dead.name} on CPU {dead.cpu} was killed by an oops ({dead.cause}) "
                "in the middle of a list update",
                consequence_of=dead.cause,
            )
    if "is on the lists of" in d:
        return Cause(
            "list-corrupt/link-on-two-lists",
            "a loaded_vmcs was list_add()ed to a CPU's list while still on another CPU's "
            "(its __loaded_vmcs_clear did not run or skipped it)",
        )
    if "is not on that CPU's list" in d:
        return Cause(
            "list-corrupt/active-vmcs-not-listed",
            "a VMCS is active on a CPU whose loaded_vmcs list does not hold its "
            "loaded_vmcs (made active without list_add, or list_del before VMCLEAR)",
        )
    if "not a well-formed ring" in d:
        return Cause(
            "list-corrupt/ring-broken",
            "a CPU's loaded_vmcs ring is malformed at a quiescent point",
        )
    return _unexplained(v, d)


def _uaf(k: Any, hist: History, v: Any) -> Cause:
    d = v.detail
    if "text was freed" in d:
        vms = [n for n, vm in getattr(k, "vms", {}).items() if vm is not None]
        return Cause(
            "use-after-free/vendor-text-freed",
            "a vendor hook was called into kvm_intel's freed module text"
            + (f" while VM {vms[0]} was still open" if vms else ""),
        )
    if "freed while active" in d:
        return Cause(
            "use-after-free/vmcs-freed-while-active",
            "a VMCS was freed while still active in a CPU's cache (no VMCLEAR on that CPU first)",
        )
    if "freed" in d:
        return Cause("use-after-free/freed-object-touched", f"a freed object was used: {d}")
    return _unexplained(v, d)


def _vmxe_leak(k: Any, hist: History, v: Any) -> Cause:
    parts = [p for p in ("CR4.VMXE", "CR4 shadow VMXE", "PT stopped") if p in v.detail]
    slug = "-".join(p.lower().replace(".", "-").replace(" ", "-") for p in parts) or "state"
    return Cause(
        f"vmxe-leak/{slug}-left-changed",
        f"hardware_enable() failed and its error path did not restore {', '.join(parts)}",
    )


def _current_stale(k: Any, hist: History, v: Any) -> Cause:
    cpu = _cpu_of(v)
    for dead in hist.killed:
        if dead.cpu == cpu:
            return Cause(
                "current-vmcs-stale/task-killed-between-write-and-vmptrld",
                f"the task {dead.name} on CPU {cpu} was killed by an oops ({dead.cause}) "
                "after writing per_cpu(current_vmcs) and before the VMPTRLD or VMCLEAR that "
                "matches it",
                consequence_of=dead.cause,
            )
    if cpu is None:
        return _unexplained(v, v.detail)
    var, ptr = k.current_vmcs[cpu], k.hw.cpus[cpu].current_vmcs
    if var is not None and ptr is None:
        return Cause(
            "current-vmcs-stale/variable-names-cleared-vmcs",
            f"per_cpu(current_vmcs, {cpu}) still names {obj_name(var)} but CPU {cpu} has no "
            "current VMCS: it was VMCLEARed (or VMX operation left and re-entered) without "
            "the variable being reset",
        )
    if var is None and ptr is not None:
        return Cause(
            "current-vmcs-stale/vmcs-current-behind-variable",
            f"CPU {cpu}'s current VMCS is {obj_name(ptr)} but per_cpu(current_vmcs) is NULL: "
            "the variable was reset while the VMCS stayed current",
        )
    return Cause(
        "current-vmcs-stale/variable-names-other-vmcs",
        f"per_cpu(current_vmcs, {cpu}) names {obj_name(var)} but CPU {cpu}'s current VMCS "
        f"is {obj_name(ptr)}",
    )


def _two_cpus(k: Any, hist: History, v: Any) -> Cause:
    return Cause(
        "vmcs-active-on-two-cpus/not-cleared-on-previous-cpu",
        "VMPTRLD of a VMCS whose VMCLEAR on the CPU where it was active was skipped "
        "(loaded_vmcs_clear() went by loaded_vmcs->cpu, which did not name that CPU)",
    )


def _hook_before_setup(k: Any, hist: History, v: Any) -> Cause:
    return Cause(
        "hook-before-setup/runtime-hook-before-hardware-setup",
        f"{v.objects[0] if v.objects else 'a runtime hook'} was reachable (/dev/kvm or "
        "a notifier registered) before the vendor hardware_setup() completed",
    )


def _initdata(k: Any, hist: History, v: Any) -> Cause:
    what = "code" if "call of __init function" in v.detail else "data"
    return Cause(
        f"initdata-after-init/init-{what}-used-after-init",
        f"__init {what} was used after module init completed and freed it: {v.detail}",
    )


# ---- restart-vmx-on ----------------------------------------------------------------------------
def _restart(k: Any, hist: History, v: Any) -> Cause:
    """Why a CPU is in VMX operation at the reset: ``emergency_vmx_disable_all`` looks
    only at the restarting CPU's CR4.VMXE (when that is clear it tells nobody), and its
    shootdown is a bounded wait (a CPU that cannot take the NMI is left as it is)."""
    cpu = _cpu_of(v)
    if k.shootdown_callback != "vmxoff_nmi":
        return Cause(
            "restart-vmx-on/emergency-vmxoff-skipped",
            f"emergency_vmx_disable_all() found CR4.VMXE clear on the restarting CPU "
            f"{k.cpu}, so it sent no VMXOFF NMI and CPU {cpu} stayed in VMX operation",
        )
    return Cause(
        "restart-vmx-on/vmxoff-nmi-not-taken",
        f"CPU {cpu} never ran vmxoff_nmi: the shootdown NMI could not reach it (NMIs "
        f"blocked, or the CPU was not online) and nmi_shootdown_cpus() stopped waiting",
    )


RULES: dict[str, Callable[[Any, History, Any], Cause]] = {
    "kexec-active-vmcs": _kexec,
    "oops": _oops,
    "hang": _hang,
    "list-corrupt": _list_corrupt,
    "use-after-free": _uaf,
    "vmxe-leak": _vmxe_leak,
    "current-vmcs-stale": _current_stale,
    "vmcs-active-on-two-cpus": _two_cpus,
    "hook-before-setup": _hook_before_setup,
    "initdata-after-init": _initdata,
    "restart-vmx-on": _restart,
}


def _unexplained(v: Any, why: str) -> Cause:
    warnings.warn(
        f"vmxfuzz: no cause rule explains {v.invariant} ({why})", RuntimeWarning, stacklevel=3
    )
    return Cause(f"{v.invariant}/{UNEXPLAINED}", f"no rule explains this {v.invariant}: {v.detail}")


def explain(k: Any, hist: History, v: Any) -> Cause:
    """The cause of violation ``v``, judged on the live state ``k`` and ``hist``."""
    rule = RULES.get(v.invariant)
    if rule is None or k is None:
        return _unexplained(v, "no rule for this invariant")
    try:
        return rule(k, hist, v)
    except Exception as e:  # an analysis bug must never hide the violation itself
        return _unexplained(v, f"the rule failed: {e!r}")


def is_cause_id(s: str) -> bool:
    """Whether the rules can give cause ``s`` (``--ignore`` refuses anything else);
    ``vmxe-leak`` ids name the state left changed, so only their prefix is fixed."""
    return s in _CAUSE_IDS or (s.startswith("vmxe-leak/") and s.endswith("-left-changed"))


_WINDOWS = (
    "vmxe-set-before-vmxon",
    "after-vmxon-fault",
    "after-undetected-vmxon-vmfail",
    "after-vmxoff",
    "vmx-never-enabled",
    "after-ignored-enable-failure",
)
_CAUSE_IDS = {
    *(f"{inv}/{UNEXPLAINED}" for inv in RULES),
    "kexec-active-vmcs/shadow-vmcs-cached-by-vm-entry",
    "kexec-active-vmcs/shadow-vmcs-loaded-for-sync",
    "kexec-active-vmcs/crash-vmclear-not-run",
    "kexec-active-vmcs/no-crash-callback",
    "kexec-active-vmcs/crash-vmclear-disabled",
    "kexec-active-vmcs/hardware-disable-not-run",
    "kexec-active-vmcs/vmcs-without-loaded-vmcs",
    "kexec-active-vmcs/loaded-vmcs-cpu-names-other-cpu",
    "kexec-active-vmcs/listed-but-walk-missed-it",
    "kexec-active-vmcs/on-another-cpu-list",
    "kexec-active-vmcs/unlinked-before-vmclear",
    "kexec-active-vmcs/not-yet-published",
    "kexec-active-vmcs/never-linked",
    "oops/vmxon-fault-without-fixup",
    *(f"oops/{i.lower()}-outside-vmx-{w}" for i in _INSNS for w in _WINDOWS),
    *(f"oops/emergency-vmxoff-outside-vmx-{w}" for w in _WINDOWS),
    "oops/uninitialised-loaded-vmcs-list",
    "oops/kvm-x86-ops-null",
    "oops/cpus-hardware-enabled-freed",
    "oops/list-poison-deref",
    "oops/list-op-on-unlinked-entry",
    "oops/list-walk-reached-foreign-head",
    "hang/list-walk-loops",
    "hang/lock-held-by-killed-task",
    "hang/lock-never-released",
    "hang/work-on-cpu-that-cannot-run-it",
    "list-corrupt/list-op-killed-midway",
    "list-corrupt/link-on-two-lists",
    "list-corrupt/active-vmcs-not-listed",
    "list-corrupt/ring-broken",
    "use-after-free/vendor-text-freed",
    "use-after-free/vmcs-freed-while-active",
    "use-after-free/freed-object-touched",
    "current-vmcs-stale/task-killed-between-write-and-vmptrld",
    "current-vmcs-stale/variable-names-cleared-vmcs",
    "current-vmcs-stale/vmcs-current-behind-variable",
    "current-vmcs-stale/variable-names-other-vmcs",
    "vmcs-active-on-two-cpus/not-cleared-on-previous-cpu",
    "hook-before-setup/runtime-hook-before-hardware-setup",
    "initdata-after-init/init-code-used-after-init",
    "initdata-after-init/init-data-used-after-init",
    "restart-vmx-on/emergency-vmxoff-skipped",
    "restart-vmx-on/vmxoff-nmi-not-taken",
}
