"""The seed's in-kernel list experiment, reproduced in the model (spec section 1).

An NMI at each store of ``list_add``/``list_del`` walks the list forward: the walk
never hangs or faults, never sees a bad entry, does not see the entry being added
until the publishing store, and still sees the entry being deleted until
``prev->next`` is rewritten.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from vmxfuzz.kernel.list import (
    LIST_POISON1,
    ListHead,
    WalkHang,
)
from vmxfuzz.kernel.state import Config, Kernel
from vmxfuzz.machine.errors import NullDeref, PoisonDeref
from vmxfuzz.machine.faults import FaultPlan
from vmxfuzz.oracle import Oracle
from vmxfuzz.sched import NmiSpec, Scheduler, Task
from vmxfuzz.variants import build

ADD_LABELS = ["list_add:next_prev", "list_add:new_next", "list_add:new_prev", "list_add:publish"]
DEL_LABELS = [
    "list_del:next_prev",
    "list_del:unlink",
    "list_del:poison_next",
    "list_del:poison_prev",
]


def _machine(nmis: list[NmiSpec]) -> tuple[Kernel, Scheduler]:
    oracle = Oracle()
    k = Kernel(Config(cpus=1), build("patched"), FaultPlan(), oracle)
    oracle.bind(k)
    sched = Scheduler(k, 1, [], nmis)
    k.sched = sched
    return k, sched


def _run(program: Any, nmi_label: str | None, nth: int = 1) -> tuple[list[list[str]], str]:
    """Run ``program`` on CPU 0 with an NMI whose handler records a forward walk."""
    nmis = [NmiSpec(0, nmi_label, nth, "walk")] if nmi_label else []
    k, sched = _machine(nmis)
    walks: list[list[str]] = []
    head = ListHead("list")
    nodes = {n: ListHead(n, owner=n) for n in ("e1", "e2", "e3")}

    def walk() -> Generator[Any, Any, None]:
        seen: list[str] = []

        def body(owner: str) -> Generator[Any, Any, None]:
            seen.append(owner)
            return
            yield

        yield from k.f.list_for_each_entry(k, head, body)
        walks.append(seen)

    sched.nmi_handler = lambda kind: walk
    sched.submit(0, Task("program", lambda: program(k, head, nodes)))
    ended = sched.run()
    return walks, ended


def _add_e1(k: Any, head: ListHead, nodes: dict[str, ListHead]) -> Any:
    yield from k.f.INIT_LIST_HEAD(k, head)
    yield from k.f.list_add(k, nodes["e1"], head)


def _del_e2(k: Any, head: ListHead, nodes: dict[str, ListHead]) -> Any:
    yield from k.f.INIT_LIST_HEAD(k, head)
    for n in ("e1", "e2", "e3"):
        yield from k.f.list_add(k, nodes[n], head)
    yield from k.f.list_del(k, nodes["e2"])


@pytest.mark.parametrize("label", ADD_LABELS)
def test_nmi_in_list_add_does_not_see_the_new_entry_until_publish(label: str) -> None:
    walks, ended = _run(_add_e1, label)
    assert ended == "idle"
    assert walks == [[]], "before the publishing store the new entry is invisible"


def test_after_list_add_the_entry_is_seen() -> None:
    def program(k: Any, head: ListHead, nodes: dict[str, ListHead]) -> Any:
        yield from _add_e1(k, head, nodes)
        yield "test:after"

    walks, _ = _run(program, "test:after")
    assert walks == [["e1"]]


@pytest.mark.parametrize("label", DEL_LABELS)
def test_nmi_in_list_del_sees_the_entry_until_unlink(label: str) -> None:
    walks, ended = _run(_del_e2, label)
    assert ended == "idle"
    unlinked = DEL_LABELS.index(label) > DEL_LABELS.index("list_del:unlink")
    assert walks == [["e3", "e1"] if unlinked else ["e3", "e2", "e1"]]


@pytest.mark.parametrize("label", ADD_LABELS)
@pytest.mark.parametrize("nth", [1, 2, 3])
def test_nmi_at_every_point_of_every_add_sees_a_prefix(label: str, nth: int) -> None:
    walks, ended = _run(_del_e2, label, nth)
    assert ended == "idle"
    (seen,) = walks
    added = ["e1", "e2", "e3"][: nth - 1]
    assert seen == list(reversed(added))


def test_walking_a_zeroed_head_is_a_null_dereference() -> None:
    k, _ = _machine([])
    gen = k.f.list_for_each_entry(k, ListHead("never-initialised"), lambda o: iter(()))
    with pytest.raises(NullDeref):
        for _ in gen:
            pass


def test_walking_through_a_deleted_entry_hits_the_poison() -> None:
    k, _ = _machine([])
    head, e1 = ListHead("list"), ListHead("e1", owner="e1")
    for g in (k.f.INIT_LIST_HEAD(k, head), k.f.list_add(k, e1, head), k.f.list_del(k, e1)):
        for _ in g:
            pass
    assert e1.next is LIST_POISON1
    gen = k.f.list_for_each_entry(k, e1, lambda o: iter(()))
    with pytest.raises(PoisonDeref):
        for _ in gen:
            pass


def test_a_ring_that_never_returns_to_its_head_is_a_hang() -> None:
    k, _ = _machine([])
    head, a, b = ListHead("list"), ListHead("a", owner="a"), ListHead("b", owner="b")
    head.next, a.next, b.next = a, b, a  # a <-> b cycle that skips the head

    def body(owner: str) -> Any:
        return
        yield

    with pytest.raises(WalkHang):
        for _ in k.f.list_for_each_entry(k, head, body):
            pass
