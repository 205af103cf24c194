"""The interpreters strategy: chunks run in a pool of subinterpreters of this process (Python 3.14+).

Data flow::

    caller --submit: pickle(func, items)--> tasks (queue) --> thread autopar-interp-N, which owns
           one subinterpreter: interp.call(run_chunk_here, blob) --> done (queue) --poll--> caller
    in the subinterpreter: run_chunk_here(blob) -> pickle of ("ok", results) | ("err", wrapped, results)

Only bytes and ``run_chunk_here`` (found by name) cross into a subinterpreter,
and only bytes come back: anything that fails to pickle or unpickle on either
side becomes a ``SerializationError`` for its chunk, never an exception that
CPython's ``InterpreterPoolExecutor`` would wait on forever (it waits for the
exception of a call whose arguments failed to load).

Each subinterpreter has its own GIL, so pure-Python CPU work runs in parallel
without starting processes; the function, items and results cross by pickle,
and the function must be importable there by module and name
(``_core._safety.interpreters_ship_problem``).  Extension modules without
subinterpreter support (NumPy among them) fail to import in a worker: the
call fails with that ``ImportError``.

Warning: like a thread, a running subinterpreter cannot be stopped.  After a
timeout or Ctrl-C the queued chunks are cancelled and the pool retires; the
running ones finish in the background.

This module is imported inside each subinterpreter (it holds
``run_chunk_here``), so at module level it imports the standard library and
layer 0 only, as ``_worker`` does.
"""

from __future__ import annotations

import pickle
import queue
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from .._errors import SerializationError, capture
from .._worker import ChunkFailed, run_chunk
from ._threads import QueuedPool

if TYPE_CHECKING:
    import concurrent.futures
    from collections.abc import Callable, Sequence

    from .._model import PlatformFacts, PoolSpec
    from .._types import Outcome

__all__ = ["InterpreterPool", "InterpreterStrategy", "prepare_here", "run_chunk_here", "started_executor"]

_PROTOCOL = pickle.HIGHEST_PROTOCOL
#: Seconds a new pool waits for its subinterpreters to be ready (a deadlock guard: they take about 0.1 s).
_READY_WAIT_S = 30.0


def _dumps_outcome(value: tuple[Any, ...]) -> bytes:
    try:
        return pickle.dumps(value, protocol=_PROTOCOL)
    except Exception as exc:
        msg = f"a result could not be pickled to return from the subinterpreter: {exc!r}"
        return pickle.dumps(("fail", capture(SerializationError(msg), check_pickle=True)), protocol=_PROTOCOL)


def run_chunk_here(blob: bytes) -> bytes:
    """In a subinterpreter: run the pickled ``(func, items, start, capture_errors)``; return the pickled outcome."""
    try:
        func, items, start, capture_errors = pickle.loads(blob)
    except ImportError as exc:  # a module that does not load in a subinterpreter: its own error says which
        return _dumps_outcome(("fail", capture(exc, check_pickle=True)))
    except Exception as exc:
        msg = f"the function or an item could not be unpickled in the subinterpreter: {exc!r}"
        return _dumps_outcome(("fail", capture(SerializationError(msg), check_pickle=True)))
    try:
        results = run_chunk(func, items, start, capture_errors=capture_errors, in_process=True)
    except ChunkFailed as failed:
        return _dumps_outcome(("err", failed.wrapped, failed.results))
    return _dumps_outcome(("ok", results))


def initialize_here(blob: bytes) -> bytes:
    """In a subinterpreter: run the pickled initializer; return b"" or the pickled error."""
    try:
        initializer, initargs = pickle.loads(blob)
        initializer(*initargs)
    except Exception as exc:
        return pickle.dumps(capture(exc, check_pickle=True), protocol=_PROTOCOL)
    return b""


def prepare_here(path: list[str], init: bytes | None) -> None:
    """In a subinterpreter: take the caller's import path, then run the pickled ``(initializer, initargs)``.

    The initializer travels pickled, so that it is unpickled only once its module can be found.
    """
    sys.path[:] = path
    if init is not None:
        initializer, initargs = pickle.loads(init)
        initializer(*initargs)


def started_executor(
    workers: int, initializer: Callable[..., object] | None, initargs: tuple[Any, ...]
) -> concurrent.futures.Executor:
    """An ``InterpreterPoolExecutor`` (for ``autopar.Executor``) whose every worker has started its subinterpreter.

    Its workers start on demand, a subinterpreter in about 0.1 s: calls submitted meanwhile would
    all wait, and ``shutdown(cancel_futures=True)`` would cancel every one.  One trivial call per
    worker starts them all; a failing initializer leaves the pool broken, as the next ``submit`` says.
    Each worker takes the caller's import path first (``prepare_here``), as spawn workers do.
    """
    from concurrent import futures  # not at module level: each subinterpreter imports this module

    init = None if initializer is None else _dumps("the initializer", (initializer, initargs))
    pool: concurrent.futures.Executor = futures.InterpreterPoolExecutor(  # type: ignore[attr-defined,unused-ignore]
        max_workers=workers, initializer=prepare_here, initargs=(list(sys.path), init)
    )
    futures.wait([pool.submit(int) for _ in range(workers)])
    return pool


def _check_spec(spec: PoolSpec) -> None:
    unsupported = {
        "item_timeout": spec.item_timeout,
        "shared": spec.shared_key,
        "max_tasks_per_worker": spec.max_tasks_per_worker,
    }
    for name, value in unsupported.items():
        if value is not None:
            msg = f"{name}= is not supported by the interpreters strategy (autopar cannot stop or recycle a subinterpreter); use a process strategy"
            raise ValueError(msg)


