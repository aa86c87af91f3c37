"""The invariants of spec section 8, judged from machine events and quiescent points.

The models never check themselves: the machine reports what happened (an instruction,
a fault escaping a flow, a free, a hook call) and this module alone decides whether it
violates an invariant.  Each violation names the objects involved, the CPU, the
function and step label, and the context (task / ipi / nmi / crash).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .causes import Cause, History, Killed, caller_of, explain
from .kernel.list import ListHead, WalkHang, ring
from .machine.errors import InitdataAfterInit, MachineFault, UseAfterFree
from .machine.hw import Vmcs
from .machine.memory import is_freed, obj_name, peek

INVARIANTS: dict[str, str] = {
    "kexec-active-vmcs": "a VMCS (ordinary or shadow) is active in a CPU's cache at kexec",
    "restart-vmx-on": "a CPU is still in VMX operation at a firmware restart (it ignores INIT)",
    "oops": "a fault with no fixup, a NULL or poisoned dereference, a BUG",
    "vmcs-active-on-two-cpus": "VMPTRLD of a VMCS still active on another CPU",
    "list-corrupt": "a per-CPU loaded_vmcs list is malformed or disagrees with the cache",
    "use-after-free": "a freed object is touched, or a VMCS is freed while active",
    "vmxe-leak": "hardware_enable() failed and left CR4.VMXE or PT state changed",
    "current-vmcs-stale": "per_cpu(current_vmcs) disagrees with the current-VMCS pointer",
    "hook-before-setup": "a vendor runtime hook ran before hardware_setup() completed",
    "initdata-after-init": "__init code or __initdata used after module init completed",
    "hang": "a CPU waits forever",
}

# Hooks that belong to init (called only inside kvm_init) or to setup itself.
INIT_HOOKS = frozenset(
    {
        "cpu_has_kvm_support",
        "disabled_by_bios",
        "hardware_setup",
        "check_processor_compatibility",
    }
)

# Hooks hook_called() does more for than the before-setup check.
_SPECIAL_HOOKS = frozenset({"hardware_disable", "hardware_enable", "hardware_unsetup"})


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str
    cpu: int | None = None
    context: str | None = None
    function: str | None = None
    label: str | None = None
    objects: tuple[str, ...] = ()
    fault_kind: str = ""  # the MachineFault class behind a fault-reported violation
    # Why the invariant broke (vmxfuzz/causes.py), judged when it was reported.
    cause: str = ""
    cause_text: str = ""
    consequence_of: str | None = None

    @property
    def site(self) -> str:
        if self.label:
            return self.label
        return self.function or "-"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["objects"] = list(self.objects)
        d["site"] = self.site
        return d


def _function_of(label: str) -> str:
    return label.split(":", 1)[0] if label else ""


@dataclass
class Oracle:
    violations: list[Violation] = field(default_factory=list)
    _seen: set[tuple[str, str, tuple[str, ...]]] = field(default_factory=set)
    setup_done: bool = False
    unset: bool = False
    _enable_snapshot: dict[int, tuple[bool, bool, bool]] = field(default_factory=dict)
    kexec_checked: bool = False
    _k: Any = None
    history: History = field(default_factory=History)

    # ---- recording -------------------------------------------------------------------
    def report(self, v: Violation) -> Violation | None:
        """Record ``v`` (once per invariant, site and objects) with its cause."""
        key = (v.invariant, v.site, v.objects)
        if key in self._seen:
            return None
        self._seen.add(key)
        c: Cause = explain(self._k, self.history, v)
        v = replace(v, cause=c.id, cause_text=c.text, consequence_of=c.consequence_of)
        self.violations.append(v)
        return v

    # ---- history for the cause analysis (cheap: a dict write each) ---------------------
    def vmx_event(self, cpu: int, event: str, vmcs: Vmcs | None = None) -> None:
        if event == "cache-shadow":
            self.history.activate(cpu, vmcs, "vm-entry")
        else:
            self.history.vmx(cpu, event)

    def crash_vmclear(self, k: Any, fn: str | None) -> None:
        """CPU ``k.cpu`` runs the crash path's VMCLEAR step, finding callback ``fn``."""
        self.history.crash_walk[k.cpu] = fn

    def _here(self, k: Any, invariant: str, detail: str, objects: tuple[str, ...] = ()) -> None:
        ctx = k.ctx
        label = ctx.label if ctx is not None else ""  # the step being executed
        self.report(
            Violation(
                invariant,
                detail,
                cpu=k.cpu,
                context=ctx.context_kind if ctx is not None else None,
                function=_function_of(label) or (ctx.name if ctx is not None else None),
                label=label or None,
                objects=objects,
            )
        )

    # ---- machine events --------------------------------------------------------------
    def fault(self, k: Any, ctx: Any, fault: MachineFault) -> None:
        if isinstance(fault, UseAfterFree):
            inv = "use-after-free"
        elif isinstance(fault, InitdataAfterInit):
            inv = "initdata-after-init"
        elif isinstance(fault, WalkHang):
            inv = "hang"
        else:
            inv = "oops"
        label = ctx.label
        v = self.report(
            Violation(
                inv,
                f"{fault.detail} (in {ctx.context_kind} context, {ctx.name})",
                cpu=ctx.cpu,
                context=ctx.context_kind,
                function=_function_of(label) or ctx.name,
                label=label or None,
                objects=(*tuple(fault.objects), f"CPU {ctx.cpu}"),
                fault_kind=type(fault).__name__,
            )
        )
        if v is not None and not ctx.crash:
            # The task dies holding what it holds: later hangs are its consequences.
            held = [n for n, owner in k.locks.items() if owner == ctx.cpu]
            held += [f"{n}->mutex" for n, vc in k.vcpus.items() if peek(vc, "mutex") == ctx.cpu]
            self.history.killed.append(Killed(ctx.cpu, ctx.name, tuple(held), v.cause))

    def vmptrld(self, cpu: int, vmcs: Vmcs, k: Any = None) -> None:
        k = k or self._k
        self.history.activate(cpu, vmcs, "vmptrld")
        others = [c.id for c in k.hw.cpus if c.id != cpu and vmcs in c.cache]
        if others:
            self._here(
                k,
                "vmcs-active-on-two-cpus",
                f"VMPTRLD of {vmcs.describe()} on CPU {cpu} while active on CPU {others[0]}",
                (vmcs.describe(), f"CPU {cpu}", f"CPU {others[0]}"),
            )

    def vmcs_freed(self, vmcs: Vmcs, k: Any = None) -> None:
        k = k or self._k
        on = [c.id for c in k.hw.cpus if vmcs in c.cache]
        if on:
            self._here(
                k,
                "use-after-free",
                f"{vmcs.describe()} freed while active on CPU {on[0]}",
                (vmcs.describe(), f"CPU {on[0]}"),
            )

    def bind(self, k: Any) -> None:
        self._k = k

    def module_coming(self, k: Any) -> None:
        """A new vendor module instance starts loading: until its hardware_setup()
        returns 0, runtime hooks are "before setup" again, whatever an earlier
        instance did."""
        self.setup_done = False
        self.unset = False

    def hook_called(self, k: Any, hook: str) -> None:
        # Called at every hook call (about every other step): the common hook
        # is none of the special ones, after setup -- two cheap tests.
        special = hook in _SPECIAL_HOOKS
        if special and hook == "hardware_disable":
            self.history.hw_disabled.add(k.cpu)
        if special and hook == "hardware_enable":
            cpu = k.hw.cpus[k.cpu]
            self._enable_snapshot[k.cpu] = (
                cpu.cr4_vmxe,
                cpu.cr4_shadow_vmxe,
                cpu.pt_vmx_off,
            )
        if not self.setup_done and not self.unset and hook not in INIT_HOOKS:
            self._here(
                k,
                "hook-before-setup",
                f"runtime hook {hook} called before the vendor hardware_setup() completed",
                (f"kvm_x86_ops.{hook}",),
            )
        if special and hook == "hardware_unsetup":
            self.setup_done = False
            self.unset = True  # later calls are after teardown, not before setup

    def hook_returned(self, k: Any, hook: str, ret: Any) -> None:
        if hook == "hardware_setup" and not ret:
            self.setup_done = True
            self.unset = False
        if hook == "hardware_enable" and ret:
            self.history.enable_failed[k.cpu] = (
                ret,
                caller_of(k.ctx, "hardware_enable_nolock") or caller_of(k.ctx, "call_op"),
            )
            cpu = k.hw.cpus[k.cpu]
            before = self._enable_snapshot.get(k.cpu)
            after = (cpu.cr4_vmxe, cpu.cr4_shadow_vmxe, cpu.pt_vmx_off)
            if before is not None and before != after:
                names = ("CR4.VMXE", "CR4 shadow VMXE", "PT stopped for VMX")
                diff = [
                    f"{n} {b}->{a}" for n, b, a in zip(names, before, after, strict=False) if a != b
                ]
                self._here(
                    k,
                    "vmxe-leak",
                    f"hardware_enable() returned {ret} on CPU {k.cpu} leaving " + ", ".join(diff),
                    (f"CPU {k.cpu}",),
                )

    def hang(self, k: Any, blocked: list[tuple[int, Any]]) -> None:
        for c, ctx in blocked:
            p = ctx.pending
            what = getattr(p, "what", "") or str(getattr(p, "label", p))
            label = getattr(p, "label", p)
            self.report(
                Violation(
                    "hang",
                    f"CPU {c} waits forever in {ctx.name}: {what}",
                    cpu=c,
                    context=ctx.context_kind,
                    function=_function_of(str(label)),
                    label=str(label),
                    objects=(f"CPU {c}",),
                )
            )

    def hang_undeliverable(self, k: Any, cpus: list[int]) -> None:
        for c in cpus:
            self.report(
                Violation(
                    "hang",
                    f"work queued for CPU {c} can never run (CPU halted or IRQs off forever)",
                    cpu=c,
                    objects=(f"CPU {c}",),
                )
            )

    # ---- state checks ----------------------------------------------------------------
    def quiescent(self, k: Any) -> None:
        self._check_lists(k)
        self._check_current_vmcs(k)

    def _check_lists(self, k: Any) -> None:
        where: dict[int, int] = {}
        members: list[set[int]] = []
        for c, head in enumerate(k.loaded_vmcss_on_cpu):
            if peek(head, "next") is None:
                members.append(set())
                continue  # never initialised: nothing to check
            entries = ring(head)
            if entries is None:
                self.report(
                    Violation(
                        "list-corrupt",
                        f"loaded_vmcss_on_cpu[{c}] is not a well-formed ring",
                        cpu=c,
                        objects=(f"loaded_vmcss_on_cpu[{c}]",),
                    )
                )
                members.append(set())
                continue
            ids = set()
            for e in entries:
                if id(e) in where:
                    self.report(
                        Violation(
                            "list-corrupt",
                            f"{obj_name(e)} is on the lists of CPU {where[id(e)]} and CPU {c}",
                            cpu=c,
                            objects=(obj_name(e),),
                        )
                    )
                where[id(e)] = c
                ids.add(id(e))
            members.append(ids)
        for lv in k.all_loaded_vmcs():
            if is_freed(lv):
                continue
            vmcs = peek(lv, "vmcs")
            if vmcs is None:
                continue
            link: ListHead = peek(lv, "loaded_vmcss_on_cpu_link")
            for cpu in k.hw.cpus:
                if vmcs in cpu.cache and id(link) not in members[cpu.id]:
                    self.report(
                        Violation(
                            "list-corrupt",
                            f"{vmcs.describe()} is active on CPU {cpu.id} but loaded_vmcs "
                            f"{obj_name(lv)} is not on that CPU's list",
                            cpu=cpu.id,
                            objects=(vmcs.describe(), f"loaded_vmcs {obj_name(lv)}"),
                        )
                    )

    def _check_current_vmcs(self, k: Any) -> None:
        for cpu in k.hw.cpus:
            if cpu.halted:
                continue
            var = k.current_vmcs[cpu.id]
            if var is not cpu.current_vmcs:
                self.report(
                    Violation(
                        "current-vmcs-stale",
                        f"per_cpu(current_vmcs, {cpu.id}) = {obj_name(var)} but the CPU's "
                        f"current-VMCS pointer is {obj_name(cpu.current_vmcs)}",
                        cpu=cpu.id,
                        objects=(
                            f"CPU {cpu.id}",
                            obj_name(var),
                            obj_name(cpu.current_vmcs),
                        ),
                    )
                )

    def restart(self, k: Any, how: str) -> None:
        """The machine resets through the firmware (``native_machine_emergency_restart``).

        What the firmware and the next kernel find: a CPU still in VMX operation blocks
        INIT (SDM Vol. 3C 23.8, "Restrictions on VMX Operation"; the reason
        ``emergency_vmx_disable_all`` exists, per its comment in
        ``arch/x86/kernel/reboot.c``), so a reset that reaches the CPUs as INIT leaves
        that CPU running the old kernel's code: the restart can hang.  A VMCS still
        active in a cache is not judged here: the reset discards the processor's
        cached VMCS data and the next boot does not use the old VMCS regions (unlike
        kexec, where the new kernel reuses that memory)."""
        self.kexec_checked = True  # the end-of-machine check ran (its result counts)
        for cpu in k.hw.cpus:
            if not cpu.vmx_root:
                continue
            where = k.sched.interrupted.get(cpu.id) or ("restart" if cpu.id == k.cpu else "idle")
            self.report(
                Violation(
                    "restart-vmx-on",
                    f"CPU {cpu.id} is still in VMX operation when the machine restarts "
                    f"({how}; CPU {cpu.id} was at {where}): INIT is blocked there",
                    cpu=cpu.id,
                    context="crash",
                    function="native_machine_emergency_restart",
                    label=f"native_machine_emergency_restart:vmx-on@{where}",
                    objects=(f"CPU {cpu.id}",),
                )
            )

    def kexec(self, k: Any, how: str) -> None:
        """The new kernel starts: every CPU's VMCS cache must be empty."""
        self.kexec_checked = True
        for cpu in k.hw.cpus:
            for vmcs in cpu.cache:
                # The site says what kind of VMCS leaked and where that CPU's code was
                # when the crash (or the stop) interrupted it: that is what tells two
                # kexec bugs apart, since every one is detected at machine_kexec.
                kind = "shadow" if peek(vmcs, "shadow") else "vmcs"
                where = k.sched.interrupted.get(cpu.id) or (
                    "panic" if cpu.id == k.panic_cpu else "idle"
                )
                self.report(
                    Violation(
                        "kexec-active-vmcs",
                        f"{vmcs.describe()} still active on CPU {cpu.id} when the "
                        f"kexec'd kernel starts ({how}; CPU {cpu.id} was interrupted at "
                        f"{where})",
                        cpu=cpu.id,
                        context="crash" if how == "crash" else "task",
                        function="machine_kexec",
                        label=f"machine_kexec:{kind}@{where}",
                        objects=(vmcs.describe(), f"CPU {cpu.id}"),
                    )
                )
