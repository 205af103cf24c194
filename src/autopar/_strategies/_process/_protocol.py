"""The messages between a process pool and its workers, one module imported by both ends.

Each message is one pickle per ``send_bytes`` on the worker's duplex pipe, and a
worker holds one task at a time::

    caller (ProcessPool)                                 worker (process_main)
      |                                                    |  runs the initializer
      | <-- Init(error) ---------------------------------- |  once; error None when it succeeded
      | --- Func(blob) ----------------------------------> |  when the function changes
      | --- Task(task_id, items, start, mode, timed) ----> |  slot.value = position of the running item
      |                                                    |
      |       mode "raise" or "capture" (batch):           |
      | <-- Ok(task_id, results) ------------------------- |  "capture": failed items hold a Failure
      | <-- Err(task_id, error, position, results) ------- |  "raise": the first failure, results before it
      |                                                    |
      |       mode "stream":                               |
      | <-- ItemDone(task_id, result) -------------------- |  at once, per item (a Failure if it raised)
      | <-- TaskDone(task_id) ---------------------------- |
      |                                                    |
      | <-- Err(task_id, error, None, []) ---------------- |  any mode: no usable function, or a task the
      |                                                    |  worker could not unpickle (task_id None)
      | <-- Err(task_id, error, position, []) ------------ |  any mode: func raised a BaseException that is
      |                                                    |  no Exception; the worker then exits
      | --- Stop() --------------------------------------> |  exit; a closed pipe does the same

The worker sends errors as ``ExceptionWithTraceback``; they unpickle in the
caller as the exception itself, with the worker's traceback as ``__cause__``.
A ``timed`` task (``report=True``) is answered with the chunk's ``ChunkTiming``
in its ``Ok``, ``Err`` or ``TaskDone``; untimed, those fields stay None.
A payload that names something of the caller's ``__main__`` (a function, a
class, an instance of one) goes by value with cloudpickle (``_pickling``):
autopar's workers never import the main module.  Standard library,
``autopar._errors`` and ``autopar._pickling`` only: every spawn and forkserver
worker imports this module.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from ..._errors import ExceptionWithTraceback
from ..._pickling import dumps

if TYPE_CHECKING:
    from ..._worker import ChunkTiming

__all__ = [
    "Err",
    "Func",
    "Init",
    "ItemDone",
    "Message",
    "Mode",
    "Ok",
    "Stop",
    "Task",
    "TaskDone",
    "decode",
    "encode",
    "raised",
]

#: How a worker runs a task: stop at the first failure, keep failures in the results, or send each item.
Mode = Literal["raise", "capture", "stream"]

#: An error as sent (the wrapper, in the worker) or as received (the rebuilt exception, in the caller).
SentError = ExceptionWithTraceback | BaseException


class Init(NamedTuple):
    """Worker to caller, once after start-up: the initializer's exception, or None.

    ``began`` and ``ready`` (``time.perf_counter()``, comparable across processes) say when the
    worker began running autopar code and when its initializer returned, for ``report=True``.
    """

    error: SentError | None
    began: float = 0.0
    ready: float = 0.0


class Func(NamedTuple):
    """Caller to worker: the function for the next tasks, pickled on its own.

    A worker that cannot unpickle ``blob`` can still read the message, and
    reports the failure on its next task.
    """

    blob: bytes


class Task(NamedTuple):
    """Caller to worker: run the function over ``items``, whose first input position is ``start``."""

    task_id: int
    items: list[Any]
    start: int
    mode: Mode
    #: The call is recorded (``report=True``): the outcome carries the chunk's ``ChunkTiming``.
    timed: bool = False


class Stop(NamedTuple):
    """Caller to worker: exit after the current task."""


class ItemDone(NamedTuple):
    """Worker to caller, stream mode: one item's result (a ``Failure`` if it raised)."""

    task_id: int
    result: Any


class TaskDone(NamedTuple):
    """Worker to caller, stream mode: every item of the task was sent."""

    task_id: int
    timing: ChunkTiming | None = None


class Ok(NamedTuple):
    """Worker to caller, batch modes: the results of the whole task."""

    task_id: int
    results: list[Any]
    timing: ChunkTiming | None = None


class Err(NamedTuple):
    """Worker to caller: the task failed at input ``position`` (None: before any item ran), after ``results``."""

    task_id: int | None
    error: SentError
    position: int | None
    results: list[Any]
    timing: ChunkTiming | None = None


#: Every message, either way.
Message = Init | Func | Task | Stop | ItemDone | TaskDone | Ok | Err


def encode(message: Message) -> bytes:
    """``message`` as bytes for ``send_bytes``; what the caller's ``__main__`` defined goes by value.

    Raises:
        Exception: whatever pickle (and then cloudpickle) raises for the payload.
    """
    return dumps(message)


def decode(data: bytes) -> Message:
    """The message in ``data``, as ``encode`` made it.

    Raises:
        Exception: whatever unpickling the payload raises.
    """
    message: Message = pickle.loads(data)
    return message


def raised(error: SentError) -> BaseException:
    """The exception to raise in the caller (a bare wrapper is rebuilt here)."""
    return error.rebuild() if isinstance(error, ExceptionWithTraceback) else error
