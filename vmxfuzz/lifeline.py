"""Child processes die with their campaign.

A campaign killed with SIGKILL cannot clean up, so each child arranges its own end:
the kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG)``, Linux) kills a direct
child when its parent dies, and :func:`watch` covers what that cannot (libFuzzer's
``-fork`` children are grandchildren, started through a shell): a daemon thread that
ends the process once the campaign's process is gone.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None) -> None:
    """In a child: be killed when the parent dies; exit now if it already has.

    Safe in a ``preexec_fn`` (no allocation beyond ctypes' call, no locks)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: watch() still applies
        pass
    if parent is not None and os.getppid() != parent:
        os._exit(1)  # the parent died before the signal was armed


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def watch(pid: int, interval: float = 0.5) -> None:
    """End this process (``os._exit``) once process ``pid`` is gone."""

    def loop() -> None:
        while alive(pid):
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=loop, name="vmxfuzz-lifeline", daemon=True).start()
