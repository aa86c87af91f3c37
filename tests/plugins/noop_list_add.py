"""A plug-in identical to ``patched`` except for no-op steps (labels only) in the
hottest primitive, ``list_add``: one before each store and one after the publish.

Nothing a CPU or an NMI could observe changes, so the differential
``patched,tests/plugins/noop_list_add.py`` must report nothing on any scenario
(tests/test_anchors.py): anchored schedules keep their meaning across added steps.
"""

from __future__ import annotations

from typing import Any

from vmxfuzz.kernel.list import Flow, ListHead, deref

BASE = "patched"


def list_add(k: Any, new: ListHead, head: ListHead) -> Flow:
    yield "list_add:extra_a"
    yield "list_add:next_prev"
    nxt = deref(head.next, "list_add")
    deref(nxt, "list_add").prev = new
    yield "list_add:extra_b"
    yield "list_add:new_next"
    new.next = nxt
    yield "list_add:new_prev"
    new.prev = head
    yield "list_add:extra_c"
    yield "list_add:publish"
    head.next = new  # WRITE_ONCE
    yield "list_add:extra_d"
