"""One ``map``/``imap`` call: gather its facts, obey the core's plan, and execute it.

::

    Call(func, iterable, opts)          facts, shippability and the Dask cluster, looked up once
      -> decide(): plan_call (pure)  -> Run(decision) | Reuse(cached) | Calibrate
                   Calibrate          -> calibrate (measures; results kept) -> decide (pure)
      -> batches(): calibration results first, then the rest in the caller or through a pool
                    (``_dispatch``); a pool that cannot start gives way under auto.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Iterator, Sized
from functools import cached_property
from typing import TYPE_CHECKING, Any

from . import _cache, _pools
from ._calibrate import calibrate
from ._core._decide import decide
from ._core._plans import Calibrate, Reuse, Run, plan_call, serial_decision
from ._core._reasons import EXHAUSTED
from ._core._safety import with_start_failure
from ._core._sizing import serial_batch_size
from ._deadline import Deadline, starting_within
from ._dispatch import serial_batches
from ._errors import WorkerStartError
from ._gather import call_facts, find_cluster, forced_cluster_threads, refresh, threads_now, with_cluster
from ._model import Decision
from ._platform import with_memory
from ._pool_spec import pool_spec
from ._pooled import TrialFailed, run_pooled
from ._progress import make_progress
from ._registry import get_strategy
from ._serialize import first_use_imports, shipping
from ._shared import CallWithShared, SharedHandle
from ._speculation import Early, Handover, after_calibration, begin, drop, record_calibration, settle
from ._warn import warn_unsafe
from ._worker import until_failure

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from ._core._plans import Speculate
    from ._model import Measurements, Options, PoolSpec, Shipping
    from ._recorder import Recorder
    from ._types import Pool

__all__ = ["Call"]

logger = logging.getLogger("autopar")
_NOTHING = object()


class Call:
    """One ``map``/``imap`` call: its state, its plan and its execution."""

    def __init__(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], opts: Options, cancel: threading.Event | None = None
    ) -> None:
        self.func = func
        self.opts = opts
        self.n_items = len(iterable) if isinstance(iterable, Sized) else None
        self.source: Iterator[Any] = iter(iterable)
        self.facts = call_facts()
        self.deadline = Deadline(opts.timeout, cancel=cancel)  # cancel: set by amap's cancelled task
        self.capture_errors = opts.errors == "return"
        self.prefix: list[Any] = []
        self.exhausted = self.n_items == 0
        self.key: str | None = None
        self.done = 0
        self.progress = make_progress(opts.progress, self.n_items)
        if self.progress is not None:
            self.progress(0, self.n_items)
        self.caller_initialized = False
        self.speculation: Early | None = None
        self.handover: Handover | None = None  # the speculation's pool and first items, for the dispatch
        self.ran: Decision | None = None  # what ran instead of the decision, when its pool could not start
        self.shared: SharedHandle | None = None
        self.call_func = func
        self.recorder: Recorder | None = None  # set by ``_run`` for report=True
        if opts.has_shared:
            self.shared = SharedHandle(opts.shared)
            self.call_func = CallWithShared(func, self.shared.key)  # type: ignore[arg-type]  # func(item, shared)

    @cached_property
    def ship(self) -> Shipping:
        """Whether process workers can receive the function (worked out once)."""
        return shipping(self.func)

    @cached_property
    def cluster(self) -> Any:
        """The call's Dask cluster, or None (looked up once)."""
        return find_cluster(self.opts)

    def decide(self, *, remember: bool = True) -> Decision:
        """Obey the core's plan: run a known decision, decide on cached measurements, or calibrate first.

        ``remember=False`` (``explain``) neither reads nor writes the measurement cache.
        """
        opts = self.opts
        uses_processes = opts.forced and get_strategy(opts.strategy).uses_processes  # raises for an unknown name
        key = cached = None
        if remember and not self.exhausted and not opts.forced:
            key = _cache.cache_key(self.func, self.n_items)
            found = _cache.get(key)
            cached = None if found is None else refresh(found, self.n_items)
        plan = plan_call(
            self.facts,
            opts,
            self.n_items,
            shipping=self.ship,
            cached=cached,
            uses_processes=uses_processes,
            imports=first_use_imports(self.func),
            cluster_threads=forced_cluster_threads(self.opts, lambda: self.cluster),
        )
        if isinstance(plan, Run):
            if plan.unsafe is not None:
                warn_unsafe(opts.strategy, plan.unsafe)
            if plan.log_warning is not None:
                logger.warning("%s", plan.log_warning)
            return plan.decision
        self.key = key
        if isinstance(plan, Reuse):
            cached = plan.measurements
            decision = decide(with_cluster(self.cluster, cached), with_memory(self.facts, cached), opts)
            logger.info("autopar (cached measurements): %s", decision)
            return decision
        return self._calibrated(plan, remember=remember)

    def _calibrated(self, plan: Calibrate, *, remember: bool) -> Decision:
        """Calibrate on the first items (kept as this call's first results), then decide."""
        initializer_s = self._initialize_caller()  # the caller runs items: set up like a worker first
        source, n_items, warm = self.source, self.n_items, _pools.warm_pools()
        if plan.speculate is not None and remember:
            self.speculation, source = self._speculate(plan.speculate, source)
        if self.speculation is not None:
            n_items = None if n_items is None else n_items - self.speculation.sent_first
        began = time.perf_counter()
        try:
            cal = calibrate(
                self.call_func,
                source,
                n_items=n_items,
                facts=self.facts,
                capture_errors=self.capture_errors,
                worker_startup_s=_pools.measured_startup_s(),
                warm_pools=warm,
                initializer_s=initializer_s,
                shared_bytes=self.shared.size_bytes() if self.shared is not None else 0,
                check_deadline=self.deadline.check,
                thread_probe=plan.thread_probe,
                ship=self.ship,
                early_workers=self.speculation,
                judge=self._keeps_threads if remember and plan.carry else None,
            )
            measured = after_calibration(self.speculation, cal.measurements)
            self.facts = with_memory(threads_now(self.facts, measured), measured)
            logger.debug("autopar calibration: %s", measured)
            exhausted = serial_decision(EXHAUSTED) if cal.exhausted and not cal.carried else None
            decision = exhausted or decide(with_cluster(self.cluster, measured), self.facts, self.opts)
            self.handover, prefix = settle(self.speculation, decision, cal.results, self.deadline.check, self.recorder)
        except BaseException:
            if self.speculation is not None:
                self.speculation.abandon()
            raise
        if self.recorder is not None:
            record_calibration(self.recorder, self.speculation, self.handover, cal, began)
        self.source, self.prefix, self.exhausted = source, prefix, cal.exhausted
        self.deadline.check()
        if not remember:
            list(until_failure(self.prefix, self.capture_errors))  # explain raises the function's exception too
        self.advance(len(self.prefix) - (0 if self.handover is None else self.handover.out))
        if exhausted is None:  # without ``remember``, the key is None
            _cache.put(self.key if plan.remember else None, cal.measurements)
            logger.info("%s", decision)
        return decision

    def _keeps_threads(self, m: Measurements) -> bool:  # calibration's measurements so far still choose threads
        m = with_cluster(self.cluster, after_calibration(self.speculation, m))
        return decide(m, self.facts, self.opts).strategy == "threads"  # facts: the probe's threads not counted

    def _speculate(self, plan: Speculate, source: Iterator[Any]) -> tuple[Early, Iterator[Any]]:
        """Start the pool the plan names, built as that decision's pool would be, with its first items; the rest of ``source``."""
        spec = self._spec(Decision(strategy=plan.method, workers=plan.workers, chunksize=1), uses_processes=True)
        with starting_within(self.deadline):
            speculation = begin(plan, spec, self.facts)
            if self.recorder is not None:
                speculation.record(self.recorder)  # the first items the workers run
            return speculation, speculation.start(self.call_func, source, self.capture_errors)

    def _initialize_caller(self) -> float:
        """Run the initializer in the calling thread once; return the seconds it took."""
        if self.opts.initializer is None or self.caller_initialized:
            return 0.0
        started = time.perf_counter()
        self.opts.initializer(*self.opts.initargs)
        self.caller_initialized = True
        return time.perf_counter() - started

    def advance(self, count: int) -> None:  # ``count`` more results out
        self.done += count
        if self.progress is not None and count:
            self.progress(self.done, self.n_items)

    def batches(self, decision: Decision, ordered: bool) -> Iterator[list[Any]]:
        """Yield every result: calibration items first (a handed-over pool's dispatch yields them), then the rest."""
        if self.handover is None:
            yield from until_failure(self.prefix, self.capture_errors)
            self.prefix = []
        if self.exhausted and self.handover is None:  # a handed-over pool's dispatch still yields its results
            return
        if decision.strategy == "serial":
            yield from self._serial(decision)
            return
        # Read the first item before starting a pool: an empty stream needs none.
        first = next(self.source, _NOTHING)
        if first is not _NOTHING:
            self.source = itertools.chain((first,), self.source)
        elif self.handover is None:
            return
        yield from self._pooled(decision, ordered)

    def _serial(self, decision: Decision) -> Iterator[list[Any]]:
        """Run the rest in the caller, in batches of about 10 ms so the deadline is checked often."""
        self._initialize_caller()
        first = 1 if decision.measurements is None else serial_batch_size(decision.measurements.item_wall_s)
        yield from serial_batches(
            self.call_func,
            self.source,
            self.done,
            self.capture_errors,
            self.deadline.check,
            self.advance,
            first,
            self.recorder,
        )

    def _spec(self, decision: Decision, *, uses_processes: bool) -> PoolSpec:
        return pool_spec(
            decision,
            self.opts,
            self.facts,
            uses_processes=uses_processes,
            ship=self.ship,
            call_func=self.call_func,
            shared=self.shared,
            cluster=self.cluster if decision.strategy == "dask" else None,
        )

    def _pooled(self, decision: Decision, ordered: bool) -> Iterator[list[Any]]:
        started = self._start_pool(decision)
        try:
            yield from self._serial(decision) if started is None else run_pooled(self, *started, ordered)
        except TrialFailed as failed:  # before any result: auto's trial of subinterpreters failed
            self.ran = self._decide_without(failed.decision, failed)
            yield from self._pooled(self.ran, ordered)

    def _start_pool(self, decision: Decision) -> tuple[Decision, PoolSpec, Pool] | None:
        """The pool, started within the deadline (or the one started before measuring); under auto None: serial."""
        if self.handover is not None:
            return decision, self.handover.spec, self.handover.pool
        held = None if self.speculation is None else self.speculation.take(decision.strategy, decision.workers)
        if held is not None:
            return decision, held[1], held[0]
        while True:
            spec = self._spec(decision, uses_processes=get_strategy(decision.strategy).uses_processes)
            try:
                with starting_within(self.deadline):
                    return decision, spec, _pools.acquire(decision.strategy, decision.workers, spec, self.facts)
            except WorkerStartError as exc:
                if decision.forced:
                    raise
                decision = self.ran = self._decide_without(decision, exc)
            if decision.strategy == "serial":
                return None

    def _decide_without(self, failed: Decision, exc: WorkerStartError) -> Decision:
        """Decide again without the start method that failed (re-plan an item_timeout call, which has no measurements)."""
        self.facts, m = with_start_failure(self.facts, failed.strategy, exc), failed.measurements
        decision = self.decide(remember=False) if m is None else decide(m, self.facts, self.opts)
        logger.warning("autopar: %s; running %s instead", exc, decision.strategy)
        return decision

    def close(self) -> None:
        """Release a pool the call did not use, the shared object (and its segment); close the progress bar."""
        if self.speculation is not None:
            self.speculation.release()
        drop(self.handover)  # decided on, never run: the consumer stopped first
        self.handover = None
        if self.progress is not None:
            self.progress.close()
        if self.shared is not None:
            self.shared.close()
            self.shared = None
