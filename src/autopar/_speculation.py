"""First items that run in process workers while the caller measures the next ones.

When the core's ``speculation_plan`` says so, a first call starts its pool
before measuring and hands one first item to each worker but one; the caller's
serial sample starts after them.  Each item still runs exactly once: an item
that cannot be pickled, or states a size over ``SPECULATIVE_MAX_ITEM_BYTES``, is not
sent and runs in the caller with the sample.
After calibration the call collects the workers' results (in input order,
ahead of the sample's), and keeps the pool if the decision is that pool::

    source --first k items--> pool.submit, one task each (positions 0..k-1)
           --the rest-------> calibrate in the caller (positions k..)
    collect(): pool.poll until every task is back -> results, or Failure in its slot
    held pool --> the call's dispatch if the decision is (method, workers); else released

This is the fork variant: ``start()`` costs about 2 ms per worker, so the pool
starts in the caller.  Slower start methods start from a thread
(``_speculation_thread.BackgroundSpeculation``); ``begin`` picks the variant the plan asks for.
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, Any

import attrs

from . import _pools
from ._errors import SerializationError, WorkerStartError
from ._pool_spec import is_single_use
from ._speculation_thread import BackgroundSpeculation, Handover, fits_blind, grown, poll_into
from ._strategies._process._pool import ProcessPool

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._core._plans import Speculate
    from ._model import Decision, Measurements, PlatformFacts, PoolSpec
    from ._recorder import Recorder
    from ._types import Pool

__all__ = ["Handover", "Speculation", "begin", "caller_span", "drop", "measured_with", "settle"]

logger = logging.getLogger("autopar")


def begin(plan: Speculate, spec: PoolSpec, facts: PlatformFacts) -> Speculation | BackgroundSpeculation | None:
    """The speculation ``plan`` asks for, started; None when its pool cannot start (the caller measures alone)."""
    if plan.in_background:
        return BackgroundSpeculation(plan, spec, facts)
    return Speculation.begin(plan, spec, facts)


def measured_with(speculation: Speculation | BackgroundSpeculation | None, m: Measurements) -> Measurements:
    """``m`` with the items the speculation's workers ran, and its pool as warm once its start-up is paid or under way."""
    if speculation is None:
        return m
    warm = speculation.warm(m.warm_pools)
    early = (speculation.plan.method, speculation.plan.workers)
    return attrs.evolve(
        m, speculative_items=speculation.in_workers, warm_pools=warm, early_pool=early if early in warm else None
    )


def settle(
    speculation: Speculation | BackgroundSpeculation | None,
    decision: Decision,
    check_deadline: Callable[[], float | None],
    recorded: bool,
) -> tuple[Handover | None, list[Any]]:
    """After calibration: the pool with its first items for a decision of it (``Handover``), else their results.

    A handed-over pool's dispatch adopts the items (``Dispatch.adopt``): the call never waits for them here.
    """
    if speculation is None:
        return None, []
    handover = speculation.hand_over(decision.strategy, decision.workers)
    if handover is not None:
        return handover, []
    early = speculation.collect(check_deadline)
    if recorded:
        speculation.record(None)
    return None, early


def caller_span(
    speculation: Speculation | BackgroundSpeculation | None, handover: Handover | None, items: int
) -> tuple[int, int]:
    """The first input position the caller ran during calibration, and how many it ran, of ``items`` collected."""
    if speculation is None:
        return 0, items
    if handover is not None:
        return speculation.sent, items
    return speculation.in_workers, items - speculation.in_workers


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
        # An idle pool of an earlier call serves again; a new one's workers boot while the caller
        # measures: the pool does not wait for them.
        self.pool: Pool | None = _pools.acquire(
            plan.method,
            plan.workers,
            spec,
            facts,
            create=lambda: ProcessPool(plan.method, plan.workers, spec, ready_later=True),
        )
        self.sent = 0
        self._items: list[Any] = []  # the items sent, by position
        #: The call's recorder (``report=True``): the pool's rows are set aside if the call does not use it.
        self.report_to: Recorder | None = None
        # A pool built around this call's lambda or closure serves this call only.
        self._healthy = True
        self._reusable = not is_single_use(spec)

    @classmethod
    def begin(cls, plan: Speculate, spec: PoolSpec, facts: PlatformFacts) -> Speculation | None:
        """The speculation, its pool started; None when the pool cannot start (the caller measures alone)."""
        try:
            return cls(plan, spec, facts)
        except WorkerStartError as exc:
            logger.debug("autopar: no workers before measuring: %s", exc)
            return None

    def start(self, func: Callable[[Any], Any], source: Iterator[Any], capture_errors: bool) -> Iterator[Any]:
        """Send the first items, one task each; return the rest of ``source``, unsent items first."""
        assert self.pool is not None
        head = list(itertools.islice(source, self.plan.items))
        for position, item in enumerate(head):
            if not self._send(func, item, position, capture_errors):
                return itertools.chain(head[position:], source)  # it runs in the caller, with the sample
            self.sent += 1
            self._items.append(item)
        return source

    def _send(self, func: Callable[[Any], Any], item: Any, position: int, capture_errors: bool) -> bool:
        """Submit ``item`` as its own task; False when it is too big to send blind, or cannot be pickled."""
        assert self.pool is not None
        if not fits_blind(item):
            return False
        try:
            self.pool.submit(position, func, [item], position, capture_errors)
        except SerializationError:
            return False
        return True

    def collect(self, check_deadline: Callable[[], float | None]) -> list[Any]:
        """The results of the items sent, in input order; a failed item holds a ``Failure`` in its slot."""
        assert self.pool is not None
        slots: list[Any] = [None] * self.sent
        self._healthy = poll_into(self.pool, slots, self.sent, check_deadline) and self._healthy
        return slots

    @property
    def in_workers(self) -> int:
        """How many first items the workers ran."""
        return self.sent

    def record(self, recorder: Recorder | None) -> None:
        """Feed the workers' timings to ``recorder`` (``report=True``), or stop (None)."""
        self.report_to = recorder or self.report_to
        if self.pool is not None:
            self.pool.record(recorder)

    def warm(self, pools: frozenset[tuple[str, int]]) -> frozenset[tuple[str, int]]:
        """``pools`` (idle pools, by strategy and workers) with this one: its workers are up."""
        return pools | {(self.plan.method, self.plan.workers)}

    def hand_over(self, method: str, workers: int) -> Handover | None:
        """The pool with its first items still in flight, for a decision of this pool (grown to ``workers``); else None."""
        pool = self.pool
        if pool is None or method != self.plan.method or workers < self.plan.workers or not self._healthy:
            return None
        if workers > pool.workers and not grown(pool, workers):
            self._healthy = False
            return None
        self.pool = None
        return Handover(pool, self.spec, list(enumerate(self._items)), [])

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
