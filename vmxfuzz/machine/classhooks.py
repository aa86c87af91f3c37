"""Subclasses that hook attribute access, under the class's own name.

Why one helper: three mechanisms give objects such a class at run time -- poisoning of
freed memory, the weak-memory store buffers and the explorer's footprint recording --
and each must keep the reported name (a tracked ``ListHead`` is still a ``ListHead``
in traces, reports and state fingerprints) and be built once per base class.
"""

from __future__ import annotations

from typing import Any

_CACHE: dict[tuple[type, str], type] = {}


def hooked_subclass(
    cls: type, marker: str, getattribute: Any, setattr: Any, name: str | None = None
) -> type:
    """``cls`` with the two hooks; ``marker`` is a class attribute set to True (how
    code tells the kinds apart) and the cache key."""
    key = (cls, marker)
    sub = _CACHE.get(key)
    if sub is None:
        sub = type(
            name or cls.__name__,
            (cls,),
            {
                "__getattribute__": getattribute,
                "__setattr__": setattr,
                marker: True,
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
            },
        )
        _CACHE[key] = sub
    return sub
