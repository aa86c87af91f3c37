"""The seed's in-kernel list experiment (cover letter of "KVM: VMX: Fix for kexec
VMCLEAR and VMXON cleanup"), re-run in the model (spec sections 1 and 3).

A task on CPU 0 builds a list the way the experiment does (``INIT_LIST_HEAD``, then
``list_add`` of e1, e2, e3, then ``list_del(e2)``), all through the variant's function
namespace ``k.f``.  An NMI placed before one step of ``list_add``/``list_del`` runs a
forward walk (``list_for_each_entry``) of the list and records what it finds.  The
seed's observations must hold at every step: the walk never hangs or faults, never
finds anything but e1/e2/e3, does not find the entry being added until the publishing
store ran, and still finds the entry being deleted until ``list_del:unlink`` ran.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest
from helpers import drain

from vmxfuzz.kernel.list import (
    LIST_POISON1,
    LIST_POISON2,
    ForeignHead,
    ListHead,
    WalkHang,
    ring,
)
from vmxfuzz.kernel.state import Config, Kernel
from vmxfuzz.labels import known_labels
from vmxfuzz.machine.errors import NullDeref, PoisonDeref
from vmxfuzz.machine.faults import FaultPlan
from vmxfuzz.oracle import Oracle
from vmxfuzz.sched import NmiSpec, Scheduler, Task
from vmxfuzz.variants import build

Flow = Generator[Any, Any, Any]

# Spec section 1: list_add is four stores, list_del two stores then the poisoning,
# INIT_LIST_HEAD two stores; each store is one labelled step, in the kernel's order.
ADD_LABELS = ("list_add:next_prev", "list_add:new_next", "list_add:new_prev", "list_add:publish")
DEL_LABELS = (
    "list_del:next_prev",
    "list_del:unlink",
    "list_del:poison_next",
    "list_del:poison_prev",
)
INIT_LABELS = ("INIT_LIST_HEAD:next", "INIT_LIST_HEAD:prev")
WALKS = ("list_for_each_entry", "list_for_each_entry_safe")
NAMES = ("e1", "e2", "e3")
# Marker steps of the test's own task: "the operation before this has completed".
AFTER_ADD, AFTER_DEL = "experiment:after_list_add", "experiment:after_list_del"


class Experiment:
    """One CPU running the experiment's task; an NMI handler walks the list."""

    def __init__(self, nmis: list[NmiSpec], walk: str = "list_for_each_entry") -> None:
        self.oracle = Oracle()
        self.k = Kernel(Config(cpus=1), build("patched"), FaultPlan(), self.oracle)
        self.sched = Scheduler(self.k, 1, [], nmis)
        self.k.sched = self.sched
        self.oracle.bind(self.k)
        self.head = ListHead("list")
        self.entries = {n: ListHead(n, owner=n) for n in NAMES}
        self.walk_name = walk
        self.walks: list[list[str]] = []  # one per NMI, in order; a list ends when a walk does
        self.sched.nmi_handler = lambda kind: self.walk

    def walk(self) -> Flow:
        """The NMI handler: ``list_for_each(tmp, list)`` printing e1/e2/e3 or kaboom."""
        seen: list[str] = []
        self.walks.append(seen)

        def body(owner: Any) -> Flow:
            seen.append(owner if owner in NAMES else "kaboom")
            return
            yield

        yield from getattr(self.k.f, self.walk_name)(self.k, self.head, body)

    def program(self) -> Flow:
        k, head = self.k, self.head
        yield from k.f.INIT_LIST_HEAD(k, head)
        for name in NAMES:
            yield from k.f.list_add(k, self.entries[name], head)
            yield AFTER_ADD
        yield from k.f.list_del(k, self.entries["e2"])
        yield AFTER_DEL

    def run(self, program: Callable[[], Flow] | None = None) -> str:
        self.sched.submit(0, Task("experiment", program or self.program))
        return self.sched.run()

    def labels(self) -> list[str]:
        return [e.label for e in self.sched.trace if e.context == "task"]


def _nmi(label: str, nth: int = 1) -> list[NmiSpec]:
    return [NmiSpec(0, label, nth, "walk")]


def _assert_clean(x: Experiment, ended: str) -> None:
    """Nothing hung, faulted or was flagged, and the task ran to its end."""
    assert ended == "idle"
    assert x.oracle.violations == []
    assert x.labels()[-1] == AFTER_DEL
    assert len(x.walks) == 1, "the NMI fired exactly once"


