"""Build a variant: the shared kernel functions plus one version's replacements.

The namespace ``k.f`` is the model's ops table: shared code calls every model
function through it, so a version (or, later, a plug-in or a mutant) changes
behaviour by providing a module whose functions replace entries of its base.
"""

from __future__ import annotations

import importlib
import inspect
from functools import cache
from types import ModuleType, SimpleNamespace

SHARED_MODULES = (
    "vmxfuzz.kernel.list",
    "vmxfuzz.kernel.smp",
    "vmxfuzz.kernel.x86",
    "vmxfuzz.kernel.vmx",
    "vmxfuzz.kernel.nested",
    "vmxfuzz.kernel.kvm_main",
    "vmxfuzz.kernel.crash",
    "vmxfuzz.kernel.ops",
)

VERSION_MODULES = ("vmx", "x86", "kvm_main")

BUILTIN = {
    "reference": "vmxfuzz.reference",
    "patched": "vmxfuzz.patched",
}


class VariantError(ValueError):
    """An unknown or broken variant (a bad-input error, exit code 2)."""


def module_functions(mod: ModuleType) -> dict[str, object]:
    """The functions a module defines (not the ones it imports)."""
    return {
        name: obj
        for name, obj in vars(mod).items()
        if inspect.isfunction(obj) and obj.__module__ == mod.__name__
    }


def _shared() -> dict[str, object]:
    table: dict[str, object] = {}
    for name in SHARED_MODULES:
        table.update(module_functions(importlib.import_module(name)))
    return table


@cache
def build(variant: str) -> SimpleNamespace:
    """The function namespace of a built-in variant (``reference`` or ``patched``)."""
    pkg = BUILTIN.get(variant)
    if pkg is None:
        raise VariantError(f"unknown variant {variant!r} (known: {', '.join(BUILTIN)})")
    table = _shared()
    for part in VERSION_MODULES:
        table.update(module_functions(importlib.import_module(f"{pkg}.{part}")))
    return SimpleNamespace(**table)


def overrides(variant: str) -> set[str]:
    """Names a version replaces or adds on top of the shared code (for docs/tests)."""
    pkg = BUILTIN[variant]
    names: set[str] = set()
    for part in VERSION_MODULES:
        names |= set(module_functions(importlib.import_module(f"{pkg}.{part}")))
    return names
