"""The scheduler's preemption support: a task preempted at a point the scenario names
resumes on another CPU (where that CPU is idle or its task sleeps), its later steps run
there, and a spec fires only at its point."""

from __future__ import annotations

from typing import Any

from vmxfuzz.executor import start
from vmxfuzz.kernel.state import Config
from vmxfuzz.scenario import Scenario
from vmxfuzz.sched import Migrate, PreemptSpec, Task


def _machine(preempts: list[PreemptSpec]) -> Any:
    r = start(Scenario((), Config(cpus=2)), "patched")
    r.sched.preempts = preempts
    return r


def test_a_preempted_task_resumes_on_its_target_cpu() -> None:
    r = _machine([PreemptSpec(0, "t:point", 1, 1)])
    seen: list[tuple[str, int]] = []

    def flow() -> Any:
        k = r.k
        yield "t:point"
        to = k.sched.preempt_target(k.cpu)
        seen.append(("before", k.cpu))
        assert to == 1
        yield Migrate("t:switch", to, "t:resumed")
        seen.append(("after", k.cpu))
        yield "t:last"
        return 0

    done: list[Any] = []
    r.sched.submit(0, Task("t", flow, on_done=done.append))
    assert r.sched.run() == "idle"
    assert seen == [("before", 0), ("after", 1)]
    assert done == [0]
    lanes = [(e.cpu, e.label) for e in r.sched.trace]
    assert lanes == [(0, "t:point"), (0, "t:switch"), (1, "t:resumed"), (1, "t:last")]


def test_a_spec_fires_only_at_its_point_and_count() -> None:
    r = _machine([PreemptSpec(0, "t:point", 2, 1)])
    got: list[int | None] = []

    def flow() -> Any:
        k = r.k
        for _ in range(3):
            yield "t:point"
            got.append(k.sched.preempt_target(k.cpu))

    r.sched.submit(0, Task("t", flow))
    r.sched.run()
    assert got == [None, 1, None]


def test_a_migrated_task_resumes_over_a_sleeping_task() -> None:
    """The target CPU's task sleeps (a mutex): the migrated one runs there meanwhile,
    as the kernel's scheduler would run it, instead of waiting for that CPU to idle."""
    r = _machine([])
    flag: list[int] = []
    from vmxfuzz.sched import Wait

    def sleeper() -> Any:
        yield Wait("s:sleep", lambda: bool(flag), sleeping=True)
        yield "s:woken"

    def mover() -> Any:
        yield "m:start"
        yield Migrate("m:switch", 1, "m:resumed")
        yield "m:wake"
        flag.append(1)

    r.sched.submit(1, Task("s", sleeper))
    r.sched.submit(0, Task("m", mover))
    assert r.sched.run() == "idle"
    labels = [(e.cpu, e.label) for e in r.sched.trace]
    assert (1, "m:resumed") in labels and labels[-1] == (1, "s:woken")
