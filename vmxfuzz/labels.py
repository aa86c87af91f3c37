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
    r"""(?:yield|Wait\(|Migrate\(|resume=|_vmx_insn\(\s*k,)\s*\(?\s*f?["']([A-Za-z_0-9]+:[A-Za-z_0-9{}]+)["']"""
)
_KZALLOC_SITE = re.compile(r"""_kzalloc\(\s*k,\s*["']([A-Za-z_0-9]+)["']""")
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
        elif label == "kzalloc:{site}":  # nested.py's _kzalloc: one label per call site
            out.update(f"kzalloc:{s}" for s in _KZALLOC_SITE.findall(src))
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


_PLACEHOLDER = re.compile(r"\{[^}]*\}")


def _function_labels(fn: object) -> tuple[frozenset[str], tuple[re.Pattern[str], ...]]:
    """The labels one function's source yields; f-string labels as patterns."""
    try:
        src = inspect.getsource(fn)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return frozenset(), (re.compile(".*"),)  # unknown source: matches anything
    plain: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    for m in _LABEL.finditer(src):
        label = m.group(1)
        if "{" in label:
            parts = _PLACEHOLDER.split(label)
            patterns.append(re.compile("[^:]*".join(re.escape(p) for p in parts) + "$"))
        else:
            plain.add(label)
    return frozenset(plain), tuple(patterns)


@cache
def _namespace_labels(
    functions: tuple[object, ...],
) -> tuple[frozenset[str], tuple[re.Pattern[str], ...]]:
    plain: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    for fn in functions:
        p, pats = _function_labels(fn)
        plain |= p
        patterns += pats
    return frozenset(plain), tuple(patterns)


def has_label(functions: object, label: str) -> bool:
    """Whether a variant's function namespace (``variants.build(...)``) contains a
    step ``label``: some function's source yields it (an f-string label matches by
    pattern).  Anchor keys for steps without a label (``task>OP``, ``ipi>NAME``,
    ``nmi>NAME``, ``resume>OP``, ``nmi@LABEL``) exist in every variant (the last
    one if its label does)."""
    if ">" in label:
        return True
    if label.startswith("nmi@"):
        label = label[4:]
    got = _BY_NAMESPACE.get(id(functions))
    if got is None or got[0] is not functions:
        if len(_BY_NAMESPACE) > 64:  # tests build many one-off namespaces
            _BY_NAMESPACE.clear()
        fns = tuple(v for v in vars(functions).values() if inspect.isfunction(v))
        got = _BY_NAMESPACE[id(functions)] = (functions, *_namespace_labels(fns))
    _, plain, patterns = got
    return label in plain or any(p.match(label) for p in patterns)


# id(namespace) -> (namespace, labels, patterns); the namespace is kept so its id is
# not reused (variants.build caches namespaces, so this stays small).
_BY_NAMESPACE: dict[int, tuple[object, frozenset[str], tuple[re.Pattern[str], ...]]] = {}
