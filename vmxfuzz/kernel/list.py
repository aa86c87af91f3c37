"""``include/linux/list.h``: a doubly linked ring, one step per store.

The store order is the kernel's (spec section 1), so an NMI between any two stores
sees exactly what the real list would show: ``list_add`` publishes the new entry with
its last store, ``list_del`` unlinks it from forward walks with its second.  A head
that was never initialised is all zero, and walking it dereferences NULL.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from ..machine.errors import MachineFault, NullDeref, PoisonDeref
from ..machine.memory import KObject

Flow = Generator[Any, Any, Any]


class _Poison:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


LIST_POISON1 = _Poison("LIST_POISON1")
LIST_POISON2 = _Poison("LIST_POISON2")


class ListHead(KObject):
    """``struct list_head``; ``owner`` is the containing object (``list_entry``)."""

    kind = "list_head"
    WEAK_FIELDS = frozenset({"next", "prev"})

    def __init__(self, name: str, owner: object | None = None) -> None:
        super().__init__(name)
        # Zeroed memory, like per-CPU and static data before initialisation.
        self.next: ListHead | _Poison | None = None
        self.prev: ListHead | _Poison | None = None
        self.owner = owner


class WalkHang(MachineFault):
    """A forward walk that can never return to its head (a corrupted ring)."""

    reason = "hang"


class ForeignHead(MachineFault):
    """A walk that reaches another list's head (a link on two lists): the kernel's
    ``list_entry()`` would make a struct out of per-CPU data and use it -- an oops."""

    reason = "garbage-entry"


def _entry(pos: ListHead, where: str) -> Any:
    """``list_entry(pos)``: the containing object (a head has none: corrupted list)."""
    if pos.owner is None:
        raise ForeignHead(f"{where}: walk reached {pos.name}, a list head, as an entry")
    return pos.owner


def deref(p: ListHead | _Poison | None, what: str) -> ListHead:
    """Follow a list pointer the way the CPU would: NULL and poison fault."""
    if p is None:
        raise NullDeref(f"NULL list pointer dereference in {what}")
    if isinstance(p, _Poison):
        raise PoisonDeref(f"{p!r} dereference in {what}")
    return p


def INIT_LIST_HEAD(k: Any, h: ListHead) -> Flow:
    yield "INIT_LIST_HEAD:next"
    h.next = h  # WRITE_ONCE
    yield "INIT_LIST_HEAD:prev"
    h.prev = h


def list_add(k: Any, new: ListHead, head: ListHead) -> Flow:
    """``__list_add(new, head, head->next)``: four stores, the last publishes."""
    yield "list_add:next_prev"
    nxt = deref(head.next, "list_add")
    deref(nxt, "list_add").prev = new
    yield "list_add:new_next"
    new.next = nxt
    yield "list_add:new_prev"
    new.prev = head
    yield "list_add:publish"
    head.next = new  # WRITE_ONCE


def list_del(k: Any, entry: ListHead) -> Flow:
    """``__list_del_entry`` (two stores, the second unlinks) then poisoning."""
    yield "list_del:next_prev"
    nxt = deref(entry.next, "list_del")
    prv = deref(entry.prev, "list_del")
    nxt.prev = prv
    yield "list_del:unlink"
    prv.next = nxt  # WRITE_ONCE
    yield "list_del:poison_next"
    entry.next = LIST_POISON1
    yield "list_del:poison_prev"
    entry.prev = LIST_POISON2


def _guard(seen: list[ListHead], pos: ListHead, where: str) -> None:
    """Catch a walk that loops (the checker's device, not kernel code); the entries
    themselves are kept, not their ``id``s, so a walk's state is the same in every
    run that reaches it (the explorer fingerprints it)."""
    if any(p is pos for p in seen):
        raise WalkHang(f"{where}: walk revisits {pos.name} without reaching its head")
    seen.append(pos)


def list_for_each_entry(k: Any, head: ListHead, body: Callable[[Any], Flow]) -> Flow:
    """Forward walk following ``->next`` only; one load step per pointer read."""
    seen: list[ListHead] = []
    yield "list_for_each_entry:load"
    pos = deref(head.next, "list_for_each_entry")
    while pos is not head:
        _guard(seen, pos, "list_for_each_entry")
        yield from body(_entry(pos, "list_for_each_entry"))
        yield "list_for_each_entry:load"
        pos = deref(pos.next, "list_for_each_entry")


def list_for_each_entry_safe(k: Any, head: ListHead, body: Callable[[Any], Flow]) -> Flow:
    """The ``_safe`` walk: ``n = pos->next`` is loaded before the body runs."""
    seen: list[ListHead] = []
    yield "list_for_each_entry_safe:load"
    pos = deref(head.next, "list_for_each_entry_safe")
    nxt = deref(pos.next, "list_for_each_entry_safe") if pos is not head else head
    while pos is not head:
        _guard(seen, pos, "list_for_each_entry_safe")
        yield from body(_entry(pos, "list_for_each_entry_safe"))
        pos = nxt
        yield "list_for_each_entry_safe:load"
        if pos is not head:
            nxt = deref(pos.next, "list_for_each_entry_safe")


def ring(head: ListHead, limit: int = 10_000) -> list[ListHead] | None:
    """The entries of a well-formed ring (forward and backward agree), else None.

    Used by the oracle at quiescent points; never raises and never steps.
    """
    from ..machine.memory import peek

    out: list[ListHead] = []
    pos = peek(head, "next")
    prev = head
    while pos is not head:
        if not isinstance(pos, ListHead) or peek(pos, "prev") is not prev or len(out) > limit:
            return None
        out.append(pos)
        prev = pos
        pos = peek(pos, "next")
    if peek(head, "prev") is not prev:
        return None
    return out
