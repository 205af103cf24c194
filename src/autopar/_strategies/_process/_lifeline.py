"""A worker's lifeline to its caller: when the caller is gone, the worker ends at once and quietly.

Runs in the child, first thing.  A worker whose caller died (SIGKILL, SIGTERM,
the out-of-memory killer) has nobody to send results to, so it stops its
running item rather than finish it and fail writing the result.  How it
watches depends on who its parent is (``LIFELINES``):

* ``"kernel"``: fork and spawn workers started by a thread that lives as long
  as its process (the main thread).  Linux's ``prctl(PR_SET_PDEATHSIG,
  SIGKILL)`` has the kernel kill the worker when its parent ends.  The kernel
  means the *thread* that created the worker, hence the condition; elsewhere
  than on Linux this falls back to ``"ppid"``.  ``import ctypes`` for that
  call takes 4-12 ms, which the first items should not wait for, and a
  short-lived worker should not pay at all (about 4 ms of CPU per worker:
  16 workers of a 0.6 s call computing on 2 CPUs lost 5% to it): a daemon
  thread first waits on a pidfd of the parent (``os.pidfd_open``, readable
  once it ends), and after ``KERNEL_AFTER_S`` asks the kernel, which also
  ends a worker whose item holds the GIL; the thread then stays, since Linux
  keeps the request per thread and drops it with a thread that ends.
* ``"ppid"``: fork and spawn workers started by another thread.  A daemon
  thread compares ``os.getppid()`` with the parent every ``WATCH_INTERVAL_S``
  and ends the process once the worker was re-parented.
* ``"sentinel"``: forkserver workers, whose parent is the forkserver, which
  itself lives as long as any worker holds its "alive" pipe.  A daemon thread
  waits on ``multiprocessing.parent_process().sentinel``, which the caller
  alone holds open.

An idle worker also ends on end-of-file on its task pipe, and ``_child`` leaves
without a traceback when the pipe breaks under a running item.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import select
import signal
import sys
import threading

__all__ = ["KERNEL_AFTER_S", "LIFELINES", "WATCH_INTERVAL_S", "hold_lifeline"]

#: How a worker notices its caller's death, by who its parent is (see the module docstring).
LIFELINES = ("kernel", "ppid", "sentinel")
#: Seconds between two looks at the parent's pid, where nothing else can watch it.
WATCH_INTERVAL_S = 0.5
#: Seconds a ``"kernel"`` worker watches its parent through a pidfd alone before it also asks the kernel
#: (``import ctypes`` costs the worker about 4 ms of CPU, which most cold calls' workers then never pay).
KERNEL_AFTER_S = 1.0
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


def _watch_pid(parent: int) -> None:
    event = threading.Event()
    while not event.wait(WATCH_INTERVAL_S):
        if os.getppid() != parent:
            os._exit(0)  # nobody is left to read a result: stop the running item, print nothing


def _parent_pidfd(parent: int) -> int | None:
    """A pidfd of the parent (Linux 5.3+), or None; ends this process if the parent is gone already."""
    try:
        fd = os.pidfd_open(parent)
    except (AttributeError, OSError):
        return None
    if os.getppid() != parent:
        os._exit(0)  # re-parented: the pid may now be another process's
    return fd


def _watch_kernel(parent: int) -> None:
    pidfd = _parent_pidfd(parent)
    if pidfd is not None:
        if select.select([pidfd], [], [], KERNEL_AFTER_S)[0]:
            os._exit(0)
        os.close(pidfd)  # the kernel watches from now on
    if not _kill_with_parent(parent):
        _watch_pid(parent)
    threading.Event().wait()  # the kernel's request lives as long as this thread


def _watch_sentinel(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _daemon(target: object, arg: int) -> None:
    threading.Thread(target=target, args=(arg,), name="autopar-lifeline", daemon=True).start()  # type: ignore[arg-type]


def hold_lifeline(lifeline: str) -> None:
    """End this worker when its caller ends, watched as ``lifeline`` (one of ``LIFELINES``) says."""
    if lifeline == "sentinel":
        sentinel = getattr(multiprocessing.parent_process(), "sentinel", None)
        if isinstance(sentinel, int):
            _daemon(_watch_sentinel, sentinel)
            return
    parent = os.getppid()
    _daemon(_watch_kernel if lifeline == "kernel" else _watch_pid, parent)
