"""A plug-in identical to ``patched`` except for two extra no-op steps (labels only)
at the start of ``vmx_vcpu_load_vmcs``, on the path of every vCPU load.

It changes nothing a CPU or an NMI could observe, so every ``behaviour`` divergence of
``patched,tests/plugins/noop_steps.py`` is a scheduling artefact: the same
step-indexed schedule interleaves the two variants differently.  The confirmation
search (vmxfuzz/confirm.py) must never report one as a finding.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow
from vmxfuzz.variants import build

BASE = "patched"


def vmx_vcpu_load_vmcs(k: Any, vcpu: Any, cpu: int) -> Flow:
    yield "vmx_vcpu_load_vmcs:noop_a"
    yield "vmx_vcpu_load_vmcs:noop_b"
    yield from build("patched").vmx_vcpu_load_vmcs(k, vcpu, cpu)
