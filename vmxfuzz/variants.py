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


def _load_plugin(spec: str) -> ModuleType:
    """A plug-in: a ``.py`` file path or an importable module name."""
    import importlib.util
    from pathlib import Path

    path = Path(spec)
    try:
        if spec.endswith(".py"):
            if not path.is_file():
                raise VariantError(f"{spec}: (file): no such variant file")
            mod_name = f"vmxfuzz_plugin_{path.stem}"
            loader_spec = importlib.util.spec_from_file_location(mod_name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise VariantError(f"{spec}: (file): cannot be loaded as a Python module")
            mod = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(mod)
            return mod
        return importlib.import_module(spec)
    except VariantError:
        raise
    except ModuleNotFoundError as e:
        raise VariantError(f"{spec}: (variant): unknown variant or module ({e})") from None
    except Exception as e:  # a broken plug-in is bad input, not a crash
        raise VariantError(f"{spec}: (plug-in): fails to load: {type(e).__name__}: {e}") from None


@cache
def build(variant: str) -> SimpleNamespace:
    """The function namespace of a variant.

    ``reference`` and ``patched`` are built in.  Anything else is a plug-in: a ``.py``
    file or a module that sets ``BASE`` (a built-in variant or another plug-in) and
    defines the kernel functions it changes, with the kernel's names; everything else
    is inherited from ``BASE``.
    """
    pkg = BUILTIN.get(variant)
    if pkg is not None:
        table = _shared()
        for part in VERSION_MODULES:
            table.update(module_functions(importlib.import_module(f"{pkg}.{part}")))
        return SimpleNamespace(**table)
    mod = _load_plugin(variant)
    base = getattr(mod, "BASE", None)
    if not isinstance(base, str) or base == variant:
        raise VariantError(f"{variant}: BASE: a plug-in must name its base variant")
    inherited = build(base)
    mine = module_functions(mod)
    unknown = sorted(n for n in mine if not hasattr(inherited, n) and not n.startswith("_"))
    if unknown and not getattr(mod, "NEW_FUNCTIONS", False):
        raise VariantError(
            f"{variant}: (functions): {', '.join(unknown)} override nothing in {base} "
            "(misspelt kernel name? set NEW_FUNCTIONS = True to add functions)"
        )
    return SimpleNamespace(**{**vars(inherited), **mine})


def split_pair(choice: str) -> tuple[str, str] | None:
    """``both`` or ``A,B``: the two variants of a differential run (A as reference)."""
    if choice == "both":
        return ("reference", "patched")
    if "," in choice:
        a, b = choice.split(",", 1)
        return (a, b)
    return None


def overrides(variant: str) -> set[str]:
    """Names a version replaces or adds on top of the shared code (for docs/tests)."""
    pkg = BUILTIN[variant]
    names: set[str] = set()
    for part in VERSION_MODULES:
        names |= set(module_functions(importlib.import_module(f"{pkg}.{part}")))
    return names
