"""The items a first call's early workers run while the caller calibrates: sent, fed, collected.

The first items go to the workers at once, one task each (task id: the input
position).  For a list, tuple or range, which any thread may read, a thread
then keeps feeding: a worker done with its item gets the next one, so no core
idles while the caller measures.  Caller and thread read the input under one
lock, so input positions follow the order of reading::

    send(item, position)     a first item, one task
    reading(source)          the caller's items, read under the lock
    feed thread              pool.poll -> results by position; an idle worker gets the next item
    stop()                   the thread ends (before a thread probe of computing items, and after calibration)
    collect()                every result, by input position, once the items out came back
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import attrs

from ._core._plans import SPECULATIVE_MAX_ITEM_BYTES
from ._errors import SerializationError, WorkerCrashedError
from ._transfer import stated_size
from ._worker import Failure

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._model import PoolSpec
    from ._types import Pool

__all__ = ["FEED_POLL_S", "Feeder", "Handover", "fits_blind", "shared_input"]

logger = logging.getLogger("autopar")

#: How long the feed thread waits for a result before it looks whether it must stop: the most a
#: stop waits for it.
FEED_POLL_S = 0.001
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
    """Whether ``item`` may be sent before the call knows what sending costs (its stated size is small)."""
    size = stated_size(item)
    return size is None or size <= SPECULATIVE_MAX_ITEM_BYTES


#: Iterators that any thread may read: a list's, a tuple's, a range's.
_SHARED = frozenset({type(iter([])), type(iter(())), type(iter(range(1))), type(iter(range(2**64)))})


def shared_input(source: object) -> bool:
    """Whether a thread may read ``source`` beside the caller: an iterator of a list, tuple or range."""
    return type(source) in _SHARED


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
        #: How many items the thread keeps out in the workers.
        self.target = 0
        self._next = 0  # the input position of the next item read
        self._spare: Any = _NONE  # an item the thread read but could not send: the caller's next
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

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
        return True

    def feed(self, source: Iterator[Any], first: int, target: int) -> Iterator[Any]:
        """Keep ``target`` items out from ``source`` (read from position ``first`` on) in a thread; the caller's items."""
        self._next, self.target = first, target
        self._thread = threading.Thread(target=self._feed, args=(source,), name="autopar-feeder", daemon=True)
        try:
            self._thread.start()
        except RuntimeError as exc:  # no thread can start (RLIMIT_NPROC): the caller reads alone
            logger.debug("autopar: no thread to feed the workers during calibration: %s", exc)
            self._thread = None
        return self._reading(source)

    def _reading(self, source: Iterator[Any]) -> Iterator[Any]:
        while True:
            with self._lock:
                item, self._spare = self._spare, _NONE
                if item is _NONE:
                    item = next(source, _NONE)
                if item is _NONE:
                    return
                self._next += 1
            yield item

    def _feed(self, source: Iterator[Any]) -> None:
        try:
            while not self._stopped.is_set():
                if self.out:
                    for task_id, results, error in self.pool.poll(FEED_POLL_S):
                        self._settle(task_id, results, error)
                else:
                    self._stopped.wait(FEED_POLL_S)
                with self._lock:
                    if not self._send_next(source):
                        return
        except Exception as exc:  # the caller collects what is out, and reports a failure there
            logger.debug("autopar: feeding the workers stopped: %s", exc)

    def _send_next(self, source: Iterator[Any]) -> bool:
        """Under the lock: send items until ``target`` are out; False once no more may go."""
        while len(self.out) < self.target and self.healthy and not self._stopped.is_set():
            item = next(source, _NONE)
            if item is _NONE:
                return False
            if not self.send(item, self._next):
                self._spare = item  # the caller runs it, and the rest
                return False
            self._next += 1
        return True

    def _settle(self, task_id: int, results: list[Any] | None, error: BaseException | None) -> None:
        del self.out[task_id]
        if results:
            self.results[task_id] = results[0]
        else:
            self.results[task_id] = Failure(error)
            self.healthy = self.healthy and not isinstance(error, WorkerCrashedError)

    def stop(self) -> None:
        """End the thread, once it sent what it was sending: the caller alone uses the pool from now on."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def collect(self, check_deadline: Callable[[], float | None]) -> dict[int, Any]:
        """Every result, by input position, once the items out came back; a failed item holds a ``Failure``."""
        self.stop()
        while self.out:
            for task_id, results, error in self.pool.poll(check_deadline()):
                self._settle(task_id, results, error)
        return self.results