# ---- the experiment ----
def test_the_labels_are_the_spec_steps() -> None:
    """The model's list steps are exactly the stores of spec section 1 (so the
    parametrisations below cover every point an NMI can hit)."""
    labels = known_labels()
    for prefix, expected in (
        ("list_add:", ADD_LABELS),
        ("list_del:", DEL_LABELS),
        ("INIT_LIST_HEAD:", INIT_LABELS),
    ):
        assert {lab for lab in labels if lab.startswith(prefix)} == set(expected)
    x = Experiment([])
    assert x.run() == "idle"
    assert x.labels() == [
        *INIT_LABELS,
        *[lab for _ in NAMES for lab in (*ADD_LABELS, AFTER_ADD)],
        *DEL_LABELS,
        AFTER_DEL,
    ]
    assert ring(x.head) == [x.entries["e3"], x.entries["e1"]]


@pytest.mark.parametrize("walk", WALKS)
@pytest.mark.parametrize("nth", [1, 2, 3], ids=["add-e1", "add-e2", "add-e3"])
@pytest.mark.parametrize("label", ADD_LABELS)
def test_nmi_in_list_add_does_not_see_the_new_entry(label: str, nth: int, walk: str) -> None:
    x = Experiment(_nmi(label, nth), walk)
    _assert_clean(x, x.run())
    already_added = list(reversed(NAMES[: nth - 1]))  # list_add inserts at the head
    assert x.walks == [already_added], f"the walk must not find {NAMES[nth - 1]} yet"


@pytest.mark.parametrize("walk", WALKS)
@pytest.mark.parametrize("nth", [1, 2, 3], ids=["add-e1", "add-e2", "add-e3"])
def test_after_the_publish_store_the_new_entry_is_seen(nth: int, walk: str) -> None:
    x = Experiment(_nmi(AFTER_ADD, nth), walk)
    _assert_clean(x, x.run())
    assert x.walks == [list(reversed(NAMES[:nth]))]


@pytest.mark.parametrize("walk", WALKS)
@pytest.mark.parametrize("label", DEL_LABELS)
def test_nmi_in_list_del_sees_the_entry_until_unlink(label: str, walk: str) -> None:
    x = Experiment(_nmi(label), walk)
    _assert_clean(x, x.run())
    unlinked = DEL_LABELS.index(label) > DEL_LABELS.index("list_del:unlink")
    assert x.walks == [["e3", "e1"] if unlinked else ["e3", "e2", "e1"]]


@pytest.mark.parametrize("walk", WALKS)
def test_after_list_del_the_entry_is_gone(walk: str) -> None:
    x = Experiment(_nmi(AFTER_DEL), walk)
    _assert_clean(x, x.run())
    assert x.walks == [["e3", "e1"]]
    e2 = x.entries["e2"]
    assert (e2.next, e2.prev) == (LIST_POISON1, LIST_POISON2)


def test_the_seed_log_in_order() -> None:
    """The cover letter's log: NMI in list_add prints nothing; NMI in list_del (after
    ``e3.prev = &e1``, i.e. the first store) prints e3 e2 e1; after the unlink e3 e1."""
    x = Experiment(
        [
            NmiSpec(0, "list_add:publish", 1, "walk"),
            NmiSpec(0, "list_del:unlink", 1, "walk"),
            NmiSpec(0, AFTER_DEL, 1, "walk"),
        ]
    )
    ended = x.run()
    assert ended == "idle" and x.oracle.violations == []
    assert x.walks == [[], ["e3", "e2", "e1"], ["e3", "e1"]]


# ---- INIT_LIST_HEAD and what a walk of an uninitialised head does ----
def test_nmi_between_the_two_init_stores_sees_an_empty_list() -> None:
    """``WRITE_ONCE(h->next, h)`` comes first, so a forward walk is already safe."""
    x = Experiment(_nmi("INIT_LIST_HEAD:prev"))
    _assert_clean(x, x.run())
    assert x.walks == [[]]


def test_nmi_before_init_walks_a_zeroed_head_and_oopses() -> None:
    x = Experiment(_nmi("INIT_LIST_HEAD:next"))
    x.run()
    assert x.walks == [[]]
    (v,) = x.oracle.violations
    assert (v.invariant, v.label, v.context, v.cpu) == (
        "oops",
        "list_for_each_entry:load",
        "nmi",
        0,
    )
    assert "NULL" in v.detail
    assert AFTER_DEL not in x.labels(), "the oops in NMI context panics: the task never resumes"


@pytest.mark.parametrize("walk", WALKS)
def test_walking_a_never_initialised_head_is_a_null_dereference(walk: str) -> None:
    k = Experiment([]).k
    with pytest.raises(NullDeref):
        drain(getattr(k.f, walk)(k, ListHead("zeroed"), lambda owner: iter(())))