def _dumps(what: str, value: object) -> bytes:
    try:
        return pickle.dumps(value, protocol=_PROTOCOL)
    except Exception as exc:
        msg = f"{what} could not be pickled to send to a subinterpreter: {exc!r}"
        raise SerializationError(msg) from exc


class InterpreterPool(QueuedPool):
    """``workers`` threads, each running chunks in a subinterpreter of its own; outcomes of cancelled tasks are dropped."""

    def __init__(self, workers: int, spec: PoolSpec) -> None:
        from concurrent import interpreters  # type: ignore[attr-defined,unused-ignore]  # Python 3.14+

        _check_spec(spec)
        self.workers = workers
        init = None if spec.initializer is None else _dumps("the initializer", (spec.initializer, spec.initargs))
        self._tasks: queue.SimpleQueue[tuple[int, bytes, int, int] | None] = queue.SimpleQueue()
        self._done = queue.SimpleQueue()
        self._generation = 0
        self._pending = 0
        self._retired = False
        self._init_error: BaseException | None = None
        self._path = list(sys.path)
        ready = [threading.Event() for _ in range(workers)]
        started = time.perf_counter()
        self._threads = [
            threading.Thread(
                target=self._run, args=(interpreters, init, ready[i]), name=f"autopar-interp-{i}", daemon=True
            )
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()
        # Wait for every subinterpreter to be ready, as process pools wait for their workers: the cost
        # model learns the start-up measured here (``_pools.measured_startup_s``).
        deadline = started + _READY_WAIT_S
        waited = all(event.wait(max(deadline - time.perf_counter(), 0)) for event in ready)
        self.startup_s = time.perf_counter() - started if waited else None

    def _run(self, interpreters: Any, init: bytes | None, ready: threading.Event) -> None:
        try:
            interp = interpreters.create()
        except BaseException:
            ready.set()  # no interpreter: the pool stops waiting for this one
            raise
        try:
            # As spawn does for its children: the caller's import path, so its modules are found there too.
            interp.prepare_main(path=tuple(self._path))
            interp.exec("import sys; sys.path[:] = path; del path")
            _warm(interp)
            ready.set()
            if init is not None:
                error = _call(interp, initialize_here, init)
                # The pickled wrapper loads as the initializer's exception, its traceback text as __cause__.
                if error:
                    self._init_error = error if isinstance(error, BaseException) else pickle.loads(error)
            while (task := self._tasks.get()) is not None:
                task_id, blob, start, size = task
                generation = self._generation
                if self._init_error is not None:
                    outcome: Outcome = (task_id, None, self._init_error)
                else:
                    outcome = _outcome(task_id, _call(interp, run_chunk_here, blob), start, size)
                self._done.put((generation, outcome))
        finally:
            ready.set()
            interp.close()

    def capacity(self) -> int:
        return max(self.workers * 2 - self._pending, 0)

    def submit(
        self, task_id: int, func: Callable[[Any], Any], items: Sequence[Any], start: int, capture_errors: bool
    ) -> None:
        _check_function(func)
        last = start + len(items) - 1
        blob = _dumps(
            f"the function or an item of input positions {start}..{last}", (func, list(items), start, capture_errors)
        )
        self._pending += 1
        self._tasks.put((task_id, blob, start, len(items)))

    def shutdown(self) -> None:
        self._retired = True
        for _ in self._threads:
            self._tasks.put(None)
        for thread in self._threads:
            # Idle workers close their subinterpreter and exit at once; one stuck in user code is left to finish.
            thread.join(timeout=5)


def _warm(interp: Any) -> None:
    """Import this module in ``interp`` ahead of its first chunk; a failure shows when a chunk runs."""
    try:
        interp.exec(f"import {__name__}")
    except Exception:  # concurrent.interpreters.ExecutionFailed: _call reports it with the chunk
        return


def _call(interp: Any, func: Callable[[bytes], bytes], blob: bytes) -> bytes | BaseException:
    """``func(blob)`` in ``interp``; a failure to even start it there comes back as the exception."""
    try:
        return interp.call(func, blob)  # type: ignore[no-any-return]
    except Exception as exc:  # concurrent.interpreters.ExecutionFailed: autopar did not load there
        return exc


def _outcome(task_id: int, value: bytes | BaseException, start: int, size: int) -> Outcome:
    last = start + size - 1
    if isinstance(value, BaseException):
        msg = f"the chunk of input positions {start}..{last} could not start in a subinterpreter: {value}"
        error = SerializationError(msg)
        error.__cause__ = value
        return (task_id, None, error)
    try:
        result = pickle.loads(value)
    except Exception as exc:
        msg = f"a result of input positions {start}..{last} could not be unpickled in the caller: {exc!r}"
        error = SerializationError(msg)
        error.__cause__ = exc
        return (task_id, None, error)
    if result[0] == "ok":
        return (task_id, result[1], None)
    if result[0] == "err":
        # The wrapper unpickled as the rebuilt exception, with its traceback text as __cause__.
        return (task_id, result[2], result[1])
    return (task_id, None, result[1])


def _check_function(func: Callable[[Any], Any]) -> None:
    # Imported here, not at module level: each subinterpreter imports this module, and needs neither.
    from .._core._identity import unwrap_function
    from .._core._safety import interpreters_ship_problem

    target = unwrap_function(func)
    problem = interpreters_ship_problem(getattr(target, "__module__", None), getattr(target, "__qualname__", None))
    if problem is not None:
        msg = f"cannot send the function {func!r} to a subinterpreter: {problem}"
        raise SerializationError(msg)


class InterpreterStrategy:
    """Run chunks in subinterpreters of this process (Python 3.14 and later)."""

    name = "interpreters"
    uses_processes = False

    def create_pool(self, workers: int, facts: PlatformFacts, spec: PoolSpec) -> InterpreterPool:
        return InterpreterPool(workers, spec)
