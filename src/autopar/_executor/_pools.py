"""The pools an ``autopar.Executor`` owns, and what it wraps around their futures.

Data flow::

    Executor.submit / map -> PoolSet.get(name): the pool for a strategy, started on first use
                               "serial"                      -> SerialExecutor, in the caller
                               "threads"                     -> ThreadPoolExecutor
                               "fork", "forkserver", "spawn" -> ProcessPoolExecutor
                               "interpreters"                -> InterpreterPoolExecutor (3.14+)
                          -> PoolSet.submit: a process pool's future wrapped in a LinkedFuture,
                             which reports a dead worker as WorkerCrashedError (crash_error)

``PoolSet`` keeps one pool per strategy name under its lock.  A process pool
broken by a dead worker stays broken for a forced strategy (as
``ProcessPoolExecutor`` does); under auto, ``get(name, broken=pool)`` starts a
new one in its place.  ``shutdown`` shuts every pool down and makes ``get``
raise ``RuntimeError`` from then on.  These pools are the executor's own, not
autopar's shared pools.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Literal

from .._core._safety import PROCESS_METHODS
from .._core._sizing import default_workers
from .._errors import WorkerCrashedError
from .._main_module import process_context
from .._pickling import for_workers
from .._strategies._interpreters import started_executor
from ._stop import stop_pool_workers

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from .._model import Options, PlatformFacts
    from .._types import P, T

__all__ = [
    "SHUTDOWN_MSG",
    "LinkedFuture",
    "MainFreeProcessPool",
    "PoolSet",
    "SerialExecutor",
    "crash_error",
    "translated",
]

#: The standard executors' message for a call after shutdown.
SHUTDOWN_MSG = "cannot schedule new futures after shutdown"


def crash_error(
    exc: BrokenProcessPool, method: str, *, at_submit: bool = False, replace_broken: bool = False
) -> WorkerCrashedError:
    """``WorkerCrashedError`` for a process pool broken by a dead worker, with ``exc`` as its cause."""
    what = "an earlier call" if at_submit else "this call"
    then = "the next call starts a new one" if replace_broken else "later calls fail too: create a new Executor"
    msg = (
        f"a {method} worker process of autopar.Executor died while {what} was running or pending "
        f"(likely a segmentation fault, os._exit() or the out-of-memory killer); the process pool is broken, {then}. "
        f"Cause: {exc}"
    )
    error = WorkerCrashedError(msg)
    error.__cause__ = exc
    return error


def translated(exc: BaseException, method: str, *, replace_broken: bool = False) -> BaseException:
    """``exc``, or ``WorkerCrashedError`` in its place if it is the standard library's ``BrokenProcessPool``."""
    if isinstance(exc, BrokenProcessPool) and not isinstance(exc, WorkerCrashedError):
        return crash_error(exc, method, replace_broken=replace_broken)
    return exc


class LinkedFuture(Future[Any]):
    """Follows a process pool's future, reporting a dead worker as ``WorkerCrashedError``.

    ``cancel()`` and ``running()`` ask the pool's future, so cancellation works as
    in ``ProcessPoolExecutor``; the outcome is copied over once that future is done.
    """

    def __init__(self, inner: Future[Any], method: str, *, replace_broken: bool) -> None:
        super().__init__()
        self._inner: Future[Any] | None = inner
        self._method = method
        self._replace_broken = replace_broken
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
                self.set_exception(translated(exc, self._method, replace_broken=self._replace_broken))
        self._inner = None  # the pool's future refers to this one through its callback: no cycle


class SerialExecutor(concurrent.futures.Executor):
    """Runs each call at once in the calling thread; ``submit`` returns a finished future."""

    def __init__(self, initializer: Callable[..., object] | None, initargs: tuple[Any, ...]) -> None:
        self._initializer = initializer
        self._initargs = initargs
        self._lock = threading.Lock()
        self._initialized = False
        self._shutdown = False

    def _start(self) -> None:
        if self._shutdown:
            raise RuntimeError(SHUTDOWN_MSG)
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


