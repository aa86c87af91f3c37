"""The kernel's global and per-CPU state for one run, plus the model's services.

One object, ``k``, is threaded through every model function (like the implicit
global state of the kernel).  ``k.f`` is the variant's function namespace: every
model call goes through it, which is how a variant or plug-in replaces a function.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from ..machine.faults import FaultPlan
from ..machine.hw import Cpu, Hardware, Vmcs
from ..machine.memory import KObject, poison
from ..machine.weakmem import WeakMemory
from .list import ListHead
from .structs import KStruct, Kvm, LoadedVmcs, VcpuVmx

ENOMEM = -12
EBUSY = -16
EEXIST = -17
ENODEV = -19
EIO = -5
EFAULT = -14
ENXIO = -6
ENOENT = -2
EOPNOTSUPP = -95

ERRNO_NAMES = {
    ENOMEM: "-ENOMEM",
    EBUSY: "-EBUSY",
    EEXIST: "-EEXIST",
    ENODEV: "-ENODEV",
    EIO: "-EIO",
    EFAULT: "-EFAULT",
    ENXIO: "-ENXIO",
    ENOENT: "-ENOENT",
    EOPNOTSUPP: "-EOPNOTSUPP",
}


@dataclass
class Config:
    """Machine configuration a scenario fixes (spec section 10)."""

    cpus: int = 2
    kexec_loaded: bool = True
    bios_disabled: tuple[int, ...] = ()
    offline: tuple[int, ...] = ()
    ept: bool = True
    shadow_vmcs: bool = True
    nested: bool = False
    cr4_mismatch: tuple[int, ...] = ()
    vmx_caps_mismatch: tuple[int, ...] = ()
    no_vmx: tuple[int, ...] = ()  # CPUs whose CPUID lacks VMX
    weak_memory: bool = False  # store buffers (vmxfuzz.machine.weakmem); format v3
    panic_timeout: int = 0  # kernel.panic: != 0 restarts after a panic; format v5


class Kernel:
    """Everything one run of one variant mutates."""

    def __init__(self, config: Config, f: SimpleNamespace, faults: FaultPlan, oracle: Any) -> None:
        n = config.cpus
        self.config = config
        self.f = f
        self.faults = faults
        self.oracle = oracle
        cpus = [
            Cpu(
                id=c,
                online=c not in config.offline,
                feat_ctl_vmx=c not in config.bios_disabled,
                has_vmx=c not in config.no_vmx,
                cr4_reserved=1 if c in config.cr4_mismatch else 0,
                vmx_caps=1 if c in config.vmx_caps_mismatch else 0,
            )
            for c in range(n)
        ]
        self.hw = Hardware(cpus, faults, oracle)
        self.mem: WeakMemory | None = None  # the store buffers in weak-memory mode
        self.cpu = 0  # smp_processor_id() of the flow being stepped
        self.ctx: Any = None  # the scheduler context being stepped
        self.sched: Any = None
        # per-CPU data: zeroed until initialised
        self.loaded_vmcss_on_cpu = [ListHead(f"loaded_vmcss_on_cpu[{c}]") for c in range(n)]
        # The posted-interrupt wakeup list and its lock (vmx.c): initialised beside the
        # VMCS list; ``blocked_vcpu_on_cpu_lock[C]`` joins ``locks`` at spin_lock_init.
        self.blocked_vcpu_on_cpu = [ListHead(f"blocked_vcpu_on_cpu[{c}]") for c in range(n)]
        self.current_vmcs: list[Vmcs | None] = [None] * n
        self.vmxarea: list[KObject | None] = [None] * n
        self.crash_vmclear_enabled_bitmap: set[int] = set()
        # kvm_main.c
        self.kvm_usage_count = 0
        self.cpus_hardware_enabled: set[int] | None = None
        self.hardware_enable_failed = 0
        self.kvm_rebooting = False
        self.dev_kvm_registered = False
        self.hotplug_registered = False
        self.reboot_notifier_registered = False
        self.syscore_registered = False
        self.cr4_reserved_bits = 0
        self.locks: dict[str, int | None] = {
            "kvm_count_lock": None,
            "kvm_lock": None,
            "cpu_add_remove_lock": None,
        }
        # x86.c / vmx.c (the variant initialises kvm_x86_ops and its own structs)
        self.kvm_x86_ops: KStruct | None = None
        self.statics: dict[str, KStruct] = {}
        self.vmcs_config_populated = False
        self.module_state = "unloaded"  # unloaded | coming | live | going
        self.module_init_done = False
        self.crash_vmclear_loaded_vmcss: str | None = None
        # crash / reboot
        self.panic_cpu: int | None = None
        self.crashing_cpu: int | None = None
        self.crash_ipi_issued = False
        self.waiting_for_crash_ipi = 0
        self.stopping_cpu: int | None = None
        self.shootdown_callback = "kdump_nmi_callback"  # nmi_shootdown_cpus(callback)
        self.kexec_mutex: int | None = None  # the CPU whose task holds it
        self.cpu_hotplug_disabled = 0
        # objects
        self.vms: dict[str, Kvm] = {}  # open VM file descriptors, by scenario name
        self.vm_names: set[str] = set()
        self.vcpu_names: set[str] = set()
        self.module_refs = 0
        self.vcpus: dict[str, VcpuVmx] = {}
        self._loaded_vmcs: list[LoadedVmcs] = []
        self._serial = 0
        self.warnings: list[str] = []
        f.x86_static_data(self)

    # ---- helpers used by model code --------------------------------------------------
    def smp_mb(self) -> None:
        """A full barrier on the stepping CPU (a no-op under sequential consistency)."""
        if self.mem is not None:
            self.mem.fence(self.cpu)

    def smp_wmb(self) -> None:
        """Order this CPU's earlier stores before its later ones (weak-memory mode)."""
        if self.mem is not None:
            self.mem.wmb(self.cpu)

    def cpu_state(self) -> Cpu:
        return self.hw.cpus[self.cpu]

    def online_cpus(self) -> list[int]:
        return [c.id for c in self.hw.cpus if c.online and not c.halted]

    def new_name(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}#{self._serial}"

    def track(self, lv: LoadedVmcs) -> None:
        if lv not in self._loaded_vmcs:
            self._loaded_vmcs.append(lv)

    def all_loaded_vmcs(self) -> Iterator[LoadedVmcs]:
        return iter(self._loaded_vmcs)

    def kfree(self, obj: KObject) -> None:
        """Free an object: poison it and everything embedded in it."""
        if isinstance(obj, Vmcs):
            self.hw.free_vmcs(obj)
        emb = obj.embedded() if isinstance(obj, VcpuVmx) else []
        for o in [obj, *emb]:
            poison(o)

    def warn(self, msg: str) -> None:
        self.warnings.append(f"CPU {self.cpu}: {msg}")

    def fail(self, site: str) -> str | None:
        """Ask the scenario's fault plan whether this occurrence of ``site`` fails."""
        return self.faults.check(site, self.cpu)
