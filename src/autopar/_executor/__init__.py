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
from typing import TYPE_CHECKING, Any

import attrs

from .._config import resolve
from .._plan import warn_unsafe as _warn_unsafe
from .._platform import probe_platform
from .._safety import PROCESS_METHODS, require_available
from .._serialize import ship_problem
from .._submit_choice import _PROBE_CALLS, _choose_for_submit, _identity, _pickles, _Probe
from ._map import map_auto, map_forced
from ._pools import PoolSet

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
        self._pools = PoolSet(self._opts, self._facts, replace_broken=name == "auto")
        self._lock = threading.Lock()
        self._probes: dict[Hashable, _Probe] = {}
        self._choices: dict[Hashable, str] = {}
        self._timing = 0  # calls being timed right now: how many share the GIL

    @property
    def strategy(self) -> str:
        """The strategy in force: the one given, or ``AUTOPAR_STRATEGY``'s, or ``"auto"``."""
        return self._opts.strategy

    def __repr__(self) -> str:
        state = "shut down" if self._pools.is_shut_down else "open"
        return f"<autopar.Executor strategy={self.strategy!r} workers={self._opts.workers} {state}>"

    # -- submit ---------------------------------------------------------------

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)``; return a ``concurrent.futures.Future`` for its result.

        Raises:
            RuntimeError: the executor was shut down.
            WorkerCrashedError: a forced process pool is broken by a dead worker.
        """
        if self.strategy != "auto":
            return self._pools.submit(self.strategy, fn, args, kwargs)
        key = _identity(fn)
        with self._lock:
            choice = self._choices.get(key)
        if choice is None:
            return self._pools.get("threads").submit(self._timed, key, fn, args, kwargs)
        return self._pools.submit(choice, fn, args, kwargs)

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
        if self.strategy == "auto":
            self._pools.check_open()
            deadline = None if timeout is None else time.monotonic() + timeout
            return map_auto(fn, iterables, self._opts, deadline=deadline, chunksize=chunksize)
        pool = self._pools.get(self.strategy)
        return map_forced(pool, fn, iterables, self._opts, timeout=timeout, chunksize=chunksize)

    # -- shutdown -------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut down every pool the executor started, with the same arguments.

        Args:
            wait: wait for running and pending calls to finish and workers to exit.
            cancel_futures: cancel the calls that have not started.
        """
        self._pools.shutdown(wait=wait, cancel_futures=cancel_futures)
