"""Declarations a variant plug-in makes about its functions (read by ``variants.build``).

A plug-in replaces kernel functions by defining functions with the kernel's names.
Anything that cannot be checked from the name alone is declared here, one function at
a time, so the checks stay on for everything else in the file:

- ``@new_function``: the patch *adds* this function (without it, a name that replaces
  nothing in the base is rejected as a misspelt kernel name);
- ``override(fn)``: a function *imported* from elsewhere (5.6's version of a function,
  another plug-in's) is meant to replace the base's function of that name (without it
  an imported kernel-named function is an error: it would otherwise be ignored);
- ``@override(builds_on="a.py")``: this function deliberately replaces what plug-in
  ``a.py`` put there (without it, two plug-ins of one composition that replace the same
  function are an error naming both).

The declarations are recorded in the calling module's globals under ``DECLARED``'s
name, keyed by function identity, so decorating never changes the function object
(an imported function may be shared with the module it came from).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])

DECLARED = "__vmxfuzz_declared__"


@dataclass
class Declarations:
    """What one plug-in module declared: new functions, and overrides with their bases."""

    new: list[Callable[..., Any]] = field(default_factory=list)
    overrides: list[tuple[Callable[..., Any], tuple[str, ...]]] = field(default_factory=list)

    def is_new(self, fn: object) -> bool:
        return any(fn is f for f in self.new)

    def override_of(self, fn: object) -> tuple[str, ...] | None:
        """The ``builds_on`` names of ``fn``'s override declaration, or None if undeclared."""
        for f, builds_on in self.overrides:
            if fn is f:
                return builds_on
        return None


def declarations(namespace: dict[str, Any]) -> Declarations:
    """The declarations recorded in a module namespace (empty if it made none)."""
    found = namespace.get(DECLARED)
    return found if isinstance(found, Declarations) else Declarations()


def _caller_declarations(depth: int) -> Declarations:
    namespace = sys._getframe(depth + 1).f_globals
    found = namespace.get(DECLARED)
    if not isinstance(found, Declarations):
        found = Declarations()
        namespace[DECLARED] = found
    return found


def new_function(fn: F) -> F:
    """Declare that the patch adds ``fn`` (a function its base does not have)."""
    _caller_declarations(1).new.append(fn)
    return fn


@overload
def override(fn: F, *, builds_on: str | tuple[str, ...] = ()) -> F: ...
@overload
def override(fn: None = None, *, builds_on: str | tuple[str, ...] = ()) -> Callable[[F], F]: ...
def override(fn: F | None = None, *, builds_on: str | tuple[str, ...] = ()) -> F | Callable[[F], F]:
    """Declare that ``fn`` replaces the base's function of the same name.

    Needed for a function imported into the plug-in (``override(imported)``), and,
    with ``builds_on`` (a plug-in path relative to this file, or a module name), for a
    function that deliberately replaces another plug-in's version in a composition.
    """
    names = (builds_on,) if isinstance(builds_on, str) else tuple(builds_on)
    if fn is not None:
        _caller_declarations(1).overrides.append((fn, names))
        return fn
    decl = _caller_declarations(1)

    def mark(f: F) -> F:
        decl.overrides.append((f, names))
        return f

    return mark
