"""A worker's lifeline to its parent: when the parent is gone, the worker ends at once and quietly.

Runs in the child, first thing.  A worker whose parent died (SIGKILL, SIGTERM,
the out-of-memory killer) has nobody to send results to, so it stops its
running item rather than finish it and fail writing the result:

* on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` makes the kernel kill the
  worker when its parent ends.  The kernel means the *thread* that created the
  worker, so this is only asked for when that thread lives as long as the
  process (the parent's main thread, or the forkserver's);
* otherwise a daemon thread compares ``os.getppid()`` with the parent every
  ``WATCH_INTERVAL_S`` and ends the process when the worker was re-parented.

An idle worker also ends on end-of-file on its task pipe, and ``_child`` leaves
without a traceback when the pipe breaks under a running item.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

__all__ = ["WATCH_INTERVAL_S", "hold_lifeline"]

#: Seconds between two looks at the parent's pid, where the kernel cannot watch it.
WATCH_INTERVAL_S = 0.5
_PR_SET_PDEATHSIG = 1


def _kill_with_parent(parent: int) -> bool:
    """Ask Linux to SIGKILL this process when its parent ends; False where that cannot be had."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:
        os._exit(0)  # the parent ended before the request took effect
    return True


def _watch(parent: int) -> None:
    event = threading.Event()
    while not event.wait(WATCH_INTERVAL_S):
        if os.getppid() != parent:
            os._exit(0)  # nobody is left to read a result: stop the running item, print nothing


def hold_lifeline(*, kernel_may_watch: bool) -> None:
    """End this worker when its parent ends.

    Args:
        kernel_may_watch: the thread that started this worker lives as long as
            its process, so Linux's parent-death signal is safe to use.
    """
    parent = os.getppid()
    if kernel_may_watch and _kill_with_parent(parent):
        return
    threading.Thread(target=_watch, args=(parent,), name="autopar-lifeline", daemon=True).start()
