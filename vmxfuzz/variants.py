"""Build a variant: the shared kernel functions plus one version's replacements, plus any
composition of plug-ins on top.

The namespace ``k.f`` is the model's ops table: shared code calls every model
function through it, so a version (or a plug-in, or a mutant) changes behaviour by
providing a module whose functions replace entries of its base.

A variant is written ``BASE+p1.py+p2.py``: a built-in variant or a plug-in, then
plug-ins applied in order, like patches on a tree.  A plug-in names its own ``BASE``
(what it applies to when named alone; a relative path is resolved against the
plug-in's own folder), and every function it defines must replace one its base has,
unless declared new (``vmxfuzz.plugin.new_function``).  Two plug-ins of one
composition may replace the same function only if the later one declares it builds on
the earlier (``BUILDS_ON`` or ``override(builds_on=...)``, or by having it as
``BASE``); anything else is a bad-input error naming both, because one would silently
undo the other.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType, SimpleNamespace

from .plugin import Declarations, declarations

SHARED_MODULES = (
    "vmxfuzz.kernel.list",
    "vmxfuzz.kernel.smp",
    "vmxfuzz.kernel.preempt",
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


def is_helper(name: str) -> bool:
    """``_name`` is a Python helper private to its module, not a kernel function;
    kernel names that start with underscores (``__loaded_vmcs_clear``) have two."""
    return name.startswith("_") and not name.startswith("__")


@cache
def _shared() -> dict[str, object]:
    table: dict[str, object] = {}
    for name in SHARED_MODULES:
        table.update(module_functions(importlib.import_module(name)))
    return table


@cache
def _builtin(variant: str) -> dict[str, object]:
    table = dict(_shared())
    for part in VERSION_MODULES:
        table.update(module_functions(importlib.import_module(f"{BUILTIN[variant]}.{part}")))
    return table


# ---- naming plug-ins ----------------------------------------------------------------------
def _tokens(spec: str, relative_to: Path | None = None) -> list[str]:
    """``A+b.py+c.py`` split on ``+``, except where a ``+`` is part of an existing file's
    path (the longest such join wins)."""
    pieces = spec.split("+")
    where = relative_to or Path()
    out: list[str] = []
    i = 0
    while i < len(pieces):
        j = next(
            (j for j in range(len(pieces), i + 1, -1) if (where / "+".join(pieces[i:j])).is_file()),
            i + 1,
        )
        out.append("+".join(pieces[i:j]))
        i = j
    return out


def _key(name: str, relative_to: Path | None) -> str:
    """The identity of a plug-in named ``name``: an absolute file path or a module name.

    A relative ``.py`` path inside a plug-in (its ``BASE``, ``BUILDS_ON``) is resolved
    against that plug-in's folder, not the current directory, so a plug-in means the
    same thing wherever it is run from.
    """
    if name in BUILTIN or not name.endswith(".py"):
        return name
    path = Path(name)
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    return str(path.resolve())


def short_name(variant: str) -> str:
    """How reports show a variant: each plug-in by its file stem (``patched+fix``).

    JSON output keeps the full name (the path), which is what replays it.
    """
    if "," in variant:
        return ",".join(short_name(v) for v in variant.split(",", 1))
    return "+".join(
        Path(t).stem if t.endswith(".py") else t.rsplit(".", 1)[-1] for t in _tokens(variant)
    )


# ---- one plug-in ------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Layer:
    """One loaded plug-in: what it applies to alone, what it declares, its module."""

    key: str
    spec: str  # as the user or the naming plug-in wrote it (for messages)
    module: ModuleType
    root: str  # the built-in variant at the bottom of its BASE chain
    below: tuple[Layer, ...]  # the plug-ins of its BASE chain, applied first
    builds_on: frozenset[str]  # keys it declares it builds on (BUILDS_ON, its BASE chain)
    declared: Declarations

    @property
    def folder(self) -> Path | None:
        file = getattr(self.module, "__file__", None)
        return Path(file).parent if file else None


_loading: list[str] = []
_layers: dict[str, Layer] = {}


def _import(key: str, spec: str) -> ModuleType:
    try:
        if key.endswith(".py"):
            path = Path(key)
            if not path.is_file():
                raise VariantError(f"{spec}: (file): no such variant file")
            mod_name = f"vmxfuzz_plugin_{len(sys.modules)}_{path.stem}"
            loader_spec = importlib.util.spec_from_file_location(mod_name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise VariantError(f"{spec}: (file): cannot be loaded as a Python module")
            mod = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_name] = mod  # dataclasses and pickling look modules up here
            try:
                loader_spec.loader.exec_module(mod)
            except BaseException:
                del sys.modules[mod_name]
                raise
            return mod
        return importlib.import_module(key)
    except VariantError:
        raise
    except ModuleNotFoundError as e:
        raise VariantError(f"{spec}: (variant): unknown variant or module ({e})") from None
    except Exception as e:  # a broken plug-in is bad input, not a crash
        raise VariantError(f"{spec}: (plug-in): fails to load: {type(e).__name__}: {e}") from None


def _names(mod: ModuleType, spec: str, field: str) -> tuple[str, ...]:
    value = getattr(mod, field, ())
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise VariantError(f"{spec}: {field}: must be a plug-in name or a list of them")


def _layer(key: str, spec: str) -> Layer:
    """A plug-in, loaded once per identity (so its functions are the same objects in
    every composition that names it, however it was spelt)."""
    if key not in _layers:
        _layers[key] = _load_layer(key, spec)
    return _layers[key]


def _load_layer(key: str, spec: str) -> Layer:
    if key in _loading:
        raise VariantError(f"{spec}: BASE: the BASE chain comes back to {spec}")
    _loading.append(key)
    try:
        mod = _import(key, spec)
        if hasattr(mod, "NEW_FUNCTIONS"):
            raise VariantError(
                f"{spec}: NEW_FUNCTIONS: no longer supported: declare each new function "
                "with @new_function (from vmxfuzz.plugin import new_function)"
            )
        file = getattr(mod, "__file__", None)
        folder = Path(file).parent if file else None
        base = getattr(mod, "BASE", None)
        if not isinstance(base, str) or not base:
            raise VariantError(f"{spec}: BASE: a plug-in must name its base variant")
        try:
            root, below = _expand(base, folder)
        except VariantError as e:
            raise VariantError(f"{spec}: BASE: {e}") from None
        builds_on = {layer.key for layer in below}
        builds_on |= {_key(n, folder) for n in _names(mod, spec, "BUILDS_ON")}
        return Layer(key, spec, mod, root, below, frozenset(builds_on), declarations(vars(mod)))
    finally:
        _loading.remove(key)


def _expand(spec: str, relative_to: Path | None) -> tuple[str, tuple[Layer, ...]]:
    """A composition as (the built-in variant at its bottom, the plug-ins in order)."""
    tokens = _tokens(spec, relative_to)
    if any(not t for t in tokens):
        raise VariantError(f"{spec}: (variant): empty name in a composition")
    root: str | None = None
    layers: list[Layer] = []
    for i, token in enumerate(tokens):
        key = _key(token, relative_to)
        if key in BUILTIN:
            if i:
                raise VariantError(f"{token}: (variant): a built-in variant can only come first")
            root = key
            continue
        layer = _layer(key, token)
        if root is None:
            root = layer.root
        for sub in (*layer.below, layer):
            if all(sub.key != have.key for have in layers):
                layers.append(sub)
    assert root is not None
    return root, tuple(layers)


# ---- applying plug-ins ---------------------------------------------------------------------
def _apply(table: dict[str, object], owner: dict[str, Layer], layer: Layer, under: str) -> None:
    """Put ``layer``'s functions into ``table``, checking each one's declaration."""
    mod, decl, spec = layer.module, layer.declared, layer.spec
    mine: dict[str, object] = {}
    for name, obj in vars(mod).items():
        if not inspect.isfunction(obj) or is_helper(name) or name.startswith("__vmxfuzz"):
            continue
        local = obj.__module__ == mod.__name__
        declared_on = decl.override_of(obj)
        if decl.is_new(obj):
            if name in table:
                raise VariantError(
                    f"{spec}: {name}: declared @new_function but {under} already has it "
                    "(an override needs no declaration)"
                )
        elif local or declared_on is not None:
            if name not in table:
                hint = "set @new_function if the patch adds it" if local else "nothing to replace"
                raise VariantError(
                    f"{spec}: (functions): {name} overrides nothing in {under} "
                    f"(misspelt kernel name? {hint})"
                )
        elif name in table and obj is not table[name] and obj is not _shared().get(name):
            raise VariantError(
                f"{spec}: {name}: imported from {obj.__module__} but not declared: "
                f"write override({name}) to make it replace the kernel function, or "
                "import its module instead"
            )
        else:
            continue  # an imported helper, not a kernel function of this plug-in
        prev = owner.get(name)
        allowed = layer.builds_on | {_key(n, layer.folder) for n in declared_on or ()}
        if prev is not None and prev.key not in allowed:
            raise VariantError(
                f"{spec}: (functions): {name} is also overridden by {prev.spec} in this "
                f"composition (declare BUILDS_ON = {Path(prev.key).name!r} in {spec} "
                "if it builds on it)"
            )
        mine[name] = obj
    for name, obj in mine.items():
        table[name] = obj
        owner[name] = layer


@cache
def _compose(root: str, layers: tuple[Layer, ...]) -> SimpleNamespace:
    table = dict(_builtin(root))
    owner: dict[str, Layer] = {}
    under = root
    for i, layer in enumerate(layers):
        later = {other.key: other for other in layers[i + 1 :]}
        for key in layer.builds_on & set(later):
            raise VariantError(
                f"{layer.spec}: BUILDS_ON: builds on {later[key].spec}, which comes after it"
            )
        _apply(table, owner, layer, under)
        under = f"{under}+{layer.spec}"
    return SimpleNamespace(**table)


def build(variant: str) -> SimpleNamespace:
    """The function namespace of a variant.

    ``reference`` and ``patched`` are built in.  Anything else is a plug-in or a
    composition ``BASE+a.py+b.py`` (see the module docstring).  Cached per name and
    current directory (plug-in paths are relative to it; a built-in name is not),
    so a campaign builds each variant once.
    """
    return _build(variant, "" if variant in BUILTIN else os.getcwd())


@cache
def _build(variant: str, cwd: str) -> SimpleNamespace:
    if variant in BUILTIN:
        return SimpleNamespace(**_builtin(variant))
    root, layers = _expand(variant, None)
    return _compose(root, layers)


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


def layer_names(variant: str) -> list[str]:
    """The plug-ins a variant applies, in order, as absolute paths or module names."""
    if variant in BUILTIN:
        return []
    return [layer.key for layer in _expand(variant, None)[1]]
