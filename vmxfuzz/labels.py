"""The catalogue of step labels, read from the model sources.

Why from the sources: a label is a string literal at a ``yield`` in a model
function, so scanning the code is the one way the catalogue cannot drift from it.
Scenario validation uses it to reject a misspelt NMI point instead of silently never
firing; engines use it to pick NMI points.
"""

from __future__ import annotations

import importlib
import inspect
import re
from functools import cache

from .variants import BUILTIN, SHARED_MODULES, VERSION_MODULES

_LABEL = re.compile(
    r"""(?:yield|Wait\(|_vmx_insn\(\s*k,)\s*\(?\s*f?["']([A-Za-z_0-9]+:[A-Za-z_0-9{}]+)["']"""
)
_HOOKS = (
    "cpu_has_kvm_support",
    "disabled_by_bios",
    "hardware_setup",
    "check_processor_compatibility",
)


def labels_in_source(src: str) -> set[str]:
    """The step labels a piece of model source yields."""
    out: set[str] = set()
    for m in _LABEL.finditer(src):
        label = m.group(1)
        if "{hook}" in label:
            out.update(label.replace("{hook}", h) for h in _HOOKS)
        elif "{" not in label:
            out.add(label)
    return out


@cache
def known_labels() -> frozenset[str]:
    mods = list(SHARED_MODULES)
    for pkg in BUILTIN.values():
        mods += [f"{pkg}.{m}" for m in VERSION_MODULES]
    out: set[str] = set()
    for name in mods:
        out |= labels_in_source(inspect.getsource(importlib.import_module(name)))
    return frozenset(out)
