"""What runs inside a worker: one chunk of items, exceptions with their traceback, the process main loop.

Kept small and cheap to import (standard library and ``_errors`` only): spawn
and forkserver import it in every child before the first item.

A process worker talks to the caller over one duplex pipe, one task at a time::

    caller                                  worker (process_main)
      | -- ("init",) result of initializer <-- |  once, after start-up
      | -- ("func", blob) ------------------> |  when the function changes
      | -- (task_id, items, start, capture) -> |  slot.value = index of the running item
      | <- ("ok", task_id, results) ---------- |
      | <- ("err", task_id, exc, index) ------ |
      | -- None ----------------------------> |  exit

The shared ``slot`` holds the input position of the item being run, so the
caller can name the item when the process dies without a word (segfault,
``os._exit``, SIGKILL).
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import traceback
from typing import TYPE_CHECKING, Any

from ._errors import RemoteError, RemoteTraceback, SerializationError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "NATIVE_THREAD_VARS",
    "ExceptionWithTraceback",
    "capture",
    "inherited",
    "is_inside_worker",
    "process_main",
    "run_chunk",
]

#: Environment variables that size native thread pools (BLAS, OpenMP, vecLib, numexpr).
NATIVE_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "BLIS_NUM_THREADS",
)

_local = threading.local()
_in_process_worker = False

#: Functions a fork pool inherits instead of pickling (lambdas, closures), by token.
inherited: dict[int, Callable[[Any], Any]] = {}


def is_inside_worker() -> bool:
    """True inside an autopar worker: a process worker, or a thread running an autopar chunk."""
    return _in_process_worker or getattr(_local, "inside", False)


def _rebuild_exc(exc: BaseException, tb: str) -> BaseException:
    exc.__cause__ = RemoteTraceback(tb)
    return exc


class ExceptionWithTraceback:
    """A picklable pair of an exception and its traceback text, rebuilt as ``exc`` with ``__cause__``.

    An exception that does not survive a pickle round trip (its class cannot be
    rebuilt from its arguments) is replaced by ``RemoteError`` naming the type.
    """

    def __init__(self, exc: BaseException, tb: str, *, check_pickle: bool) -> None:
        if check_pickle:
            try:
                pickle.loads(pickle.dumps(exc))
            except Exception as why:
                name = f"{type(exc).__module__}.{type(exc).__qualname__}"
                msg = f"{name}: {exc} (the exception could not be sent back: {why!r})"
                exc = RemoteError(msg, name)
        self.exc = exc
        self.tb = tb

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_exc, (self.exc, self.tb)

    def rebuild(self) -> BaseException:
        """The exception with its traceback text attached, as the caller sees it."""
        return _rebuild_exc(self.exc, self.tb)


def _format(exc: BaseException) -> str:
    return "\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def capture(exc: BaseException, *, check_pickle: bool) -> ExceptionWithTraceback:
    """Wrap ``exc`` with its formatted traceback for the trip back to the caller."""
    return ExceptionWithTraceback(exc, _format(exc), check_pickle=check_pickle)


class ChunkFailed(Exception):
    """Internal: an item of a chunk raised; carries its offset in the chunk."""

    def __init__(self, wrapped: ExceptionWithTraceback, offset: int) -> None:
        super().__init__(offset)
        self.wrapped = wrapped
        self.offset = offset


def run_chunk(
    func: Callable[[Any], Any],
    items: Sequence[Any],
    start: int,
    *,
    capture_errors: bool,
    in_process: bool,
    slot: Any = None,
) -> list[Any]:
    """Apply ``func`` to ``items`` in order.

    With ``capture_errors`` a failing item's slot holds an ``ExceptionWithTraceback``
    and the rest go on; otherwise the first failure raises ``ChunkFailed``.
    """
    results: list[Any] = []
    _local.inside = True
    try:
        for offset, item in enumerate(items):
            if slot is not None:
                slot.value = start + offset
            try:
                results.append(func(item))
            except Exception as exc:
                wrapped = capture(exc, check_pickle=in_process)
                if not capture_errors:
                    raise ChunkFailed(wrapped, offset) from None
                # A process worker sends the wrapper (it pickles as the rebuilt exception).
                results.append(wrapped if in_process else wrapped.rebuild())
    finally:
        _local.inside = False
    return results


def limit_native_threads(count: int) -> None:
    """Limit BLAS/OpenMP pools to ``count`` threads, in the environment and in loaded libraries.

    A variable the user set in the environment is left as it is.
    """
    user_set = [var for var in NATIVE_THREAD_VARS if var in os.environ and os.environ[var] != str(count)]
    for var in NATIVE_THREAD_VARS:
        os.environ.setdefault(var, str(count))
    if not user_set and ("threadpoolctl" in sys.modules or "numpy" in sys.modules):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return
        threadpool_limits(count)


def _send(conn: Any, message: Any) -> None:
    try:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        task_id = message[1]
        msg = f"the result of an item could not be pickled to return to the caller: {exc!r}"
        err = capture(SerializationError(msg), check_pickle=True)
        data = pickle.dumps(("err", task_id, err, None), protocol=pickle.HIGHEST_PROTOCOL)
    conn.send_bytes(data)


def _initialize(conn: Any, init: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> bool:
    if init is None:
        conn.send_bytes(pickle.dumps(("init", None)))
        return True
    try:
        init(*initargs)
    except Exception as exc:
        conn.send_bytes(pickle.dumps(("init", capture(exc, check_pickle=True))))
        return False
    conn.send_bytes(pickle.dumps(("init", None)))
    return True


def process_main(
    conn: Any,
    slot: Any,
    native_threads: int | None,
    token: int | None,
    init: Callable[..., Any] | None,
    initargs: tuple[Any, ...],
) -> None:
    """The loop of a process worker: run tasks from ``conn`` until told to stop or the pipe closes."""
    global _in_process_worker
    _in_process_worker = True
    # The caller owns Ctrl-C: it terminates workers itself, so a worker never dies mid-result.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if native_threads is not None:
        limit_native_threads(native_threads)
    if not _initialize(conn, init, initargs):
        return
    func = inherited.get(token) if token is not None else None
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            message = pickle.loads(data)
        except Exception as exc:
            # The task id is unknown if the whole message is unreadable; the caller
            # maps a None id to the task this worker is running.
            msg = f"the worker could not unpickle its task: {exc!r}"
            _send(conn, ("err", None, capture(SerializationError(msg), check_pickle=True), None))
            continue
        if message is None:
            return
        if message[0] == "func":
            func = message[1]
            continue
        task_id, items, start, capture_errors = message
        assert func is not None
        try:
            results = run_chunk(func, items, start, capture_errors=capture_errors, in_process=True, slot=slot)
        except ChunkFailed as failed:
            _send(conn, ("err", task_id, failed.wrapped, start + failed.offset))
            continue
        _send(conn, ("ok", task_id, results))
