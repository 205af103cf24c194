"""``Executor``: a ``concurrent.futures.Executor`` whose strategy is forced or chosen by measurement.

A forced strategy delegates to the standard library, which already implements
the documented semantics of ``submit``, ``map`` and ``shutdown``::

    "serial"                        -> SerialExecutor: each call runs at once, in the caller
    "threads"                       -> ThreadPoolExecutor (threads named autopar-executor_N)
    "fork", "forkserver", "spawn"   -> ProcessPoolExecutor(mp_context=get_context(method))
    "interpreters"                  -> InterpreterPoolExecutor (Python 3.14 and later)

Under ``"auto"``::

    map(fn, *iterables)   -> autopar.imap: calibration, the cost model, autopar's shared pools
    submit(fn, ...)       -> per function, keyed by its code:
                               first calls   -> the executor's thread pool, timed (wall, thread CPU)
                               _PROBE_CALLS done -> the submit rule: threads or a process pool
                               later calls   -> the chosen pool; a call already submitted never moves

This module checks the options and delegates: ``_pools`` holds the
executor's own pools (``PoolSet``; not autopar's shared pools) and the future
that reports a dead process worker as ``WorkerCrashedError``, a subclass of
the ``BrokenProcessPool`` that ``ProcessPoolExecutor`` raises; ``_router``
times and routes auto's submitted calls (``SubmitRouter``); ``_map`` runs
``map`` both ways.
"""

from __future__ import annotations

import concurrent.futures
import sys
import time
from typing import TYPE_CHECKING, Any, ClassVar

from .._config import resolve
from .._core._safety import INTERPRETERS, PROCESS_METHODS, require_available, require_interpreters
from .._core._submit import choose_for_submit
from .._platform import probe_platform
from .._run import given_options
from .._warn import warn_unsafe
from ._buffered import check_buffersize
from ._map import map_auto, map_buffered, map_forced
from ._pools import PoolSet
from ._router import SubmitRouter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from concurrent.futures import Future

    from .._model import Options, PlatformFacts
    from .._types import P, T
    from ._router import SubmitRule

__all__ = ["Executor"]

_STRATEGIES = ("auto", "serial", "threads", *PROCESS_METHODS, INTERPRETERS)
#: The options of ``autopar.map`` an Executor honours (the others concern one map call only).
#: ``report`` records ``map`` under ``"auto"``, which runs through ``autopar.imap``.
_OPTIONS = frozenset(
    {"chunksize", "timeout", "initializer", "initargs", "max_tasks_per_worker", "errors", "progress", "report"}
)


