"""``Executor``: a ``concurrent.futures.Executor`` whose strategy is forced or chosen by measurement.

A forced strategy delegates to the standard library, which already implements
the documented semantics of ``submit``, ``map`` and ``shutdown``::

    "serial"                        -> _SerialExecutor: each call runs at once, in the caller
    "threads"                       -> ThreadPoolExecutor (threads named autopar-executor_N)
    "fork", "forkserver", "spawn"   -> ProcessPoolExecutor(mp_context=get_context(method))

Under ``"auto"``::

    map(fn, *iterables)   -> autopar.imap: calibration, the cost model, autopar's shared pools
    submit(fn, ...)       -> per function, keyed by its code:
                               first calls   -> the executor's thread pool, timed (wall, thread CPU)
                               _PROBE_CALLS done -> _choose_for_submit: threads or a process pool
                               later calls   -> the chosen pool; a call already submitted never moves

The executor owns the pools it creates (they are not autopar's shared pools)
and ``shutdown`` shuts every one of them down.  A future of a process pool
reports a dead worker as ``WorkerCrashedError``, a subclass of the
``BrokenProcessPool`` that ``ProcessPoolExecutor`` raises.  That future, the
serial executor and ``map``'s adapters live in ``_pools``; auto's rule for
``submit`` lives in ``_submit_choice``.
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

import attrs

from .._config import resolve, validate_options
from .._main_module import process_context
from .._plan import warn_unsafe as _warn_unsafe
from .._platform import probe_platform
from .._run import _progress_callback, run_imap
from .._safety import PROCESS_METHODS, require_available
from .._serialize import ship_problem
from .._submit_choice import _PROBE_CALLS, _choose_for_submit, _identity, _pickles, _Probe
from ._pools import (
    _SHUTDOWN_MSG,
    _common_length,
    _crash_error,
    _LinkedFuture,
    _ReturnErrors,
    _SerialExecutor,
    _Star,
    _translated,
    _Zip,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable, Iterator
    from concurrent.futures import Future

    from .._model import Options
    from .._types import P, T

__all__ = ["Executor"]

_STRATEGIES = ("auto", "serial", "threads", *PROCESS_METHODS)
#: The options of ``autopar.map`` an Executor honours (the others concern one map call only).
_OPTIONS = frozenset({"chunksize", "timeout", "initializer", "initargs", "max_tasks_per_worker", "errors", "progress"})


class Executor(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` running on the strategy you force, or one autopar chooses.

    ``submit`` returns ordinary ``concurrent.futures.Future`` objects, so
    ``concurrent.futures.wait``, ``as_completed`` and ``asyncio.wrap_future``
    work as with the standard executors.  A forced strategy delegates to the
    standard library: ``"threads"`` to ``ThreadPoolExecutor``, a process start
    method to ``ProcessPoolExecutor`` with that context, ``"serial"`` runs each
    call at once in the caller.  Under ``"auto"``, ``map`` runs through
    ``autopar.imap`` (calibration and the cost model; it reads its input a
    bounded window ahead instead of submitting it all at once), and ``submit``
    times the first calls of each function on threads, then sends its later
    calls to a process pool when they are GIL-bound CPU work of at least a few
    milliseconds whose function, arguments and results pickle, and to threads
    otherwise.  No call ever runs twice.

    Warning:
        Under ``"auto"``, ``map`` uses autopar's shared pools, which outlive
        the executor until ``autopar.shutdown()`` or interpreter exit;
        ``submit`` uses the executor's own pools.  Process pools need the
        function, arguments and results to pickle (cloudpickle is not used).

    Args:
        strategy: ``"auto"``, ``"serial"``, ``"threads"``, ``"fork"``, ``"forkserver"``
            or ``"spawn"``; ``AUTOPAR_STRATEGY`` overrides it.
        workers: threads or processes per pool (default: as autopar chooses for
            ``map``); ``AUTOPAR_WORKERS`` overrides it.
        **options: these options of ``autopar.map``: ``initializer``, ``initargs`` and
            ``max_tasks_per_worker`` (process pools, Python 3.11+) set up the
            workers; ``chunksize``, ``timeout``, ``errors`` and ``progress`` are
            defaults for ``map``.

    Raises:
        TypeError: an option not listed above, or a value of the wrong type.
        ValueError: a bad value, a strategy that is not built in, or a start
            method this platform does not have.
    """

    def __init__(self, strategy: str = "auto", workers: int | None = None, **options: Any) -> None:
        unsupported = sorted(set(options) - _OPTIONS)
        if unsupported:
            msg = f"option(s) {', '.join(map(repr, unsupported))} not accepted by autopar.Executor; accepted: {', '.join(sorted(_OPTIONS))} (autopar.map and autopar.imap take every option)"
            raise TypeError(msg)
        given = {k: v for k, v in {"workers": workers, **options}.items() if v is not None}
        if strategy != "auto":
            given["strategy"] = strategy
        self._opts: Options = resolve(given)
        name = self._opts.strategy
        if name not in _STRATEGIES:
            msg = f"strategy={name!r} is not accepted by autopar.Executor; accepted: {', '.join(map(repr, _STRATEGIES))} (registered strategies run through autopar.map and autopar.imap)"
            raise ValueError(msg)
        self._facts = probe_platform()
        if name in PROCESS_METHODS:
            verdict = require_available(name, self._facts)
            if not verdict.safe:
                _warn_unsafe(name, verdict.reason)
        if (
            self._opts.max_tasks_per_worker is not None
            and sys.version_info < (3, 11)
            and name not in ("serial", "threads")
        ):
            msg = "max_tasks_per_worker needs Python 3.11 or later for autopar.Executor (ProcessPoolExecutor's max_tasks_per_child); use autopar.map or autopar.imap instead"
            raise ValueError(msg)
        self._lock = threading.Lock()
        self._shutdown = False
        self._pools: dict[str, concurrent.futures.Executor] = {}
        self._probes: dict[Hashable, _Probe] = {}
        self._choices: dict[Hashable, str] = {}
        self._timing = 0  # calls being timed right now: how many share the GIL

    @property
    def strategy(self) -> str:
        """The strategy in force: the one given, or ``AUTOPAR_STRATEGY``'s, or ``"auto"``."""
        return self._opts.strategy

    def __repr__(self) -> str:
        state = "shut down" if self._shutdown else "open"
        return f"<autopar.Executor strategy={self.strategy!r} workers={self._opts.workers} {state}>"

    # -- pools ----------------------------------------------------------------

    def _new_pool(self, name: str) -> concurrent.futures.Executor:
        opts = self._opts
        if name == "serial":
            return _SerialExecutor(opts.initializer, opts.initargs)
        if name == "threads":
            return concurrent.futures.ThreadPoolExecutor(
                max_workers=opts.workers or min(32, self._facts.cpu_count + 4),
                thread_name_prefix="autopar-executor",
                initializer=opts.initializer,
                initargs=opts.initargs,
            )
        extra: dict[str, Any] = {}
        if opts.max_tasks_per_worker is not None:
            extra["max_tasks_per_child"] = opts.max_tasks_per_worker
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=opts.workers or self._facts.cpu_count,
            mp_context=process_context(name),
            initializer=opts.initializer,
            initargs=opts.initargs,
            **extra,
        )

    def _pool(self, name: str, *, broken: concurrent.futures.Executor | None = None) -> concurrent.futures.Executor:
        """The executor's pool for ``name``, started on first use; a new one if it is still ``broken``."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError(_SHUTDOWN_MSG)
            pool = self._pools.get(name)
            if pool is None or pool is broken:
                pool = self._pools[name] = self._new_pool(name)
        if broken is not None and pool is not broken:
            broken.shutdown(wait=False)
        return pool

    def _submit_to(
        self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[Any]:
        if name not in PROCESS_METHODS:
            return self._pool(name).submit(fn, *args, **kwargs)
        pool = self._pool(name)
        try:
            inner = pool.submit(fn, *args, **kwargs)
        except BrokenProcessPool as exc:
            if self.strategy != "auto":
                raise _crash_error(exc, name, at_submit=True) from exc
            # Nothing was queued: auto replaces its broken pool (once, whichever thread sees it first).
            inner = self._pool(name, broken=pool).submit(fn, *args, **kwargs)
        return _LinkedFuture(inner, name, auto=self.strategy == "auto")

    # -- submit ---------------------------------------------------------------

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)``; return a ``concurrent.futures.Future`` for its result.

        Raises:
            RuntimeError: the executor was shut down.
            WorkerCrashedError: a forced process pool is broken by a dead worker.
        """
        if self.strategy != "auto":
            return self._submit_to(self.strategy, fn, args, kwargs)
        key = _identity(fn)
        with self._lock:
            choice = self._choices.get(key)
        if choice is None:
            return self._pool("threads").submit(self._timed, key, fn, args, kwargs)
        return self._submit_to(choice, fn, args, kwargs)

    def _timed(self, key: Hashable, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run one call on a pool thread, timing it for auto's choice."""
        with self._lock:
            self._timing += 1
            busy_start = self._timing
        wall_0, cpu_0 = time.perf_counter(), time.thread_time()
        try:
            result = fn(*args, **kwargs)
        finally:
            wall_s, cpu_s = time.perf_counter() - wall_0, time.thread_time() - cpu_0
            with self._lock:
                busy = (busy_start + self._timing) / 2
                self._timing -= 1
        # k threads of GIL-bound work each get about 1/k of the wall clock: scale back to the
        # CPU the call would have used alone, capped at its wall time.
        self._record(key, fn, (args, kwargs, result), min(cpu_s * busy, wall_s), wall_s)
        return result

    def _record(self, key: Hashable, fn: Callable[..., Any], data: object, cpu_s: float, wall_s: float) -> None:
        with self._lock:
            if key in self._choices:
                return
            probe = self._probes.setdefault(key, _Probe())
            if probe.calls >= _PROBE_CALLS:
                return  # enough calls; another thread is choosing
            probe.calls += 1
            probe.cpu_s += cpu_s
            probe.wall_s += wall_s
            calls = probe.calls
        shippable = _pickles(data)
        if calls == _PROBE_CALLS:
            shippable = shippable and ship_problem(fn, main_importable=self._facts.main_importable) is None
        with self._lock:
            probe.shippable = probe.shippable and shippable
            if calls < _PROBE_CALLS:
                return
        facts = probe_platform()
        if self._opts.max_tasks_per_worker is not None:
            # ProcessPoolExecutor rejects max_tasks_per_child with fork.
            facts = attrs.evolve(facts, start_methods=tuple(m for m in facts.start_methods if m != "fork"))
        choice = _choose_for_submit(probe.cpu_s, probe.wall_s, probe.calls, facts, probe.shippable)
        with self._lock:
            self._choices[key] = choice
            del self._probes[key]

    # -- map ------------------------------------------------------------------

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
    ) -> Iterator[T]:
        """Like the builtin ``map(fn, *iterables)``, run on the executor; results come in input order.

        A forced strategy submits every call at once, as the standard executors
        do; ``"serial"`` and ``"auto"`` run lazily, as the iterator is consumed.

        Args:
            fn: a callable taking one argument per iterable.
            iterables: the arguments; the shortest one ends the map.
            timeout: seconds from this call until every result must be ready
                (default: the executor's ``timeout`` option).
            chunksize: calls sent to a process worker at once (default: the
                executor's ``chunksize`` option, else 1, or chosen under ``"auto"``).

        Returns:
            An iterator over the results.

        Raises:
            RuntimeError: the executor was shut down.
            TimeoutError: from the iterator, when a result is not ready in time.
            Exception: from the iterator, whatever ``fn`` raised for that item
                (unless the ``errors="return"`` option was given).
        """
        if not callable(fn):
            msg = f"fn must be callable, not {fn!r} ({type(fn).__name__})"
            raise TypeError(msg)
        timeout = self._opts.timeout if timeout is None else timeout
        chunksize = chunksize or self._opts.chunksize
        end = None if timeout is None else time.monotonic() + timeout
        total = _common_length(iterables)
        if self.strategy == "auto":
            with self._lock:
                if self._shutdown:
                    raise RuntimeError(_SHUTDOWN_MSG)
            return self._map_auto(fn, iterables, end, chunksize)
        func = _ReturnErrors(fn) if self._opts.errors == "return" else fn
        results = self._pool(self.strategy).map(func, *iterables, timeout=timeout, chunksize=chunksize or 1)
        return self._following(results, total)

    def _following(self, results: Iterator[Any], total: int | None) -> Iterator[Any]:
        """``results`` with progress reported, a dead worker translated, and no reference kept to a result."""
        progress = _progress_callback(self._opts.progress, total)
        done = 0
        box: list[Any] = []
        end = object()
        try:
            while True:
                try:
                    box.append(next(results, end))
                except BrokenProcessPool as exc:
                    raise _translated(exc, self.strategy) from exc
                if box[-1] is end:
                    return
                done += 1
                if progress is not None:
                    progress(done, total)
                yield box.pop()  # the yield hands the only reference to the caller
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()

    def _map_auto(
        self, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...], end: float | None, chunksize: int | None
    ) -> Iterator[Any]:
        items: Iterable[Any]
        if len(iterables) == 1:
            func, items = fn, iterables[0]
            if isinstance(items, (str, bytes)):
                items = list(items)
        else:
            length = _common_length(iterables)
            func, items = _Star(fn), zip(*iterables, strict=False) if length is None else _Zip(iterables, length)
        opts = self._opts
        call = {
            "workers": opts.workers,
            "chunksize": chunksize,
            "initializer": opts.initializer,
            "initargs": opts.initargs if opts.initializer is not None else None,
            "max_tasks_per_worker": opts.max_tasks_per_worker,
            "errors": opts.errors,
            "progress": opts.progress,
        }
        call = validate_options({k: v for k, v in call.items() if v is not None})
        return self._auto_results(func, items, call, end)

    def _auto_results(
        self, func: Callable[[Any], Any], items: Iterable[Any], call: dict[str, Any], end: float | None
    ) -> Iterator[Any]:
        if end is not None:
            left = end - time.monotonic()
            if left <= 0:
                raise concurrent.futures.TimeoutError
            call["timeout"] = left
        results = run_imap(func, items, call, {}, ordered=True)
        box: list[Any] = []
        done = object()
        try:
            while True:
                waiting_since = time.monotonic()
                try:
                    box.append(next(results, done))
                except TimeoutError as exc:
                    # The same class on 3.11+; on 3.10 Executor.map's contract is concurrent.futures.TimeoutError.
                    if isinstance(exc, concurrent.futures.TimeoutError):
                        raise
                    raise concurrent.futures.TimeoutError(str(exc)) from exc
                if box[-1] is done:
                    return
                if end is not None and waiting_since < end < time.monotonic():
                    # The deadline passed while this result was awaited: it was not ready in time, even
                    # though imap could not stop an item it ran in the caller while calibrating.
                    msg = "Executor.map: a result was not ready before the timeout"
                    raise concurrent.futures.TimeoutError(msg)
                yield box.pop()  # the yield hands the only reference to the caller
        finally:
            results.close()  # type: ignore[attr-defined]

    # -- shutdown -------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut down every pool the executor started, with the same arguments.

        Args:
            wait: wait for running and pending calls to finish and workers to exit.
            cancel_futures: cancel the calls that have not started.
        """
        with self._lock:
            self._shutdown = True
            pools = list(self._pools.values())
        for pool in pools:
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)
