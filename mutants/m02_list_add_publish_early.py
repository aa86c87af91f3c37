"""M02: ``list_add`` publishes the new entry before setting ``new->next``.

What changed: in ``__list_add`` the publishing store ``WRITE_ONCE(head->next, new)``
(step ``list_add:publish``) moves from last to second, before ``new->next = next`` and
``new->prev = head``.  Each store keeps its label.

Why plausible: the four stores of ``__list_add`` look symmetric and order-free to
single-threaded eyes; "link it in, then fill in its pointers" is a classic
lock-free-list mistake, and exactly what the seed's in-kernel list experiment was about.

What should catch it: an NMI panic between the publish and ``new->next``: the crash
walk (``crash_vmclear_local_loaded_vmcss``, which walks without any protection since
the seed) follows ``head->next`` to the new entry and then its stale ``next`` --
NULL for a link never used, ``LIST_POISON1`` after an earlier ``list_del`` -- and
oopses in the crash path (``oops``; the VMCSes after it are not cleared either).
Reproducer: ``mutants/kills/M02-*.json``.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow, ListHead, deref

BASE = "patched"
MUTANT = {
    "id": "M02",
    "summary": "list_add: head->next = new published before new->next is set",
    "function": "list_add",
    "expect": "oops",
    "equivalent": False,
}


def list_add(k: Any, new: ListHead, head: ListHead) -> Flow:
    yield "list_add:next_prev"
    nxt = deref(head.next, "list_add")
    deref(nxt, "list_add").prev = new
    yield "list_add:publish"
    head.next = new  # MUTATION: the publishing store was the last one
    yield "list_add:new_next"
    new.next = nxt
    yield "list_add:new_prev"
    new.prev = head