class Executor(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` running on the strategy you force, or one autopar chooses.

    ``submit`` returns ordinary ``concurrent.futures.Future`` objects, so
    ``concurrent.futures.wait``, ``as_completed`` and ``asyncio.wrap_future``
    work as with the standard executors.  A forced strategy delegates to the
    standard library: ``"threads"`` to ``ThreadPoolExecutor``, a process start
    method to ``ProcessPoolExecutor`` with that context, ``"interpreters"`` to
    ``InterpreterPoolExecutor`` (Python 3.14+), ``"serial"`` runs each call at
    once in the caller.  Under ``"auto"``, ``map`` runs through
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
        strategy: ``"auto"``, ``"serial"``, ``"threads"``, ``"fork"``, ``"forkserver"``,
            ``"spawn"`` or ``"interpreters"``; ``AUTOPAR_STRATEGY`` overrides it.
        workers: threads or processes per pool (default: as autopar chooses for
            ``map``); ``AUTOPAR_WORKERS`` overrides it.
        **options: these options of ``autopar.map``: ``initializer``, ``initargs`` and
            ``max_tasks_per_worker`` (process pools, Python 3.11+) set up the
            workers; ``chunksize``, ``timeout``, ``errors`` and ``progress`` are
            defaults for ``map``.

    Raises:
        TypeError: an option not listed above, or a value of the wrong type.
        ValueError: a bad value, a strategy not listed above, a start
            method this platform does not have, or ``"interpreters"`` before Python 3.14
            (or with ``max_tasks_per_worker``).

    Developer note:
        ``_submit_rule`` is the pure rule auto's ``submit`` asks once a
        function's first calls are timed: ``(cpu_s, wall_s, calls, facts,
        shippable) -> str | None`` (see ``_router.SubmitRule``).  Tests inject
        their own by subclassing, ``class Scripted(Executor): _submit_rule =
        staticmethod(rule)``, rather than patching a module; it is not a
        supported option.
    """

    _submit_rule: ClassVar[SubmitRule] = staticmethod(choose_for_submit)

    def __init__(self, strategy: str = "auto", workers: int | None = None, **options: Any) -> None:
        self._opts = _resolved(strategy, workers, options)
        self._facts = probe_platform()
        _check_platform(self._opts, self._facts)
        auto = self._opts.strategy == "auto"
        self._pools = PoolSet(self._opts, self._facts, replace_broken=auto)
        self._router = SubmitRouter(
            type(self)._submit_rule,
            exclude_fork=self._opts.max_tasks_per_worker is not None,
        )

    @property
    def strategy(self) -> str:
        """The strategy in force: the one given, or ``AUTOPAR_STRATEGY``'s, or ``"auto"``."""
        return self._opts.strategy

    def __repr__(self) -> str:
        state = "shut down" if self._pools.is_shut_down else "open"
        return f"<autopar.Executor strategy={self.strategy!r} workers={self._opts.workers} {state}>"

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)``; return a ``concurrent.futures.Future`` for its result.

        Raises:
            RuntimeError: the executor was shut down.
            WorkerCrashedError: a forced process pool is broken by a dead worker.
        """
        choice = self.strategy if self.strategy != "auto" else self._router.route(fn)
        if choice is None:
            return self._pools.get("threads").submit(self._router.timed, fn, args, kwargs)
        return self._pools.submit(choice, fn, args, kwargs)

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        buffersize: int | None = None,
    ) -> Iterator[T]:
        """Like the builtin ``map(fn, *iterables)``, run on the executor; results come in input order.

        A forced strategy submits every call at once, as the standard executors do; ``"serial"``
        and ``"auto"`` run lazily.  With ``buffersize``, every strategy works as Python 3.14's
        ``Executor.map`` on every Python (under ``"auto"``, each call goes through ``submit``).

        Args:
            fn: a callable taking one argument per iterable.
            iterables: the arguments; the shortest one ends the map.
            timeout: seconds from this call until every result must be ready
                (default: the executor's ``timeout`` option).
            chunksize: calls sent to a process worker at once (default: the
                executor's ``chunksize`` option, else 1, or chosen under ``"auto"``).
            buffersize: calls (chunks on a process pool) submitted and not yet yielded, at most.

        Returns:
            An iterator over the results.

        Raises:
            TypeError, ValueError: a bad ``buffersize``, as in CPython 3.14.
            RuntimeError: the executor was shut down.
            TimeoutError: from the iterator, when a result is not ready in time.
            Exception: from the iterator, whatever ``fn`` raised for that item
                (unless the ``errors="return"`` option was given).
        """
        if not callable(fn):
            msg = f"fn must be callable, not {fn!r} ({type(fn).__name__})"
            raise TypeError(msg)
        check_buffersize(buffersize)
        timeout = self._opts.timeout if timeout is None else timeout
        chunksize = chunksize or self._opts.chunksize
        if buffersize is not None:
            submit = self.submit if self.strategy == "auto" else self._pools.get(self.strategy).submit
            return map_buffered(
                submit, fn, iterables, self._opts, timeout=timeout, chunksize=chunksize, buffersize=buffersize
            )
        if self.strategy == "auto":
            deadline = None if timeout is None else time.monotonic() + timeout
            self._pools.check_open()
            return map_auto(fn, iterables, self._opts, deadline=deadline, chunksize=chunksize)
        pool = self._pools.get(self.strategy)
        return map_forced(pool, fn, iterables, self._opts, timeout=timeout, chunksize=chunksize)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut down every pool the executor started, with the same arguments.

        Args:
            wait: wait for running and pending calls to finish and workers to exit.
            cancel_futures: cancel the calls that have not started.
        """
        self._pools.shutdown(wait=wait, cancel_futures=cancel_futures)

    def terminate_workers(self) -> None:
        """Shut down at once: cancel pending calls and send ``SIGTERM`` to every worker process.

        As ``ProcessPoolExecutor.terminate_workers()`` of Python 3.14, on every
        Python: the executor is shut down without waiting, the calls that have
        not started are cancelled, and the futures of calls that were running
        in a terminated process end with ``WorkerCrashedError`` (a
        ``BrokenProcessPool``).  Threads cannot be stopped from outside: under
        ``"threads"`` (and auto's thread pool) a running call finishes, and
        only the pending ones are cancelled; ``"serial"`` has nothing running.
        Auto's ``map`` runs on autopar's shared pools, which this leaves alone
        (``autopar.shutdown()`` stops them).
        """
        self._pools.stop_workers("terminate")

    def kill_workers(self) -> None:
        """As ``terminate_workers()``, with ``SIGKILL`` (``TerminateProcess`` on Windows): no cleanup runs."""
        self._pools.stop_workers("kill")


def _resolved(strategy: str, workers: int | None, options: dict[str, Any]) -> Options:
    """The executor's options: the arguments under ``AUTOPAR_*`` and ``config()``, checked."""
    unsupported = sorted(set(options) - _OPTIONS)
    if unsupported:
        msg = f"option(s) {', '.join(map(repr, unsupported))} not accepted by autopar.Executor; accepted: {', '.join(sorted(_OPTIONS))} (autopar.map and autopar.imap take every option)"
        raise TypeError(msg)
    opts = resolve(given_options(strategy=strategy, workers=workers, **options))
    if opts.strategy not in _STRATEGIES:
        msg = f"strategy={opts.strategy!r} is not accepted by autopar.Executor; accepted: {', '.join(map(repr, _STRATEGIES))} (registered strategies run through autopar.map and autopar.imap)"
        raise ValueError(msg)
    return opts


def _check_platform(opts: Options, facts: PlatformFacts) -> None:
    """Raise if the strategy cannot run here (warn once if it is unsafe); reject an option this Python lacks."""
    name = opts.strategy
    if name in PROCESS_METHODS:
        verdict = require_available(name, facts)
        if not verdict.safe:
            warn_unsafe(name, verdict.reason)
    elif name == INTERPRETERS:
        require_interpreters(facts)
        if opts.max_tasks_per_worker is not None:
            msg = f"max_tasks_per_worker={opts.max_tasks_per_worker!r} is not supported by strategy 'interpreters' (InterpreterPoolExecutor does not recycle its workers); use a process strategy"
            raise ValueError(msg)
    if opts.max_tasks_per_worker is not None and sys.version_info < (3, 11) and name not in ("serial", "threads"):
        msg = "max_tasks_per_worker needs Python 3.11 or later for autopar.Executor (ProcessPoolExecutor's max_tasks_per_child); use autopar.map or autopar.imap instead"
        raise ValueError(msg)


# The public class reports the public path: in reprs and tracebacks, and when pickled by reference.
Executor.__module__ = "autopar"
