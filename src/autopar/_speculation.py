"""First items that run in process workers while the caller measures the next ones.

When the core's ``speculation_plan`` says so, a first call starts its pool before measuring and hands one first
item to each worker but one; the caller's serial sample starts after them.  Once the caller's first item blocks
(``_carry_watch``), the idle worker takes the next item rather than wait for the sample to end.  Each item still
runs exactly once: an item that cannot be pickled, or states a size over ``SPECULATIVE_MAX_ITEM_BYTES``, is not
sent and runs in the caller with the sample; when the first one is too big, no pool starts.  After calibration the
call collects the workers' results (in input order, ahead of the sample's), and keeps the pool if the decision is
that pool::

    source --first k items--> pool.submit, one task each (positions 0..k-1)
           --the rest-------> calibrate in the caller (positions k..); blocked() or sampled(): top-ups
    collect(): pool.poll until every task is back -> results, or Failure in its slot
    held pool --> the call's dispatch if the decision is (method, workers); else released

This is the fork variant: ``start()`` costs about 2 ms per worker, so the pool starts in the caller.
Slower start methods start from a thread (``_speculation_thread.BackgroundSpeculation``), as ``begin`` picks.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import TYPE_CHECKING, Any

import attrs

from . import _pools
from ._core._plans import workers_fed
from ._errors import WorkerStartError
from ._feeder import Feeder, Handover, fits_blind, in_order
from ._pool_spec import is_single_use
from ._speculation_thread import BackgroundSpeculation, grown
from ._strategies._process._pool import ProcessPool

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._calibrate import Calibration
    from ._core._plans import Speculate
    from ._model import Decision, Measurements, PlatformFacts, PoolSpec
    from ._recorder import Recorder
    from ._types import Pool

__all__ = [
    "Early",
    "Handover",
    "Speculation",
    "begin",
    "after_calibration",
    "caller_span",
    "drop",
    "record_calibration",
    "settle",
]

logger = logging.getLogger("autopar")


def begin(plan: Speculate, spec: PoolSpec, facts: PlatformFacts) -> Early:
    """The speculation ``plan`` asks for: a fork pool starts with the first items (``start``), others in a thread."""
    if plan.in_background:
        return BackgroundSpeculation(plan, spec, facts)
    return Speculation(plan, spec, facts)


def after_calibration(speculation: Speculation | BackgroundSpeculation | None, m: Measurements) -> Measurements:
    """``m`` with the items the speculation's workers run, and its pool as warm once its start-up is paid or under way.

    The items the workers took while the caller calibrated are not left to run; the fork
    pool's workers that booted meanwhile say what one more costs (``worker_startup_s``).
    """
    if speculation is None:
        return m
    warm = speculation.warm(m.warm_pools)
    early = (speculation.plan.method, speculation.workers)
    pool = speculation.pool if isinstance(speculation, Speculation) else None  # a thread feeds the other's
    booted = pool.booted_s() if isinstance(pool, ProcessPool) else None
    startup = m.worker_startup_s if booted is None else {**m.worker_startup_s, early[0]: booted}
    return attrs.evolve(
        m,
        n_items=None if m.n_items is None else max(m.n_items - speculation.topped, 0),
        worker_startup_s=startup,
        speculative_items=speculation.in_workers,
        speculative_out_s=speculation.out_ages(),
        warm_pools=warm,
        early_pool=early if early in warm else None,
    )


def settle(
    speculation: Speculation | BackgroundSpeculation | None,
    decision: Decision,
    ran: list[Any],
    check_deadline: Callable[[], float | None],
    recorder: Recorder | None,
) -> tuple[Handover | None, list[Any]]:
    """After calibration, whose results in the caller were ``ran``: every result so far, by input position.

    For a decision of the speculation's pool, that pool comes too (``Handover``), with the items
    still out: the call's dispatch adopts them (``Dispatch.adopt``), and their positions hold None
    meanwhile.  Else the call waits here for the workers' results (and stops reporting to ``recorder``).
    """
    if speculation is None:
        return None, ran
    handover = speculation.hand_over(decision.strategy, decision.workers)
    if handover is not None:
        out = dict.fromkeys([position for position, _ in [*handover.sent, *handover.unsent]])
        return handover, in_order({**handover.done, **out}, ran)
    early = speculation.collect(check_deadline)
    if recorder is not None:
        speculation.record(None)
    return None, in_order(early, ran)


def record_calibration(
    recorder: Recorder, speculation: Early | None, handover: Handover | None, cal: Calibration, began: float
) -> None:
    """Record calibration from ``began``: the caller's items, the thread probe's in rows of their own (``Recorder``)."""
    first, items = caller_span(speculation, handover, len(cal.results))
    at = first + items - len(cal.results)  # the input position of calibration's first result
    feeder = speculation.feeder if isinstance(speculation, Speculation) else None  # it took items between the caller's
    positions = feeder.skipping(at, len(cal.results)) if feeder else list(range(at, at + len(cal.results)))
    threads = [(thread, positions[index], b, e) for thread, index, b, e in cal.thread_spans]
    ended = began + cal.measurements.calibration_s if cal.carried else time.perf_counter()  # at the first round
    measured = items - len(cal.results) + cal.measurements.sampled if cal.carried else items
    caller = [*range(first, at), *positions]  # a background pool's items the caller ran, then calibration's
    recorder.calibrated(began, ended, measured, caller, threads, in_caller=items - len(threads))


def caller_span(speculation: Early | None, handover: Handover | None, items: int) -> tuple[int, int]:
    """The first input position the caller ran during calibration, and how many, of which ``items`` were calibration's."""
    if speculation is None:
        return 0, items
    if isinstance(speculation, Speculation):
        return speculation.first_in_caller, items
    if handover is not None:
        return speculation.sent, items
    return speculation.in_workers, speculation.sent - speculation.in_workers + items


