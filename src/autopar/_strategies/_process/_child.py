"""The loop of a process worker: read a task from the pipe, run it, send its outcome.

Runs in the child; every spawn and forkserver worker imports this module, so it
and its imports stay cheap (standard library and small autopar modules, no
multiprocessing pool code, no psutil, no attrs).  The messages are those of
``_protocol``; the shared ``slot`` holds the input position of the running item,
so the caller can name it when the process dies without a word (segfault,
``os._exit``, SIGKILL).
"""

from __future__ import annotations

import pickle
import signal
import time
from typing import TYPE_CHECKING, Any

from ..._errors import ExceptionWithTraceback, SerializationError, capture
from ..._native import limit_native_threads
from ..._pickling import share_main_globals
from ..._shared import install_shared
from ..._worker import ChunkFailed, Failure, ItemClock, mark_process_worker, run_chunk
from ._lifeline import hold_lifeline
from ._protocol import Err, Func, Init, ItemDone, Message, Ok, Stop, Task, TaskDone, decode, encode

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["process_main"]


def _error(msg: str) -> ExceptionWithTraceback:
    return capture(SerializationError(msg), check_pickle=True)


def _send(conn: Any, message: ItemDone | TaskDone | Ok | Err) -> None:
    """Send ``message``; if its payload cannot be pickled, send a SerializationError in its place."""
    try:
        data = encode(message)
    except Exception as exc:
        err = _error(f"the result of an item could not be pickled to return to the caller: {exc!r}")
        fallback: Message = (
            ItemDone(message.task_id, Failure(err))
            if isinstance(message, ItemDone)
            else Err(message.task_id, err, None, [])
        )
        data = encode(fallback)
    conn.send_bytes(data)


def _initialize(conn: Any, init: Callable[..., Any] | None, initargs: tuple[Any, ...], began: float) -> bool:
    error = None
    if init is not None:
        try:
            share_main_globals(init)(*initargs)
        except Exception as exc:
            error = capture(exc, check_pickle=True)
    conn.send_bytes(encode(Init(error, began, time.perf_counter())))
    return error is None


def _stream_chunk(conn: Any, func: Callable[[Any], Any], task: Task, slot: Any, clock: ItemClock | None) -> None:
    """Run a chunk sending each item's result (or exception) at once, so a crash loses nothing done."""
    for offset, item in enumerate(task.items):
        slot.value = task.start + offset
        try:
            result: Any = func(item)
        except Exception as exc:
            result = Failure(capture(exc, check_pickle=True))
        _send(conn, ItemDone(task.task_id, result))
    _send(conn, TaskDone(task.task_id, None if clock is None else clock.timing(task.start)))


def _run_task(conn: Any, func: Callable[[Any], Any], task: Task, slot: Any) -> bool:
    """Run ``task`` and send its outcome; False when ``func`` raised a BaseException that is no Exception.

    A ``timed`` task runs through an ``ItemClock``, and its outcome carries the chunk's timing.
    """
    clock = ItemClock(func, task.start) if task.timed else None
    if clock is not None:
        func = clock
    try:
        if task.mode == "stream":
            _stream_chunk(conn, func, task, slot, clock)
            return True
        try:
            results = run_chunk(
                func, task.items, task.start, capture_errors=task.mode == "capture", in_process=True, slot=slot
            )
        except ChunkFailed as failed:
            timing = None if clock is None else clock.timing(task.start)
            _send(conn, Err(task.task_id, failed.wrapped, task.start + failed.offset, failed.results, timing))
            return True
    except BaseException as exc:  # SystemExit, KeyboardInterrupt...: never an item's result
        # Sent back so the call ends with it in the caller; then this worker ends, as it was asked.
        _send(conn, Err(task.task_id, capture(exc, check_pickle=True), slot.value, []))
        return False
    _send(conn, Ok(task.task_id, results, None if clock is None else clock.timing(task.start)))
    return True


def _load_function(message: Func) -> tuple[Callable[[Any], Any] | None, ExceptionWithTraceback | None]:
    """The function in ``message``, or why it could not be unpickled."""
    try:
        return share_main_globals(pickle.loads(message.blob)), None
    except Exception as exc:
        return None, _error(f"the worker could not unpickle the function: {exc!r}")


def _serve(conn: Any, slot: Any, func: Callable[[Any], Any] | None) -> None:
    """Run tasks from ``conn`` until told to stop or the pipe closes."""
    func_error = None
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            message = decode(data)
        except Exception as exc:
            # The caller pins the error on the task this worker holds.
            _send(conn, Err(None, _error(f"the worker could not unpickle its task: {exc!r}"), None, []))
            continue
        if isinstance(message, Stop):
            return
        if isinstance(message, Func):
            func, func_error = _load_function(message)
        elif isinstance(message, Task):
            if func is None:
                error = func_error or _error("the worker received no function")
                _send(conn, Err(message.task_id, error, None, []))
            elif not _run_task(conn, func, message, slot):
                return


def process_main(
    conn: Any,
    slot: Any,
    native_threads: int | None,
    inherit: Callable[[Any], Any] | None,
    init: Callable[..., Any] | None,
    initargs: tuple[Any, ...],
    shared: tuple[int, Any] | None = None,
    lifeline: str = "ppid",
) -> None:
    """The loop of a process worker: run tasks from ``conn`` until told to stop or the pipe closes.

    ``inherit`` is the function of a fork worker that inherits it (never pickled);
    other workers receive theirs in a ``Func`` message.  The worker ends with its
    caller, watched as ``lifeline`` says (``hold_lifeline``), and quietly when the
    pipe to the caller breaks: nobody is left to read a result or a traceback.
    """
    began = time.perf_counter()  # the end of start-up, in a report
    hold_lifeline(lifeline)
    mark_process_worker()
    # The caller owns Ctrl-C: it terminates workers itself, so a worker never dies mid-result.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if native_threads is not None:
        limit_native_threads(native_threads)
    if shared is not None:
        install_shared(*shared)
    try:
        if _initialize(conn, init, initargs, began):
            _serve(conn, slot, inherit)
    except (BrokenPipeError, ConnectionResetError):
        return
