"""Fault outcomes chosen by a scenario: allocation failures, init-step failures and
VMXON faults, all through one plan.

Why one plan: every nondeterministic outcome a run depends on must come from the
scenario, so a run replays exactly.  Each fallible point in the model asks
``plan.check(site, cpu)``; the plan answers from the scenario's list and counts
occurrences per site (and per site and CPU) so "the 2nd VMXON on CPU 1" is nameable.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..choosers.base import Chooser

# site -> (allowed kinds, description).  The scenario validator uses this table.
SITES: dict[str, tuple[tuple[str, ...], str]] = {
    "vmxon": (("GP", "UD", "VMfailInvalid"), "the VMXON instruction in kvm_cpu_vmxon"),
    "alloc_vmcs": (("ENOMEM",), "alloc_vmcs_cpu() for a loaded_vmcs (vmcs01/vmcs02)"),
    "alloc_msr_bitmap": (("ENOMEM",), "the MSR bitmap page in alloc_loaded_vmcs"),
    "alloc_vmxarea": (("ENOMEM",), "alloc_kvm_area(): a CPU's VMXON region"),
    "alloc_vcpu": (("ENOMEM",), "kmem_cache_zalloc of struct vcpu_vmx"),
    "alloc_vm": (("ENOMEM",), "kvm_arch_alloc_vm: struct kvm"),
    "alloc_cpus_hardware_enabled": (("ENOMEM",), "kvm_init: the cpumask"),
    "alloc_shadow_vmcs": (("ENOMEM",), "alloc_shadow_vmcs(): the shadow VMCS"),
    "alloc_cached_vmcs12": (("ENOMEM",), "enter_vmx_operation: cached_vmcs12"),
    "alloc_cached_shadow_vmcs12": (
        ("ENOMEM",),
        "enter_vmx_operation: cached_shadow_vmcs12",
    ),
    "kvm_arch_init:mmu": (("ENOMEM",), "kvm_arch_init: MMU/percpu setup"),
    "kvm_irqfd_init": (("ENOMEM",), "kvm_init: kvm_irqfd_init()"),
    "kvm_init:register": (("ENOMEM",), "kvm_init: hotplug/reboot/cache/misc_register"),
    "vmx_setup_l1d_flush": (("ENOMEM",), "vmx_init: vmx_setup_l1d_flush()"),
    "vcpu_setup": (("ENOMEM",), "vmx_create_vcpu: a setup step after the vmcs01 load"),
}


@dataclass(frozen=True)
class FaultSpec:
    site: str
    nth: int = 1
    cpu: int | None = None
    kind: str | None = None


@dataclass
class FaultPlan:
    """The fallible sites' mechanism: counts occurrences, asks the run's chooser
    (:meth:`vmxfuzz.choosers.base.Chooser.fault`) whether this one faults, and keeps
    the account in scenario terms (``faults``: the specs, grown by choosers that
    decide live; ``fired``: what fired, on which CPU).  Without a chooser the plan
    replays its own ``faults``."""

    faults: tuple[FaultSpec, ...] = ()
    # Occurrences per (site, None) and (site, cpu); missing keys read as 0 (a
    # defaultdict: a Counter's Python-level __missing__ showed up in replay profiles).
    counts: defaultdict[tuple[str, int | None], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    fired: list[tuple[FaultSpec, int]] = field(default_factory=list)
    chooser: Chooser | None = None
    # When each fault fired, on the run's clock (the trace length; set by the
    # executor), so coverage can tell which flow a fault hit.
    clock: Callable[[], int] | None = None
    fired_at: list[int] = field(default_factory=list)

    def check(self, site: str, cpu: int) -> str | None:
        """Count one occurrence of ``site`` on ``cpu``; return the injected kind."""
        self.counts[(site, None)] += 1
        self.counts[(site, cpu)] += 1
        chooser: Any = self.chooser
        if chooser is None:
            from ..choosers.replay import ReplayChooser

            chooser = self.chooser = ReplayChooser(faults=self.faults)
        spec = chooser.fault(site, cpu, self.counts)
        if spec is None:
            return None
        if spec not in self.faults:
            self.faults = (*self.faults, spec)
        self.fired.append((spec, cpu))
        self.fired_at.append(self.clock() if self.clock is not None else -1)
        return spec.kind or SITES[site][0][0]