def drop(handover: Handover | None) -> None:
    """Stop and shut down a handed-over pool whose call never ran it (the consumer stopped first)."""
    if handover is not None:
        handover.pool.cancel()
        _pools.release(handover.pool, healthy=False)


class Speculation:
    """A pool started in the caller before measuring, and the first items it runs."""

    def __init__(self, plan: Speculate, spec: PoolSpec, facts: PlatformFacts) -> None:
        self.plan = plan
        self.spec = spec
        self.facts = facts
        self.pool: Pool | None = None  # once ``start`` found a first item to send
        self.feeder: Feeder | None = None  # the items out and back, once ``start`` sent the first ones
        #: The input position of the first item the caller runs, and how many went to the workers before it.
        self.first_in_caller = self.sent_first = 0
        #: The call's recorder (``report=True``): the pool's rows are set aside if the call does not use it.
        self.report_to: Recorder | None = None
        # A pool built around this call's lambda or closure serves this call only.
        self._sound = True  # False once the pool could not grow
        self._reusable = not is_single_use(spec)

    def start(self, func: Callable[[Any], Any], source: Iterator[Any], capture_errors: bool) -> Iterator[Any]:
        """Start the pool and send the first items, one task each; return the rest of ``source``, unsent items first.

        The rest are numbered as the caller reads them: once ``sampled``, idle workers may get some.
        No pool starts for a first item too big to send blind (``fits_blind``; 16 arguments of
        20 MB lost 4 ms to forks, and ran in the caller), nor where it cannot: the caller measures alone.
        """
        head = list(itertools.islice(source, self.plan.items))
        if not head or not fits_blind(head[0]):
            return itertools.chain(head, source)
        plan, spec = self.plan, self.spec
        try:
            # An idle pool of an earlier call serves again; a new one's workers boot while the caller
            # measures: the pool does not wait for them.
            create = lambda: ProcessPool(plan.method, plan.workers, spec, ready_later=True)  # noqa: E731
            self.pool = _pools.acquire(plan.method, plan.workers, spec, self.facts, create=create)
        except WorkerStartError as exc:
            logger.debug("autopar: no workers before measuring: %s", exc)
            return itertools.chain(head, source)
        self.pool.record(self.report_to)
        feeder = self.feeder = Feeder(self.pool, func, capture_errors)
        for position, item in enumerate(head):
            if not feeder.send(item, position):
                self.first_in_caller = self.sent_first = position
                return itertools.chain(head[position:], source)  # it runs in the caller, with the sample
        self.first_in_caller = self.sent_first = len(head)
        return feeder.reading(source, len(head))

    def sampled(self, m: Measurements, c_share: float | None) -> Measurements:
        """The serial sample ``m`` is in: for items that mix waiting and computing, feed the pool, grown if need be.

        The pool grows to the workers that overlap the items' waits where their computing runs Python
        bytecode (``workers_fed``, from ``c_share``), and each idle one gets the next item; the
        measurements then name the pool as warm (``early_pool``).
        """
        fed = workers_fed(self.plan, m, self.facts, c_share)
        if self.feeder is None or self.pool is None or not fed:
            return m
        self.feeder.top_up(self.pool.workers)  # the workers up first: each new one takes ~2 ms to fork
        if fed > self.pool.workers and not grown(self.pool, fed):
            self._sound = False
            return m
        self.feeder.top_up(self.pool.workers)
        early = (self.plan.method, self.pool.workers)
        return attrs.evolve(m, warm_pools=m.warm_pools | {early}, early_pool=early)

    def blocked(self) -> None:
        """The caller's first item blocks (``_carry_watch``): each idle worker takes the next item, as it waits."""
        if self.feeder is not None and self.pool is not None:
            self.feeder.top_up(self.pool.workers)

    def collect(self, check_deadline: Callable[[], float | None]) -> dict[int, Any]:
        """The results of the items sent, by input position; a failed item holds a ``Failure``."""
        return {} if self.feeder is None else self.feeder.collect(check_deadline)

    @property
    def sent(self) -> int:
        """How many items went to the workers."""
        return 0 if self.feeder is None else self.feeder.sent

    in_workers = sent  # how many items the workers ran

    def out_ages(self) -> tuple[float, ...]:
        """Seconds since each item still out in the workers was sent."""
        return () if self.feeder is None else self.feeder.ages()

    @property
    def topped(self) -> int:
        """How many items the workers took beyond the first ones, while the caller calibrated."""
        return self.sent - self.sent_first

    @property
    def _healthy(self) -> bool:
        return self._sound and (self.feeder is None or self.feeder.healthy)

    def record(self, recorder: Recorder | None) -> None:
        """Feed the workers' timings to ``recorder`` (``report=True``), or stop (None)."""
        self.report_to = recorder or self.report_to
        if self.pool is not None:
            self.pool.record(recorder)

    @property
    def workers(self) -> int:
        """The pool's workers: the plan's, or more once the sample showed the items wait (``sampled``)."""
        return self.plan.workers if self.pool is None else self.pool.workers

    def warm(self, pools: frozenset[tuple[str, int]]) -> frozenset[tuple[str, int]]:
        """``pools`` (idle pools, by strategy and workers) with this one, if it started: its workers are up."""
        return pools if self.feeder is None else pools | {(self.plan.method, self.workers)}

    def hand_over(self, method: str, workers: int) -> Handover | None:
        """The pool with its first items still in flight, for a decision of this pool (grown to ``workers``); else None."""
        pool = self.pool
        if pool is None or method != self.plan.method or workers < pool.workers or not self._healthy:
            return None
        if workers > pool.workers and not grown(pool, workers):
            self._sound = False
            return None
        assert self.feeder is not None
        self.pool = None
        return Handover(pool, self.spec, sorted(self.feeder.out.items()), [], self.feeder.results)

    def take(self, method: str, workers: int) -> tuple[Pool, PoolSpec] | None:
        """Release the pool for a decision that did not take it over (``hand_over`` takes every one it can serve): None.

        Its rows in a report are set aside: the next pool's workers are numbered afresh.
        """
        pool, self.pool = self.pool, None
        if pool is None:
            return None
        if self.report_to is not None:
            pool.record(None)
            self.report_to.set_aside()
        _pools.release(pool, healthy=self._healthy and self._reusable)
        return None

    def abandon(self) -> None:
        """Stop what the workers run and shut the pool down (a timeout, Ctrl-C, an error in the caller)."""
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.cancel()
            _pools.release(pool, healthy=False)

    def release(self) -> None:
        """Give the pool back for later calls, if the call did not use it."""
        pool, self.pool = self.pool, None
        if pool is not None:
            _pools.release(pool, healthy=self._healthy and self._reusable)


#: Either variant of the first items' pool.
Early = Speculation | BackgroundSpeculation
