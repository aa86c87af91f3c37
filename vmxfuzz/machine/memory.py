"""Heap objects, allocation failure injection and poisoning of freed memory.

A freed object has its class swapped for a poisoned subclass whose every attribute
access raises :class:`UseAfterFree`.  Live objects pay nothing for the check, and a
touch of freed memory anywhere in model code (a field read, a list walk, an IPI
handler running on a stale pointer) is caught without instrumenting each access.
The oracle inspects objects with :func:`peek`, which bypasses the poison.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from . import weakmem
from .classhooks import hooked_subclass
from .errors import UseAfterFree


class KObject:
    """Base of every simulated heap/static object that can be freed."""

    kind: ClassVar[str] = "object"
    # Fields whose stores go through the CPU's store buffer in weak-memory mode.
    WEAK_FIELDS: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str) -> None:
        weakmem.adopt(self)
        self.name = name

    def describe(self) -> str:
        return f"{self.kind} {peek(self, 'name')}"


def _poison_getattribute(self: Any, attr: str) -> Any:
    if attr in ("__class__", "__dict__", "__repr__", "describe", "kind"):
        return object.__getattribute__(self, attr)
    name = object.__getattribute__(self, "__dict__").get("name", "?")
    raise UseAfterFree(f"touch of freed {type(self).kind} {name} (.{attr})", (name,))


def _poison_setattr(self: Any, attr: str, value: Any) -> None:
    name = object.__getattribute__(self, "__dict__").get("name", "?")
    raise UseAfterFree(f"store to freed {type(self).kind} {name} (.{attr})", (name,))


def poison(obj: KObject) -> None:
    """Mark ``obj`` freed: any later touch raises UseAfterFree."""
    cls = type(obj)
    if is_freed(obj):
        return
    obj.__class__ = hooked_subclass(
        cls, "_freed", _poison_getattribute, _poison_setattr, "Freed" + cls.__name__
    )


def is_freed(obj: object) -> bool:
    return bool(getattr(type(obj), "_freed", False))


T = TypeVar("T")


def peek(obj: object, attr: str) -> Any:
    """Read a field without the poison check (for the oracle and reports only)."""
    return object.__getattribute__(obj, attr)


def obj_name(obj: object | None) -> str:
    if obj is None:
        return "NULL"
    try:
        return str(object.__getattribute__(obj, "name"))
    except AttributeError:
        return repr(obj)
