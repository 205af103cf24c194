"""What a dead or overdue worker means to the caller: the error, pinned to one chunk and, when known, one item.

A worker holds one task, so its death fails that chunk only.  The running item
comes from the worker's shared slot (batch modes) or from how many results it
streamed before dying (stream mode); the exit code is put into words, with the
signal name and its likely cause.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from ..._errors import WorkerCrashedError

if TYPE_CHECKING:
    from ..._types import Outcome
    from ._handle import WorkerProcess

__all__ = ["crash_outcome", "describe_exit", "timeout_outcome"]

_SIGNAL_HINTS = {"SIGSEGV": "a segmentation fault", "SIGKILL": "killed, possibly by the out-of-memory killer"}


def describe_exit(exitcode: int | None) -> str:
    """Words for a process exit code: the signal name for a negative code."""
    if exitcode is None:
        return "an unknown exit status"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        extra = f" ({_SIGNAL_HINTS[name]})" if name in _SIGNAL_HINTS else ""
        return f"signal {name}{extra}"
    return f"exit code {exitcode}"


def crash_outcome(worker: WorkerProcess, method: str, running: int, results: list[Any] | None) -> Outcome:
    """The outcome of the task ``worker`` held when its process died; the worker is stopped.

    ``running`` is the input position the worker was running, as far as the
    caller knows; ``results`` what the task delivered before the crash.
    """
    assert worker.task is not None
    task_id, start, size = worker.task
    worker.task = None
    exitcode = worker.reap()
    worker.stop(kill=True)
    # A slot still holding a position of an earlier task says nothing about this one.
    index: int | None = running
    if not start <= running < start + size:
        index = start if size == 1 else None
    where = f"item {index}" if index is not None else f"an item of positions {start}..{start + size - 1}"
    msg = f"a {method} worker died while running {where}, with {describe_exit(exitcode)}"
    return (task_id, results, WorkerCrashedError(msg, index, exitcode))


def timeout_outcome(worker: WorkerProcess, method: str, item_timeout: float) -> Outcome:
    """The outcome of a task whose current item ran past ``item_timeout``; the worker is killed."""
    assert worker.task is not None
    task_id, start, _ = worker.task
    worker.task = None
    index = start + len(worker.partial)
    worker.stop(kill=True)
    msg = f"item {index} ran longer than item_timeout={item_timeout} s; its {method} worker was stopped"
    return (task_id, worker.partial, TimeoutError(msg))
