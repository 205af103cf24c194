"""What ``autopar.Executor`` hands its calls to and wraps around them, besides the standard pools.

``_SerialExecutor`` runs each call at once in the caller (the ``"serial"``
strategy).  ``_LinkedFuture`` follows a ``ProcessPoolExecutor`` future and
reports a dead worker as ``WorkerCrashedError`` (``_crash_error`` and
``_translated`` build that error).  ``_Star``, ``_ReturnErrors`` and ``_Zip``
adapt ``map``'s function and iterables: picklable wrappers, so process
workers can run them, and a ``zip`` that keeps the input's length for
progress totals.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from .._errors import WorkerCrashedError

if TYPE_CHECKING:
    from .._types import P, T

_SHUTDOWN_MSG = "cannot schedule new futures after shutdown"


def _crash_error(
    exc: BrokenProcessPool, method: str, *, at_submit: bool = False, auto: bool = False
) -> WorkerCrashedError:
    what = "an earlier call" if at_submit else "this call"
    then = "the next call starts a new one" if auto else "later calls fail too: create a new Executor"
    msg = (
        f"a {method} worker process of autopar.Executor died while {what} was running or pending "
        f"(likely a segmentation fault, os._exit() or the out-of-memory killer); the process pool is broken, {then}. "
        f"Cause: {exc}"
    )
    error = WorkerCrashedError(msg)
    error.__cause__ = exc
    return error


def _translated(exc: BaseException, method: str, *, auto: bool = False) -> BaseException:
    if isinstance(exc, BrokenProcessPool) and not isinstance(exc, WorkerCrashedError):
        return _crash_error(exc, method, auto=auto)
    return exc


class _LinkedFuture(Future[Any]):
    """Follows a process pool's future, reporting a dead worker as ``WorkerCrashedError``.

    ``cancel()`` and ``running()`` ask the pool's future, so cancellation works as
    in ``ProcessPoolExecutor``; the outcome is copied over once that future is done.
    """

    def __init__(self, inner: Future[Any], method: str, *, auto: bool) -> None:
        super().__init__()
        self._inner: Future[Any] | None = inner
        self._method = method
        self._auto = auto
        inner.add_done_callback(self._follow)

    def cancel(self) -> bool:
        inner = self._inner
        if inner is None:
            return super().cancel()  # already done: returns False
        return inner.cancel()  # on success, _follow has already cancelled this future

    def running(self) -> bool:
        inner = self._inner
        return inner.running() if inner is not None else super().running()

    def _follow(self, inner: Future[Any]) -> None:
        if inner.cancelled():
            super().cancel()
            # Notify waiters at once: no executor will dequeue this future later.
            self.set_running_or_notify_cancel()
        else:
            exc = inner.exception()
            if exc is None:
                self.set_result(inner.result())
            else:
                self.set_exception(_translated(exc, self._method, auto=self._auto))
        self._inner = None  # the pool's future refers to this one through its callback: no cycle


class _SerialExecutor(concurrent.futures.Executor):
    """Runs each call at once in the calling thread; ``submit`` returns a finished future."""

    def __init__(self, initializer: Callable[..., object] | None, initargs: tuple[Any, ...]) -> None:
        self._initializer = initializer
        self._initargs = initargs
        self._lock = threading.Lock()
        self._initialized = False
        self._shutdown = False

    def _start(self) -> None:
        if self._shutdown:
            raise RuntimeError(_SHUTDOWN_MSG)
        with self._lock:
            if self._initialized or self._initializer is None:
                return
            self._initialized = True
            self._initializer(*self._initargs)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        self._start()
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            future.set_exception(exc)
        except BaseException as exc:
            future.set_exception(exc)
            raise  # Ctrl-C and sys.exit() in the caller's own thread stop the caller
        else:
            future.set_result(result)
        return future

    def map(
        self, fn: Callable[..., T], *iterables: Iterable[Any], timeout: float | None = None, chunksize: int = 1
    ) -> Iterator[T]:
        self._start()
        end = None if timeout is None else time.monotonic() + timeout

        def results() -> Iterator[T]:
            for args in zip(*iterables, strict=False):
                if end is not None and time.monotonic() >= end:
                    raise concurrent.futures.TimeoutError
                yield fn(*args)

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True


class _Star:
    """``fn(*args)`` as a function of one tuple, picklable when ``fn`` is (for spawn workers)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, args: tuple[Any, ...]) -> Any:
        return self.fn(*args)


class _ReturnErrors:
    """``fn(*args)``, with an exception returned as the result (``errors="return"``)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        try:
            return self.fn(*args)
        except Exception as exc:
            return exc


def _common_length(iterables: tuple[Iterable[Any], ...]) -> int | None:
    if iterables and all(isinstance(it, Sized) for it in iterables):
        return min(len(it) for it in iterables)  # type: ignore[arg-type]
    return None


class _Zip:
    """``zip(*iterables)`` that keeps the length of sized iterables, so imap reports progress totals."""

    def __init__(self, iterables: tuple[Iterable[Any], ...], length: int) -> None:
        self._iterables = iterables
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return zip(*self._iterables, strict=False)
