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


class Failure:
    """Marks an item whose function raised, in a result list (a function may return an exception)."""

    __slots__ = ("error",)

    def __init__(self, error: Any) -> None:
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:
        return Failure, (self.error,)

    def exception(self) -> BaseException:
        """The exception, with the worker's traceback attached as ``__cause__``."""
        error = self.error
        return error.rebuild() if isinstance(error, ExceptionWithTraceback) else error


class ChunkFailed(Exception):
    """Internal: an item of a chunk raised; carries its offset in the chunk."""

    def __init__(self, wrapped: ExceptionWithTraceback, offset: int, results: list[Any]) -> None:
        super().__init__(offset)
        self.wrapped = wrapped
        self.offset = offset
        self.results = results


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

    With ``capture_errors`` a failing item's slot holds a ``Failure`` and the
    rest go on; otherwise the first failure raises ``ChunkFailed``.
    """
    results: list[Any] = []
    append = results.append
    remaining = iter(items)
    _local.inside = True
    try:
        while True:
            try:
                # One try around the loop, not one per item: this is the hot path of tiny work.
                if slot is None:
                    for item in remaining:
                        append(func(item))
                else:
                    for item in remaining:
                        slot.value = start + len(results)
                        append(func(item))
                return results
            except Exception as exc:
                wrapped = capture(exc, check_pickle=in_process)
                if not capture_errors:
                    raise ChunkFailed(wrapped, len(results), results) from None
                # A process worker sends the wrapper (it pickles as the rebuilt exception).
                append(Failure(wrapped if in_process else wrapped.rebuild()))
    finally:
        _local.inside = False


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


def _send(conn: Any, message: tuple[Any, ...]) -> None:
    """Send ``message``; if its payload cannot be pickled, send a SerializationError in its place."""
    try:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        msg = f"the result of an item could not be pickled to return to the caller: {exc!r}"
        err = capture(SerializationError(msg), check_pickle=True)
        kind, task_id = message[0], message[1]
        fallback: tuple[Any, ...] = (
            ("item", task_id, Failure(err)) if kind == "item" else ("err", task_id, err, None, [])
        )
        data = pickle.dumps(fallback, protocol=pickle.HIGHEST_PROTOCOL)
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


def _stream_chunk(
    conn: Any, func: Callable[[Any], Any], task_id: int, items: Sequence[Any], start: int, slot: Any
) -> None:
    """Run a chunk sending each item's result (or exception) at once, so a crash loses nothing done."""
    _local.inside = True
    try:
        for offset, item in enumerate(items):
            slot.value = start + offset
            try:
                result: Any = func(item)
            except Exception as exc:
                result = Failure(capture(exc, check_pickle=True))
            _send(conn, ("item", task_id, result))
    finally:
        _local.inside = False
    _send(conn, ("done", task_id))


def process_main(
    conn: Any,
    slot: Any,
    native_threads: int | None,
    token: int | None,
    init: Callable[..., Any] | None,
    initargs: tuple[Any, ...],
    shared: tuple[int, Any] | None = None,
) -> None:
    """The loop of a process worker: run tasks from ``conn`` until told to stop or the pipe closes."""
    global _in_process_worker
    _in_process_worker = True
    # The caller owns Ctrl-C: it terminates workers itself, so a worker never dies mid-result.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if native_threads is not None:
        limit_native_threads(native_threads)
    if shared is not None:
        install_shared(*shared)
    if not _initialize(conn, init, initargs):
        return
    func = inherited.get(token) if token is not None else None
    func_error: ExceptionWithTraceback | None = None
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            message = pickle.loads(data)
        except Exception as exc:
            # The caller pins the error on the task this worker holds.
            msg = f"the worker could not unpickle its task: {exc!r}"
            _send(conn, ("err", None, capture(SerializationError(msg), check_pickle=True), None, []))
            continue
        if message is None:
            return
        if message[0] == "func":
            try:
                func, func_error = pickle.loads(message[1]), None
            except Exception as exc:
                msg = f"the worker could not unpickle the function: {exc!r}"
                func, func_error = None, capture(SerializationError(msg), check_pickle=True)
            continue
        task_id, items, start, mode = message
        if func is None:
            error = func_error or capture(SerializationError("the worker received no function"), check_pickle=True)
            _send(conn, ("err", task_id, error, None, []))
            continue
        if mode == "stream":
            _stream_chunk(conn, func, task_id, items, start, slot)
            continue
        try:
            results = run_chunk(func, items, start, capture_errors=mode == "capture", in_process=True, slot=slot)
        except ChunkFailed as failed:
            _send(conn, ("err", task_id, failed.wrapped, start + failed.offset, failed.results))
            continue
        _send(conn, ("ok", task_id, results))


# -- shared read-only data ------------------------------------------------------

#: Objects passed to every call with ``shared=``, by key: set in the caller (threads, serial,
#: and fork workers that inherit it) or installed by a spawned worker at start-up.
shared_objects: dict[int, Any] = {}


class SharedMemoryRef:
    """Names a ``multiprocessing.shared_memory`` segment holding bytes or a NumPy array."""

    def __init__(self, name: str, size: int, kind: str, dtype: str = "", shape: tuple[int, ...] = ()) -> None:
        self.name = name
        self.size = size
        self.kind = kind
        self.dtype = dtype
        self.shape = shape

    def attach(self) -> Any:
        """Map the segment and return a read-only view: a memoryview for bytes, an ndarray for NumPy."""
        from multiprocessing import shared_memory

        # Workers report to the caller's resource tracker, which already tracks the segment;
        # the caller unlinks it when the call ends.
        if sys.version_info >= (3, 13):
            segment = shared_memory.SharedMemory(name=self.name, track=False)
        else:
            segment = shared_memory.SharedMemory(name=self.name)
        _segments.append(segment)  # keep the mapping alive as long as the worker
        buf = segment.buf
        assert buf is not None
        view = buf[: self.size]
        if self.kind == "numpy":
            import numpy

            array = numpy.ndarray(self.shape, dtype=numpy.dtype(self.dtype), buffer=view)
            array.flags.writeable = False
            return array
        return view.toreadonly()


_segments: list[Any] = []


def install_shared(key: int, payload: Any) -> None:
    """Make ``payload`` (or the segment it names) the shared object for ``key`` in this worker."""
    shared_objects[key] = payload.attach() if isinstance(payload, SharedMemoryRef) else payload


class CallWithShared:
    """``func(item, shared)``: a picklable callable that finds the shared object in the worker by key."""

    def __init__(self, func: Callable[[Any, Any], Any], key: int) -> None:
        self.func = func
        self.key = key
        self.__qualname__ = getattr(func, "__qualname__", "CallWithShared")
        self.__module__ = getattr(func, "__module__", __name__)

    def __call__(self, item: Any) -> Any:
        return self.func(item, shared_objects[self.key])

    def __reduce__(self) -> tuple[Any, ...]:
        return CallWithShared, (self.func, self.key)
