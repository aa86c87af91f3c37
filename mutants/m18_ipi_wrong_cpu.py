"""M18: ``loaded_vmcs_clear`` sends the clear to this CPU instead of ``loaded_vmcs->cpu``.

What changed: ``smp_call_function_single(loaded_vmcs->cpu, __loaded_vmcs_clear, ...)``
becomes ``smp_call_function_single(smp_processor_id(), ...)``: the clear runs locally
(IRQs off), where ``__loaded_vmcs_clear`` sees ``loaded_vmcs->cpu != cpu`` and returns.

Why plausible: ``cpu`` is a local variable in both the caller
(``vmx_vcpu_load_vmcs(vcpu, cpu)``, the *new* CPU) and here; passing the wrong one is
a one-token slip that a single-CPU test cannot see.

What should catch it: a migrating VMCS is never VMCLEARed or unlinked on its old CPU:
``vmcs-active-on-two-cpus`` at the VMPTRLD on the new CPU, then ``list-corrupt`` (one
link on two lists) and ``use-after-free`` at vCPU free.  Reproducer:
``mutants/kills/M18-*.json`` (a plain migration).
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.kernel.structs import LoadedVmcs

BASE = "patched"
MUTANT = {
    "id": "M18",
    "summary": "loaded_vmcs_clear: IPI sent to this CPU, not loaded_vmcs->cpu",
    "function": "loaded_vmcs_clear",
    "expect": "vmcs-active-on-two-cpus, list-corrupt",
    "equivalent": False,
}


def loaded_vmcs_clear(k: Any, loaded_vmcs: LoadedVmcs) -> Flow:
    yield "loaded_vmcs_clear:read_cpu"
    cpu = loaded_vmcs.cpu
    if cpu != -1:
        yield from k.f.smp_call_function_single(
            k,
            k.cpu,  # MUTATION: was cpu (loaded_vmcs->cpu)
            "__loaded_vmcs_clear",
            lambda: k.f.__loaded_vmcs_clear(k, loaded_vmcs),
        )
