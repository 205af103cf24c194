"""The items a first call's early workers run while the caller calibrates: sent, topped up, collected.

The first items go to the workers at once, one task each (task id: the input
position).  The caller then reads the rest through ``reading``, which numbers
the items it reads.  Once the serial sample shows items that wait and compute
in Python bytecode, the pool grows and each worker done with its item gets the
next one (``top_up``, ``_core._plans.workers_fed``) instead of idling until the
decision.  Positions follow the order of reading, so results merge back in input order::

    send(item, position)     a first item, one task
    reading(source)          the caller's items, numbered
    top_up(target)           pool.poll(0) -> results by position; idle workers get the next items
    collect()                every result, by input position, once the items out came back
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any

import attrs

from ._core._plans import SPECULATIVE_MAX_ITEM_BYTES
from ._errors import SerializationError, WorkerCrashedError
from ._transfer import least_size, pickles_within, stated_size
from ._worker import Failure

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._model import PoolSpec
    from ._types import Pool

__all__ = ["Feeder", "Handover", "fits_blind", "in_order"]

_NONE = object()


@attrs.frozen
class Handover:
    """A speculation's pool, given to the call that decided on it, with the first items' state.

    The call's dispatch adopts them (``Dispatch.adopt``): ``sent`` are (position, item) pairs in
    flight as task ``position``; ``unsent`` were set aside but never reached a worker; ``done``
    holds the results, by position, of those that came back during calibration.
    """

    pool: Pool
    spec: PoolSpec
    sent: list[tuple[int, Any]]
    unsent: list[tuple[int, Any]]
    done: dict[int, Any] = attrs.field(factory=dict)

    @property
    def out(self) -> int:
        """How many of the first items have no result yet."""
        return len(self.sent) + len(self.unsent)


def fits_blind(item: Any) -> bool:
    """Whether ``item`` may be sent before the call knows what sending costs: it is small.

    As it states (``stated_size``), else as its length bounds it (``least_size``), else as it pickles
    into a buffer that stops past ``SPECULATIVE_MAX_ITEM_BYTES`` (an object that says nothing).
    """
    size = stated_size(item)
    if size is not None:
        return size <= SPECULATIVE_MAX_ITEM_BYTES
    return least_size(item) <= SPECULATIVE_MAX_ITEM_BYTES and pickles_within(item, SPECULATIVE_MAX_ITEM_BYTES)


class Feeder:
    """The early pool's items: those out in its workers and those back, by input position."""

    def __init__(self, pool: Pool, func: Callable[[Any], Any], capture_errors: bool) -> None:
        self.pool = pool
        self.func = func
        self.capture_errors = capture_errors
        #: Items out in the workers, and results back, by input position.
        self.out: dict[int, Any] = {}
        self.results: dict[int, Any] = {}
        #: Items sent, in all; False once a worker crashed.
        self.sent = 0
        self.healthy = True
        self._sent_at: dict[int, float] = {}  # every item sent, by input position
        self._next = 0  # the input position of the next item read
        self._spare: Any = _NONE  # an item ``top_up`` read but could not send: the caller's next
        self._source: Iterator[Any] | None = None  # what ``reading`` reads

    def send(self, item: Any, position: int) -> bool:
        """Submit ``item`` as its own task; False when it is too big to send blind, or cannot be pickled."""
        if not fits_blind(item):
            return False
        try:
            self.pool.submit(position, self.func, [item], position, self.capture_errors)
        except SerializationError:
            return False
        self.sent += 1
        self.out[position] = item
        self._sent_at[position] = time.perf_counter()
        return True

    def ages(self) -> tuple[float, ...]:
        """Seconds since each item still out was sent."""
        now = time.perf_counter()
        return tuple(now - self._sent_at[position] for position in self.out)

    def reading(self, source: Iterator[Any], first: int) -> Iterator[Any]:
        """The caller's items of ``source``, whose first item is at input position ``first``."""
        self._next, self._source = first, source
        while True:
            item, self._spare = self._spare, _NONE
            if item is _NONE:
                item = next(source, _NONE)
                if item is _NONE:
                    return
            self._next += 1
            yield item

    def skipping(self, first: int, count: int) -> list[int]:
        """The ``count`` input positions from ``first`` that were not sent: those the caller read, in order."""
        return list(itertools.islice((p for p in itertools.count(first) if p not in self._sent_at), count))

    def top_up(self, target: int) -> None:
        """Settle what came back; then send the next items until ``target`` are out."""
        for task_id, results, error in self.pool.poll(0):
            self._settle(task_id, results, error)
        source = self._source
        while source is not None and len(self.out) < target and self.healthy and self._spare is _NONE:
            item = next(source, _NONE)
            if item is _NONE:
                return
            if not self.send(item, self._next):
                self._spare = item  # the caller runs it
                return
            self._next += 1

    def _settle(self, task_id: int, results: list[Any] | None, error: BaseException | None) -> None:
        del self.out[task_id]
        if results:
            self.results[task_id] = results[0]
        else:
            self.results[task_id] = Failure(error)
            self.healthy = self.healthy and not isinstance(error, WorkerCrashedError)

    def collect(self, check_deadline: Callable[[], float | None]) -> dict[int, Any]:
        """Every result, by input position, once the items out came back; a failed item holds a ``Failure``."""
        while self.out:
            for task_id, results, error in self.pool.poll(check_deadline()):
                self._settle(task_id, results, error)
        return self.results


def in_order(early: dict[int, Any], ran: list[Any]) -> list[Any]:
    """The workers' results at their input positions, and the caller's, ``ran``, in the others in turn.

    The caller's results end early at an item that raised: the positions after it, never yielded, hold None.
    """
    total = max(len(early) + len(ran), max(early, default=-1) + 1)
    caller = iter(ran)
    return [early[position] if position in early else next(caller, None) for position in range(total)]
