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
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import TYPE_CHECKING, Any

from . import _cache, _pools
from ._calibrate import calibrate
from ._config import resolve
from ._decide import decide
from ._dispatch import ChunkSizer, Dispatch, unwrap
from ._errors import SerializationError, WorkerCrashedError
from ._plan import call_facts, forced_plan, item_timeout_plan, pool_spec, refresh, serial_plan, with_cluster
from ._progress import make_progress
from ._shared import CallWithShared, SharedHandle
from ._worker import ChunkFailed, run_chunk

if TYPE_CHECKING:
    from ._model import Decision, Options
    from ._types import R, T

__all__ = ["explain", "given_options", "imap", "map", "run_imap", "run_map"]

logger = logging.getLogger("autopar")

#: Chunks in flight (or finished but not yet consumed) per worker: bounds read-ahead.
_WINDOW_PER_WORKER = 4

#: Seconds of work per batch when running serially in the caller.
_SERIAL_BATCH_S = 0.01
_NOTHING = object()


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


class _Call:
    """One ``map``/``imap`` call: its options, its plan and its execution."""

    def __init__(self, func: Callable[[Any], Any], iterable: Iterable[Any], opts: Options) -> None:
        self.func = func
        self.opts = opts
        self.n_items = len(iterable) if isinstance(iterable, Sized) else None
        self.source = iter(iterable)
        self.facts = call_facts()
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
            return serial_plan("empty input")
        if self.facts.in_worker:
            return serial_plan("nested call inside an autopar worker: runs serially")
        if self.facts.in_main_bootstrap:
            logger.warning(
                "autopar.map called while a worker process imports the main module: running serially. "
                'Put the call under `if __name__ == "__main__":` to run it in parallel.'
            )
            return serial_plan('called while a child process imports __main__ (no `if __name__ == "__main__":` guard)')
        if self.opts.item_timeout is not None:
            return item_timeout_plan(self.func, self.n_items, self.opts, self.facts)
        if self.opts.forced:
            return forced_plan(self.func, self.n_items, self.opts, self.facts)
        return self._auto()

    def _auto(self) -> Decision:
        self.key = _cache.cache_key(self.func, self.n_items)
        cached = _cache.get(self.key)
        if cached is not None:
            measurements = with_cluster(refresh(cached, self.n_items), self.opts)
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
            return serial_plan("the whole input ran during calibration")
        decision = decide(with_cluster(cal.measurements, self.opts), self.facts, self.opts)
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

    def _pooled(self, decision: Decision, ordered: bool) -> Iterator[list[Any]]:
        spec = pool_spec(decision, self.opts, self.facts, self.func, self.call_func, self.shared)
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
                # A chunk size the caller gave is kept to the end; a chosen one shrinks at the tail.
                total=self.n_items if self.opts.chunksize is None else None,
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
