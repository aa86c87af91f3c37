"""M22: ``list_del`` unlinks with its two stores swapped.

What changed: ``__list_del`` writes ``WRITE_ONCE(prev->next, next)`` (step
``list_del:unlink``) before ``next->prev = prev`` (step ``list_del:next_prev``); each
store keeps its label, the poisoning is unchanged.

Why plausible: the two stores of ``__list_del`` look independent, and for a forward
walker the unlink is the one that matters, so writing it first looks natural.

Equivalent: every per-CPU list is written only by its own CPU with IRQs off (task code
disables them, ``__loaded_vmcs_clear`` runs from an IPI or under
``smp_call_function_single``'s local IRQ save), so the only code that can see a
half-done ``list_del`` is an NMI on the same CPU: the crash walk.  It follows
``->next`` only, and sees the entry until ``prev->next`` is rewritten and not after --
in either order.  Since the seed VMCLEARs before ``list_del``, whether the walk sees
the entry does not matter anyway.  Nothing that reads ``->prev`` (``list_add``,
another ``list_del``, the oracle's ring check at quiescent points) can run in between.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import LIST_POISON1, LIST_POISON2, Flow, ListHead, deref

BASE = "patched"
MUTANT = {
    "id": "M22",
    "summary": "list_del: prev->next rewritten before next->prev (stores swapped)",
    "function": "list_del",
    "expect": None,
    "equivalent": "only NMI-context forward walks can see a half-done list_del",
}


def list_del(k: Any, entry: ListHead) -> Flow:
    # MUTATION: the two unlinking stores are swapped
    yield "list_del:unlink"
    nxt = deref(entry.next, "list_del")
    prv = deref(entry.prev, "list_del")
    prv.next = nxt  # WRITE_ONCE
    yield "list_del:next_prev"
    nxt.prev = prv
    yield "list_del:poison_next"
    entry.next = LIST_POISON1
    yield "list_del:poison_prev"
    entry.prev = LIST_POISON2
