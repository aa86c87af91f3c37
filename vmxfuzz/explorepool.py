"""Programs explored on several processes, merged as a serial run would see them.

Why programs are the unit: each program's exploration has its own state cache and
sleep sets, so programs are independent and a program explored in a worker gives
exactly the states, runs and findings it gives in the parent.  The merge is
deterministic because results are consumed in program order (``imap``), whatever
order the workers finish in: the campaign records findings in the same order as a
serial run, so the same first reproducer wins every deduplication key.

Workers are forked (the built variants and plug-ins come with them), ignore SIGINT
(the parent owns the terminal and stops them), and ask the kernel to kill them when
the parent dies (``PR_SET_PDEATHSIG``), so no worker outlives an interrupted or
killed ``vmxfuzz explore``.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .explore import Bound, Explorer, Finding, Stats
from .scenario import Scenario

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Job:
    """One program to explore: everything a worker needs, picklable."""

    index: int
    program: Scenario
    variant: str
    bound: Bound
    deadline: float  # time.monotonic() of the parent: the clock is system-wide
    sleep_sets: bool = True


@dataclass
class Outcome:
    """What exploring one program gave (what the serial loop reads off its Explorer)."""

    index: int
    stats: Stats
    complete: bool
    findings: list[Finding] = field(default_factory=list)


def explore_job(job: Job) -> Outcome:
    ex = Explorer(
        job.program, job.variant, job.bound, deadline=job.deadline, sleep_sets=job.sleep_sets
    )
    done = ex.explore()
    return Outcome(job.index, ex.stats, done, ex.findings)


def _worker_init(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def explore_parallel(jobs: Iterable[Job], workers: int) -> Iterator[Outcome]:
    """Explore ``jobs`` on ``workers`` processes; outcomes in job order.  Closing the
    iterator (or an exception in the consumer) terminates the workers."""
    ctx = mp.get_context("fork")
    pool = ctx.Pool(workers, initializer=_worker_init, initargs=(os.getpid(),))
    try:
        yield from pool.imap(explore_job, jobs, chunksize=1)
        pool.close()
    finally:
        pool.terminate()
        pool.join()