def test_walking_a_zeroed_per_cpu_list_in_a_task_is_an_oops() -> None:
    """Per-CPU data starts zeroed: ``loaded_vmcss_on_cpu`` before any hardware_enable."""
    x = Experiment([])
    k = x.k
    assert k.loaded_vmcss_on_cpu[0].next is None
    ended = x.run(lambda: k.f.list_for_each_entry(k, k.loaded_vmcss_on_cpu[0], lambda o: iter(())))
    assert ended == "idle"
    (v,) = x.oracle.violations
    assert (v.invariant, v.site, v.context) == ("oops", "list_for_each_entry:load", "task")


# ---- poison and corrupted rings ----
def _list_of(k: Any, *names: str) -> tuple[ListHead, dict[str, ListHead]]:
    head = ListHead("list")
    nodes = {n: ListHead(n, owner=n) for n in names}
    drain(k.f.INIT_LIST_HEAD(k, head))
    for n in names:
        drain(k.f.list_add(k, nodes[n], head))
    return head, nodes


def test_walking_on_from_a_deleted_entry_hits_the_poison() -> None:
    k = Experiment([]).k
    head, nodes = _list_of(k, "e1", "e2", "e3")
    drain(k.f.list_del(k, nodes["e2"]))
    assert ring(head) == [nodes["e3"], nodes["e1"]]
    with pytest.raises(PoisonDeref):
        drain(k.f.list_for_each_entry(k, nodes["e2"], lambda owner: iter(())))


def test_deleting_the_current_entry_in_a_plain_walk_hits_the_poison() -> None:
    """``list_for_each_entry`` loads ``pos->next`` after the body: after a
    ``list_del(pos)`` that is LIST_POISON1."""
    k = Experiment([]).k
    head, nodes = _list_of(k, "e1", "e2", "e3")
    seen: list[str] = []

    def delete_e2(owner: str) -> Flow:
        seen.append(owner)
        if owner == "e2":
            yield from k.f.list_del(k, nodes["e2"])

    with pytest.raises(PoisonDeref):
        drain(k.f.list_for_each_entry(k, head, delete_e2))
    assert seen == ["e3", "e2"]


def test_the_safe_walk_survives_deleting_the_current_entry() -> None:
    """``_safe`` loads ``n = pos->next`` before the body (vmclear_local_loaded_vmcss)."""
    k = Experiment([]).k
    head, nodes = _list_of(k, "e1", "e2", "e3")
    seen: list[str] = []

    def delete_each(owner: str) -> Flow:
        seen.append(owner)
        yield from k.f.list_del(k, nodes[owner])

    drain(k.f.list_for_each_entry_safe(k, head, delete_each))
    assert seen == ["e3", "e2", "e1"]
    assert ring(head) == []


def _corrupted_ring(k: Any) -> ListHead:
    """head -> a -> b -> a -> ...: a cycle that never comes back through the head."""
    head, nodes = _list_of(k, "b", "a")  # head -> a -> b -> head
    nodes["b"].next = nodes["a"]
    assert ring(head) is None
    return head


@pytest.mark.parametrize("walk", WALKS)
def test_a_cycle_that_skips_the_head_is_a_walk_hang(walk: str) -> None:
    k = Experiment([]).k
    head = _corrupted_ring(k)
    seen: list[str] = []

    def record(owner: str) -> Flow:
        seen.append(owner)
        return
        yield

    with pytest.raises(WalkHang):
        drain(getattr(k.f, walk)(k, head, record))
    assert seen == ["a", "b"], "each entry is visited once before the revisit is detected"


def test_a_walk_hang_in_a_task_is_reported_as_hang() -> None:
    x = Experiment([])
    k = x.k
    head = _corrupted_ring(k)
    x.run(lambda: k.f.list_for_each_entry(k, head, lambda owner: iter(())))
    (v,) = x.oracle.violations
    assert (v.invariant, v.site, v.context, v.cpu) == (
        "hang",
        "list_for_each_entry:load",
        "task",
        0,
    )


@pytest.mark.parametrize("walk", WALKS)
def test_a_walk_onto_another_lists_head_is_a_fault_not_a_crash(walk: str) -> None:
    """A link on two lists (only mutants make one) leads a walk to a foreign head;
    ``list_entry()`` of a head is garbage, so the model faults (an oops)."""
    k = Experiment([]).k
    mine, other = ListHead("mine"), ListHead("other")
    a = ListHead("a", owner="a")
    mine.next, mine.prev = a, a
    a.next, a.prev = other, mine  # a's next was rewritten by the other list's list_add
    other.next, other.prev = other, other
    seen: list[str] = []

    def record(owner: str) -> Flow:
        seen.append(owner)
        return
        yield

    with pytest.raises(ForeignHead):
        drain(getattr(k.f, walk)(k, mine, record))
    assert seen == ["a"]
