"""What a child forked from this process must not inherit: held locks, the parent's processes and its forkserver.

A program may fork after using autopar (gunicorn or celery preloading, a
``multiprocessing`` fork pool, a daemon), and every fork worker autopar starts
is such a child.  ``os.register_at_fork`` handlers run in the child before any
other code, as CPython's ``concurrent.futures.thread`` resets its shutdown lock:

* ``fork_safe_lock`` gives a module lock that a child gets back released, even
  when another thread of the parent held it at the moment of the fork;
* ``forget_process`` removes one of the parent's processes from what
  ``multiprocessing`` believes are this process's children, so the child's
  exit hook neither joins (``AssertionError: can only join a child process``)
  nor terminates the parent's workers;
* the parent's forkserver is forgotten, so the child starts its own on first
  use (``os.waitpid`` on the parent's server fails in a child) and does not
  keep the parent's server alive once the parent is gone.

The standard library names used here are private to ``multiprocessing``; each
use is guarded so a Python that changes them only loses the cleanup.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["at_fork_in_child", "fork_safe_lock", "forget_process"]


def at_fork_in_child(func: Callable[[], None]) -> None:
    """Run ``func`` in every child forked from this process, before anything else runs there."""
    if hasattr(os, "register_at_fork"):  # absent on Windows, which has no fork
        os.register_at_fork(after_in_child=func)


def fork_safe_lock() -> threading.Lock:
    """A lock that a forked child gets back released, whoever held it in the parent."""
    lock = threading.Lock()
    reinit: Callable[[], None] | None = getattr(lock, "_at_fork_reinit", None)
    if reinit is not None:
        at_fork_in_child(reinit)
    return lock


def forget_process(process: Any) -> None:
    """Make ``multiprocessing`` in this (forked) child forget ``process``, a child of the parent."""
    children = getattr(sys.modules.get("multiprocessing.process"), "_children", None)
    if isinstance(children, set):
        children.discard(process)


def _forget_parent_forkserver() -> None:
    """Drop the parent's forkserver in a forked child: it is not this process's child."""
    module = sys.modules.get("multiprocessing.forkserver")
    server = getattr(module, "_forkserver", None)
    if server is None or getattr(server, "_forkserver_pid", None) is None:
        return
    alive_fd = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(alive_fd, int):
        # The server exits when every copy of this fd is closed: a child must not keep it alive.
        with contextlib.suppress(OSError):
            os.close(alive_fd)
    server._forkserver_address = None
    server._forkserver_alive_fd = None
    server._forkserver_pid = None
    lock = getattr(server, "_lock", None)
    reinit = getattr(lock, "_at_fork_reinit", None)
    if reinit is not None:
        reinit()


at_fork_in_child(_forget_parent_forkserver)