class MainFreeProcessPool(concurrent.futures.ProcessPoolExecutor):
    """A ``ProcessPoolExecutor`` whose workers never import ``__main__``: what names it goes by value.

    Its context's children start without the main module (``process_context``),
    so a function of ``__main__``, a lambda or a closure (and ``map``'s chunk
    function around one) is sent with cloudpickle; arguments and results go as
    ``ProcessPoolExecutor`` sends them.
    """

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return super().submit(for_workers(fn), *args, **kwargs)


def _new_pool(name: str, opts: Options, facts: PlatformFacts) -> concurrent.futures.Executor:
    workers = opts.workers or default_workers(name, facts)
    if name == "serial":
        return SerialExecutor(opts.initializer, opts.initargs)
    if name == "threads":
        return concurrent.futures.ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="autopar-executor",
            initializer=opts.initializer,
            initargs=opts.initargs,
        )
    if name == "interpreters":
        return started_executor(workers, opts.initializer, opts.initargs)
    extra: dict[str, Any] = {}
    if opts.max_tasks_per_worker is not None:
        extra["max_tasks_per_child"] = opts.max_tasks_per_worker
    return MainFreeProcessPool(
        max_workers=workers,
        mp_context=process_context(name),
        initializer=opts.initializer,
        initargs=opts.initargs,
        **extra,
    )


class PoolSet:
    """An executor's pools, one per strategy name, each started on first use.

    Args:
        opts: the executor's options: workers, initializer, ``max_tasks_per_worker``.
        facts: the platform, for the default number of workers.
        replace_broken: replace a process pool broken by a dead worker on its
            next use (auto) instead of failing every later call (a forced strategy).
    """

    def __init__(self, opts: Options, facts: PlatformFacts, *, replace_broken: bool) -> None:
        self._opts = opts
        self._facts = facts
        self._replace_broken = replace_broken
        self._lock = threading.Lock()
        self._pools: dict[str, concurrent.futures.Executor] = {}
        self._shut_down = False

    @property
    def is_shut_down(self) -> bool:
        """Whether ``shutdown`` was called."""
        return self._shut_down

    def check_open(self) -> None:
        """Raise ``RuntimeError`` as the standard executors do once ``shutdown`` was called."""
        with self._lock:
            if self._shut_down:
                raise RuntimeError(SHUTDOWN_MSG)

    def get(self, name: str, *, broken: concurrent.futures.Executor | None = None) -> concurrent.futures.Executor:
        """The pool for ``name``, started on first use; a new one if it is still ``broken``.

        Raises:
            RuntimeError: ``shutdown`` was called.
        """
        with self._lock:
            if self._shut_down:
                raise RuntimeError(SHUTDOWN_MSG)
            pool = self._pools.get(name)
            if pool is None or pool is broken:
                pool = self._pools[name] = _new_pool(name, self._opts, self._facts)
        if broken is not None and pool is not broken:
            broken.shutdown(wait=False)
        return pool

    def submit(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[Any]:
        """``fn(*args, **kwargs)`` on the pool for ``name``; a process pool's future is a ``LinkedFuture``.

        Raises:
            RuntimeError: ``shutdown`` was called.
            WorkerCrashedError: a forced process pool is broken by a dead worker.
        """
        if name not in PROCESS_METHODS:
            return self.get(name).submit(fn, *args, **kwargs)
        pool = self.get(name)
        try:
            inner = pool.submit(fn, *args, **kwargs)
        except BrokenProcessPool as exc:
            if not self._replace_broken:
                raise crash_error(exc, name, at_submit=True) from exc
            # Nothing was queued: replace the broken pool (once, whichever thread sees it first).
            inner = self.get(name, broken=pool).submit(fn, *args, **kwargs)
        return LinkedFuture(inner, name, replace_broken=self._replace_broken)

    def stop_workers(self, how: Literal["terminate", "kill"]) -> None:
        """Shut every pool down without waiting, cancelling pending calls; ``how`` ends its worker processes."""
        with self._lock:
            self._shut_down = True
            pools = list(self._pools.values())
        for pool in pools:
            stop_pool_workers(pool, how)

    def shutdown(self, *, wait: bool, cancel_futures: bool) -> None:
        """Shut down every pool started so far, with these arguments; later ``get`` calls raise."""
        with self._lock:
            self._shut_down = True
            pools = list(self._pools.values())
        for pool in pools:
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)
