"""``map``, ``imap`` and ``explain``: validate, resolve options, decide, dispatch, clean up.

One path serves every entry point::

    _Call(func, iterable, options)
      -> plan: nested / main-guard / forced strategy / cached measurements / calibrate
      -> decide (pure) -> Decision
      -> results of calibration items first, then the rest through a pool:
         a bounded window of chunks in flight, results reordered by input position,
         timeout and Ctrl-C terminate process workers before re-raising.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import TYPE_CHECKING, Any

import attrs

from . import _cache, _pools
from ._calibrate import calibrate
from ._config import resolve
from ._decide import decide
from ._dispatch import ChunkSizer, Dispatch, unwrap
from ._errors import SerializationError, UnsafeStrategyWarning, WorkerCrashedError
from ._model import Decision, Measurements, Options, PlatformFacts, PoolSpec
from ._platform import called_without_main_guard, probe_platform
from ._progress import make_progress
from ._safety import PROCESS_METHODS, auto_process_methods, require_available
from ._serialize import has_cloudpickle, ship_problem, shipping_error
from ._shared import SharedHandle
from ._strategies import get_strategy
from ._strategies._process import new_inherit_token
from ._worker import CallWithShared, ChunkFailed, run_chunk

if TYPE_CHECKING:
    from ._types import R, T

__all__ = ["explain", "given_options", "imap", "map", "run_imap", "run_map"]

logger = logging.getLogger("autopar")

#: Chunks in flight (or finished but not yet consumed) per worker: bounds read-ahead.
_WINDOW_PER_WORKER = 4

#: Seconds of work per batch when running serially in the caller.
_SERIAL_BATCH_S = 0.01
_NOTHING = object()
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _facts() -> PlatformFacts:
    """Platform facts for this call: the call site's main guard, not counting autopar's idle threads."""
    facts = probe_platform()
    own = _pools.idle_threads()
    unguarded = called_without_main_guard()
    if own or unguarded:
        facts = attrs.evolve(
            facts,
            python_threads=max(facts.python_threads - own, 1),
            native_threads=max(facts.native_threads - own, 1),
            main_unguarded=unguarded,
        )
    return facts


def _check_call(func: Any, iterable: Any) -> None:
    if not callable(func):
        msg = f"func must be callable, not {func!r} ({type(func).__name__})"
        raise TypeError(msg)
    if isinstance(iterable, (str, bytes)) or not isinstance(iterable, Iterable):
        msg = f"chunks must be an iterable of items (list, tuple, range, generator...), not {iterable!r} ({type(iterable).__name__})"
        raise TypeError(msg)


def given_options(**options: Any) -> dict[str, Any]:
    """The options a caller really gave: None means "not given", and so does ``strategy="auto"``."""
    return {k: v for k, v in options.items() if v is not None and not (k == "strategy" and v == "auto")}


def _warn_unsafe(method: str, reason: str) -> None:
    with _warned_lock:
        if (method, reason) in _warned:
            return
        _warned.add((method, reason))
    warnings.warn(f"strategy {method!r} is unsafe here: {reason}", UnsafeStrategyWarning, stacklevel=5)


def _default_workers(strategy: str, facts: PlatformFacts) -> int:
    if strategy == "serial":
        return 1
    if strategy == "threads":
        return min(32, facts.cpu_count + 4)
    return facts.cpu_count


def _forced_decision(func: Callable[..., Any], n_items: int | None, opts: Options, facts: PlatformFacts) -> Decision:
    """The decision for a strategy the user forced: check it can run here, pick workers and chunk size."""
    name = opts.strategy
    get_strategy(name)  # raises ValueError for an unknown name
    reasons = [
        f"strategy {name!r} forced by {'AUTOPAR_STRATEGY' if opts.strategy_source == 'env' else opts.strategy_source}"
    ]
    if name in PROCESS_METHODS:
        verdict = require_available(name, facts)
        if not verdict.safe:
            _warn_unsafe(name, verdict.reason)
            reasons.append(f"{name} is unsafe here: {verdict.reason}")
        if name != "fork":
            problem = ship_problem(func, main_importable=facts.main_importable)
            if problem is not None and not has_cloudpickle():
                raise shipping_error(func, problem, name)
    workers = 1 if name == "serial" else opts.workers or _default_workers(name, facts)
    if name == "dask":
        # Every thread of the cluster; with no cluster configured this raises, naming the ways to configure one.
        threads = _dask_threads(_dask_cluster(opts, required=True))
        workers = opts.workers or max(threads, 1)
    if n_items is not None:
        workers = max(1, min(workers, n_items))
    chunksize = opts.chunksize or (math.ceil(n_items / (workers * _WINDOW_PER_WORKER)) if n_items else 0)
    return Decision(strategy=name, workers=workers, chunksize=chunksize, reasons=tuple(reasons), forced=True)


def _item_timeout_decision(
    func: Callable[..., Any], n_items: int | None, opts: Options, facts: PlatformFacts
) -> Decision:
    """``item_timeout`` needs a worker it can stop: a process; no item runs in the caller first."""
    if opts.forced:
        if not get_strategy(opts.strategy).uses_processes:
            msg = (
                f"item_timeout={opts.item_timeout!r} needs a process strategy (fork, forkserver or spawn) "
                f"whose workers can be stopped; strategy {opts.strategy!r} cannot stop a running item"
            )
            raise ValueError(msg)
        return _forced_decision(func, n_items, opts, facts)
    shippable = ship_problem(func, main_importable=facts.main_importable) is None or has_cloudpickle()
    methods = [m for m in auto_process_methods(facts) if m == "fork" or shippable]
    if not methods:
        msg = (
            f"item_timeout={opts.item_timeout!r} needs a process strategy, and none can run this function here; "
            "move the function to module level or install cloudpickle"
        )
        raise ValueError(msg)
    forced = _forced_decision(func, n_items, attrs.evolve(opts, strategy=methods[0]), facts)
    reason = f"item_timeout needs workers that can be stopped: {methods[0]}, without calibrating in the caller"
    return attrs.evolve(forced, forced=False, reasons=(reason,))


def _serial_decision(reason: str) -> Decision:
    return Decision(strategy="serial", workers=1, chunksize=1, reasons=(reason,))


class _Call:
    """One ``map``/``imap`` call: its options, its plan and its execution."""

    def __init__(self, func: Callable[[Any], Any], iterable: Iterable[Any], opts: Options) -> None:
        self.func = func
        self.opts = opts
        self.n_items = len(iterable) if isinstance(iterable, Sized) else None
        self.source = iter(iterable)
        self.facts = _facts()
        self.deadline = None if opts.timeout is None else time.monotonic() + opts.timeout
        self.capture_errors = opts.errors == "return"
        self.prefix: list[Any] = []
        self.exhausted = self.n_items == 0
        self.key: str | None = None
        self.done = 0
        self.progress = make_progress(opts.progress, self.n_items)
        if self.progress is not None:
            self.progress(0, self.n_items)
        self.caller_initialized = False
        self.shared: SharedHandle | None = None
        self.call_func = func
        if opts.has_shared:
            self.shared = SharedHandle(opts.shared)
            self.call_func = CallWithShared(func, self.shared.key)  # type: ignore[arg-type]  # func(item, shared)

    # -- planning -------------------------------------------------------------

    def plan(self) -> Decision:
        """Choose how to run, calibrating on the first items when needed."""
        if self.exhausted:
            return _serial_decision("empty input")
        if self.facts.in_worker:
            return _serial_decision("nested call inside an autopar worker: runs serially")
        if self.facts.in_main_bootstrap:
            logger.warning(
                "autopar.map called while a worker process imports the main module: running serially. "
                'Put the call under `if __name__ == "__main__":` to run it in parallel.'
            )
            return _serial_decision(
                'called while a child process imports __main__ (no `if __name__ == "__main__":` guard)'
            )
        if self.opts.item_timeout is not None:
            return _item_timeout_decision(self.func, self.n_items, self.opts, self.facts)
        if self.opts.forced:
            return _forced_decision(self.func, self.n_items, self.opts, self.facts)
        return self._auto()

    def _auto(self) -> Decision:
        self.key = _cache.cache_key(self.func, self.n_items)
        cached = _cache.get(self.key)
        if cached is not None:
            measurements = _with_cluster(_refresh(cached, self.n_items), self.opts)
            decision = decide(measurements, self.facts, self.opts)
            logger.info("autopar (cached measurements): %s", decision)
            return decision
        return self.calibrated_decision(use_cache=True)

    def calibrated_decision(self, *, use_cache: bool) -> Decision:
        """Calibrate on the first items (kept as this call's first results), then decide."""
        # Calibration runs items in the caller, so the caller is set up like a worker first.
        initializer_s = self._initialize_caller()
        cal = calibrate(
            self.call_func,
            self.source,
            n_items=self.n_items,
            facts=self.facts,
            capture_errors=self.capture_errors,
            worker_startup_s=_pools.measured_startup_s(),
            warm_pools=_pools.warm_pools(),
            initializer_s=initializer_s,
            shared_bytes=self.shared.size_bytes() if self.shared is not None else 0,
            check_deadline=self._check_deadline,
            thread_probe=self.opts.initializer is None,
        )
        self.prefix = cal.results
        self.exhausted = cal.exhausted
        self._check_deadline()
        self._advance(len(cal.results))
        logger.debug("autopar calibration: %s", cal.measurements)
        if self.exhausted:
            return _serial_decision("the whole input ran during calibration")
        decision = decide(_with_cluster(cal.measurements, self.opts), self.facts, self.opts)
        if use_cache:
            _cache.put(self.key, cal.measurements)
        logger.info("%s", decision)
        return decision

    def _initialize_caller(self) -> float:
        """Run the initializer in the calling thread once; return the seconds it took."""
        if self.opts.initializer is None or self.caller_initialized:
            return 0.0
        started = time.perf_counter()
        self.opts.initializer(*self.opts.initargs)
        self.caller_initialized = True
        return time.perf_counter() - started

    def _advance(self, count: int) -> None:
        self.done += count
        if self.progress is not None and count:
            self.progress(self.done, self.n_items)

    # -- execution ------------------------------------------------------------

    def batches(self, decision: Decision, ordered: bool) -> Iterator[list[Any]]:
        """Yield every result: calibration items first, then the rest."""
        yield unwrap(self.prefix, self.capture_errors)
        self.prefix = []
        if self.exhausted:
            return
        if decision.strategy == "serial":
            yield from self._serial()
            return
        # Read the first item before starting a pool: an empty stream needs none.
        first = next(self.source, _NOTHING)
        if first is _NOTHING:
            return
        self.source = itertools.chain((first,), self.source)
        yield from self._pooled(decision, ordered)

    def _check_deadline(self) -> float | None:
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            msg = f"autopar call timed out after {self.opts.timeout} s"
            raise TimeoutError(msg)
        return left

    def _serial(self) -> Iterator[list[Any]]:
        """Run the rest in the caller, in batches of about 10 ms so the deadline is checked often."""
        self._initialize_caller()
        sizer = ChunkSizer(0, target_s=_SERIAL_BATCH_S)
        while True:
            self._check_deadline()
            batch = list(itertools.islice(self.source, sizer.size))
            if not batch:
                return
            started = time.perf_counter()
            try:
                results = run_chunk(
                    self.call_func, batch, self.done, capture_errors=self.capture_errors, in_process=False
                )
            except ChunkFailed as failed:
                yield unwrap(failed.results, self.capture_errors)
                raise failed.wrapped.rebuild()  # noqa: B904 - its __cause__ is the traceback text
            sizer.observe(len(batch), time.perf_counter() - started)
            self._advance(len(batch))
            yield unwrap(results, self.capture_errors)

    def _spec(self, decision: Decision) -> PoolSpec:
        uses_processes = get_strategy(decision.strategy).uses_processes
        native = None
        if uses_processes and decision.limit_native_threads:
            native = _native_threads_override() or max(1, self.facts.cpu_count // max(decision.workers, 1))
        inherit = token = None
        if decision.strategy == "fork" and ship_problem(self.func, main_importable=True) is not None:
            # A lambda or closure: fork workers inherit it instead of receiving it pickled.
            inherit, token = self.call_func, new_inherit_token()
        shared_key = shared_payload = None
        if self.shared is not None and uses_processes:
            shared_key = self.shared.key
            if decision.strategy not in ("fork",):
                shared_payload = self.shared.payload()
        opts = self.opts
        cluster = _dask_cluster(opts, required=True) if decision.strategy == "dask" else None
        return PoolSpec(
            initializer=opts.initializer,
            initargs=opts.initargs,
            initargs_key=_hashable_or_unique(opts.initargs),
            max_tasks_per_worker=opts.max_tasks_per_worker,
            native_threads=native,
            inherit=inherit,
            inherit_token=token,
            stream=uses_processes and (self.capture_errors or opts.retries > 0 or opts.item_timeout is not None),
            item_timeout=opts.item_timeout if uses_processes else None,
            shared_key=shared_key,
            shared_payload=shared_payload,
            cluster=cluster.reference if cluster is not None else None,
            cluster_key=cluster.key if cluster is not None else None,
        )

    def _pooled(self, decision: Decision, ordered: bool) -> Iterator[list[Any]]:
        spec = self._spec(decision)
        pool = _pools.acquire(decision.strategy, decision.workers, spec, self.facts)
        healthy = False
        try:
            dispatch = Dispatch(
                pool,
                self.call_func,
                self.source,
                self.done,
                chunksize=decision.chunksize,
                capture_errors=self.capture_errors,
                retries=self.opts.retries,
                retry_on=self.opts.retry_on,
                window_per_worker=_WINDOW_PER_WORKER,
                check_deadline=self._check_deadline,
                advance=self._advance,
            )
            yield from dispatch.chunks(ordered=ordered)
            healthy = True
        except GeneratorExit:
            pool.cancel()  # the consumer stopped early: drop in-flight work, keep the pool
            healthy = True
            raise
        except Exception as exc:
            pool.cancel()
            # A user exception leaves the pool sound; a crash, a timeout or a pickling failure do not.
            healthy = not isinstance(exc, (TimeoutError, OSError, WorkerCrashedError, SerializationError))
            raise
        except BaseException:
            pool.cancel()  # Ctrl-C: process workers are terminated before re-raising
            raise
        finally:
            # A pool built around one call's shared object or inherited function serves that call only.
            single_use = (
                spec.shared_key is not None or spec.inherit is not None or spec.initargs_key is not spec.initargs
            )
            _pools.release(pool, healthy=healthy and not single_use)

    def observe(self, decision: Decision, elapsed_s: float, items: int) -> None:
        """Tell the cache how long items really took, so a drifted entry is recalibrated."""
        if self.key is None or items <= 0 or decision.strategy == "serial":
            return
        per_item = elapsed_s * decision.workers / items
        if _cache.observe(self.key, per_item):
            logger.info("autopar: per-item time drifted; the next call recalibrates")

    def close(self) -> None:
        """Release the shared object of the call (and its shared-memory segment); close the progress bar."""
        if self.progress is not None:
            self.progress.close()
        if self.shared is not None:
            self.shared.close()
            self.shared = None


def _hashable_or_unique(value: Any) -> Any:
    """``value`` when it can key a pool; else a fresh object, so the pool serves this call only."""
    try:
        hash(value)
    except TypeError:
        return object()
    return value


def _native_threads_override() -> int | None:
    """``AUTOPAR_NATIVE_THREADS``: native threads per process worker, instead of CPUs // workers."""
    raw = os.environ.get("AUTOPAR_NATIVE_THREADS", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        msg = f"AUTOPAR_NATIVE_THREADS={raw!r} is not accepted; use a positive integer"
        raise ValueError(msg)
    return int(raw)


def _dask_cluster(opts: Options, *, required: bool = False) -> Any:
    """The Dask cluster the call may use, or None; ``distributed`` is imported only when one may be configured.

    Raises:
        ValueError: ``required`` and no cluster is configured.
    """
    if not required and opts.dask is None and "distributed" not in sys.modules:
        return None
    from ._strategies import _dask

    return _dask.require_cluster(opts.dask) if required else _dask.find_cluster(opts.dask)


def _dask_threads(cluster: Any) -> int:
    from ._strategies import _dask

    return _dask.cluster_threads(cluster.client)


def _with_cluster(measurements: Measurements, opts: Options) -> Measurements:
    """The measurements with the facts of the configured Dask cluster, probed once per cluster, if there is one."""
    try:
        cluster = _dask_cluster(opts)
        if cluster is None:
            return measurements
        from ._strategies import _dask

        facts = _dask.probe_cluster(cluster.client)
    except (OSError, TimeoutError) as exc:
        logger.warning("autopar: the Dask cluster is unreachable, deciding without it: %s", exc)
        return measurements
    return attrs.evolve(measurements, cluster=facts)


def _refresh(cached: Measurements, n_items: int | None) -> Measurements:
    """Cached measurements for a new call: its length, no sampled items, today's warm pools and start-up costs."""
    return attrs.evolve(
        cached,
        n_items=n_items,
        sampled=0,
        warm_pools=_pools.warm_pools(),
        worker_startup_s={**cached.worker_startup_s, **_pools.measured_startup_s()},
    )


#: The progress reporter factory, also used by the Executor.
_progress_callback = make_progress


def _run(
    func: Callable[[Any], Any], iterable: Iterable[Any], opts: Options, ordered: bool
) -> tuple[_Call, Decision, Iterator[Any]]:
    call = _Call(func, iterable, opts)
    try:
        decision = call.plan()
    except BaseException:
        call.close()
        raise
    return call, decision, call.batches(decision, ordered)


def map(
    func: Callable[[T], R],
    chunks: Iterable[T],
    *,
    strategy: str = "auto",
    workers: int | None = None,
    chunksize: int | None = None,
    timeout: float | None = None,
    **options: Any,
) -> list[R]:
    """Apply ``func`` to every item of ``chunks`` in parallel; return the results in input order.

    autopar measures the first items (each item still runs exactly once) and
    picks serial, threads or a process pool, with the worker count and chunk
    size; ``strategy`` forces one instead.

    Args:
        func: a callable of one argument.
        chunks: any iterable of items (list, tuple, range, generator).
        strategy: ``"auto"``, ``"serial"``, ``"threads"``, ``"fork"``, ``"forkserver"``,
            ``"spawn"`` or a registered name; ``AUTOPAR_STRATEGY`` overrides it.
        workers: how many workers (default: chosen); ``AUTOPAR_WORKERS`` overrides it.
        chunksize: items per task sent to a worker (default: chosen).
        timeout: seconds for the whole call; then ``TimeoutError`` and process workers are stopped.
        **options: ``errors``, ``progress``, ``initializer``, ``initargs``, ``max_tasks_per_worker``.

    Returns:
        ``[func(x) for x in chunks]``, computed in parallel.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
        TimeoutError: ``timeout`` expired.
        WorkerCrashedError: a worker process died (the item index and signal are in the message).
        SerializationError: an object could not cross to a worker process.
        Exception: the first exception raised by ``func``, with its own type, and the
            worker's traceback as ``__cause__``.
    """
    given = given_options(strategy=strategy, workers=workers, chunksize=chunksize, timeout=timeout, **options)
    return run_map(func, chunks, given, {})


def run_map(func: Callable[[T], R], chunks: Iterable[T], call: dict[str, Any], decorator: dict[str, Any]) -> list[R]:
    """``map`` with the call's and a decorator's options kept apart for precedence."""
    _check_call(func, chunks)
    opts = resolve(call, decorator)
    started = time.perf_counter()
    run, decision, batches = _run(func, chunks, opts, ordered=True)
    out: list[R] = []
    try:
        for batch in batches:
            out.extend(batch)
    finally:
        run.close()
    run.observe(decision, time.perf_counter() - started, len(out))
    return out


def imap(
    func: Callable[[T], R],
    iterable: Iterable[T],
    *,
    ordered: bool = True,
    strategy: str = "auto",
    workers: int | None = None,
    chunksize: int | None = None,
    timeout: float | None = None,
    **options: Any,
) -> Iterator[R]:
    """Lazily apply ``func`` to every item, reading the input only a bounded window ahead.

    At most a few chunks per worker are read ahead of what the caller has
    consumed, so an endless generator runs in bounded memory.  With
    ``ordered=False`` results come as they complete.  Options are those of
    ``map``; ``timeout`` covers the whole iteration.  Closing the iterator
    early cancels the work in flight.
    """
    given = given_options(strategy=strategy, workers=workers, chunksize=chunksize, timeout=timeout, **options)
    return run_imap(func, iterable, given, {}, ordered=ordered)


def run_imap(
    func: Callable[[T], R], iterable: Iterable[T], call: dict[str, Any], decorator: dict[str, Any], *, ordered: bool
) -> Iterator[R]:
    """``imap`` with the call's and a decorator's options kept apart for precedence."""
    _check_call(func, iterable)
    opts = resolve(call, decorator)
    return _lazy(func, iterable, opts, ordered)


def _lazy(func: Callable[[Any], Any], iterable: Iterable[Any], opts: Options, ordered: bool) -> Iterator[Any]:
    run, _, batches = _run(func, iterable, opts, ordered)
    try:
        for batch in batches:
            yield from batch
    finally:
        run.close()


def explain(func: Callable[[Any], Any], chunks: Iterable[Any], **options: Any) -> Decision:
    """What autopar would do with ``func`` over ``chunks``, and why, without running the whole workload.

    Calibration runs a small sample of the items in the caller (their results
    are discarded; the initializer, if any, runs there first and its cost is
    counted in every pool's start-up).  ``str()`` of the returned ``Decision``
    is a table of every candidate with its predicted time and the reasons.
    """
    _check_call(func, chunks)
    opts = resolve(given_options(**options))
    call = _Call(func, chunks, opts)
    try:
        if opts.forced or opts.item_timeout is not None or call.exhausted or call.facts.in_worker:
            return call.plan()
        return call.calibrated_decision(use_cache=False)
    finally:
        call.close()
