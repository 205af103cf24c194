"""The two ways a pool reads its workers' outcomes: one message per task (batch) or one per item (stream).

A pool uses one receiver for its life, chosen by ``PoolSpec.stream``.  The
receiver says which ``Mode`` tasks run in, reads what a worker sent, and pins a
crash on the item that was running: batch mode learns it from the worker's
shared slot, stream mode from how many results arrived, and keeps those results.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..._errors import SerializationError, WorkerCrashedError
from ..._worker import Failure
from ._failures import crash_outcome
from ._handle import read_init
from ._protocol import Err, ItemDone, Message, Ok, TaskDone, decode, raised

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..._types import Outcome
    from ._handle import WorkerProcess
    from ._protocol import Mode

__all__ = ["BatchReceiver", "StreamReceiver", "booted_s"]


def booted_s(workers: Sequence[WorkerProcess], method: str) -> float | None:
    """The longest any of ``workers`` took from its start until it was ready, of those known ready; None if none is.

    Reads the ``Init`` of a worker its pool did not wait for once it is in the pipe, never
    waiting for one; a worker that died before sending it stays unread, for the pool to report.
    """
    for worker in workers:
        if worker.awaiting_init and worker.conn.poll():
            try:
                read_init(worker, method)
            except WorkerCrashedError:
                continue
            worker.awaiting_init = False
    booted = [worker.ready - worker.created for worker in workers if not worker.awaiting_init]
    return max(booted, default=None)


def _unpickle_error(method: str, exc: Exception) -> SerializationError:
    msg = f"a result from a {method} worker could not be unpickled in the caller: {exc!r}"
    return SerializationError(msg)


def _unexpected(message: Message) -> RuntimeError:
    return RuntimeError(f"a process worker sent an unexpected {type(message).__name__} message")


class BatchReceiver:
    """Tasks that report once: ``Ok`` with every result, or ``Err`` with the results before the failure."""

    def __init__(self, method: str) -> None:
        self._method = method

    def mode(self, capture_errors: bool) -> Mode:
        """How workers run a task: keep failures in the results, or stop at the first."""
        return "capture" if capture_errors else "raise"

    def read(self, worker: WorkerProcess) -> Outcome | None:
        """The outcome of the task ``worker`` holds.

        Raises:
            EOFError, OSError: the pipe closed: the worker died.
        """
        assert worker.task is not None
        task_id = worker.task[0]
        data = worker.conn.recv_bytes()
        try:
            message = decode(data)
        except Exception as exc:
            return (task_id, None, _unpickle_error(self._method, exc))
        if isinstance(message, (Ok, Err)) and message.timing is not None:
            worker.timing, worker.bytes_out = message.timing, len(data)
        if isinstance(message, Ok):
            return (task_id, message.results, None)
        if isinstance(message, Err):
            return (task_id, list(message.results), raised(message.error))
        raise _unexpected(message)

    def crashed(self, worker: WorkerProcess) -> Outcome:
        """The outcome of the task of a worker that died: its results are lost with it."""
        return crash_outcome(worker, self._method, worker.slot.value, None)


class StreamReceiver:
    """Tasks that send each item's result at once, so a crash or an item timeout keeps what was done."""

    def __init__(self, method: str) -> None:
        self._method = method

    def mode(self, capture_errors: bool) -> Mode:
        """Stream mode: failures always travel as ``Failure`` results."""
        return "stream"

    def read(self, worker: WorkerProcess) -> Outcome | None:
        """Collect the results ``worker`` sent; the outcome once its task is done, else None.

        Raises:
            EOFError, OSError: the pipe closed: the worker died.
        """
        assert worker.task is not None
        task_id = worker.task[0]
        while True:
            data = worker.conn.recv_bytes()
            if worker.recording:
                worker.bytes_out += len(data)
            try:
                message = decode(data)
            except Exception as exc:
                message = ItemDone(task_id, Failure(_unpickle_error(self._method, exc)))
            if isinstance(message, ItemDone):
                worker.partial.append(message.result)
                worker.item_started = time.monotonic()  # item_timeout counts from here for the next item
                if worker.conn.poll():
                    continue
                return None
            if isinstance(message, (TaskDone, Err)):
                worker.timing = message.timing
            if isinstance(message, TaskDone):
                return (task_id, worker.partial, None)
            if isinstance(message, Err):
                return (task_id, worker.partial, raised(message.error))
            raise _unexpected(message)

    def crashed(self, worker: WorkerProcess) -> Outcome:
        """The outcome of the task of a worker that died, with the results it streamed before."""
        assert worker.task is not None
        running = worker.task[1] + len(worker.partial)
        return crash_outcome(worker, self._method, running, worker.partial)
