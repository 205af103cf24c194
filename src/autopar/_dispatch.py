"""The dispatch loop: feed a pool a bounded window of chunks, collect outcomes, restore input order.

Bookkeeping, in the calling thread::

    source --islice(size)--> _Chunk(start, items, slots) --submit--> pool
        size: the chunk size, shrunk near the end of an input of known length
    pool.poll() --> (task, results, error) --> fill the chunk's slots
        crash or item timeout in stream mode: the rest of the chunk is resubmitted,
        the item is retried (``retries``) or gets the error (``errors="return"``)
    chunks complete in input order --> yielded (or as they complete, unordered)

At most ``window`` chunks are in flight or waiting to be consumed, so the
input is read only a bounded distance ahead of the consumer.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from ._core._sizing import SERIAL_BATCH_S, TARGET_CHUNK_S, WINDOW_PER_WORKER, adapted_chunksize, guided_size
from ._errors import WorkerCrashedError
from ._recorder import CALLER
from ._worker import ChunkFailed, Failure, ItemClock, run_chunk, until_failure, unwrap

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._recorder import Recorder
    from ._types import Pool

__all__ = ["ChunkSizer", "Dispatch", "serial_batches"]

_EMPTY = object()


class ChunkSizer:
    """A fixed chunk size, or (for 0) one that grows to about ``TARGET_CHUNK_S`` of work per chunk."""

    def __init__(self, fixed: int, *, target_s: float = TARGET_CHUNK_S, first: int = 1) -> None:
        self.adaptive = fixed <= 0
        self.size = max(fixed, 1) if not self.adaptive else max(first, 1)
        self.target_s = target_s

    def observe(self, size: int, elapsed_s: float) -> None:
        """Adapt to a chunk of ``size`` items that took ``elapsed_s``."""
        if not self.adaptive or elapsed_s <= 0:
            return
        self.size = adapted_chunksize(self.size, elapsed_s / size, self.target_s)


def serial_batches(
    func: Callable[[Any], Any],
    source: Iterator[Any],
    start: int,
    capture_errors: bool,
    check_deadline: Callable[[], object],
    advance: Callable[[int], None],
    first_size: int = 1,
    recorder: Recorder | None = None,
) -> Iterator[list[Any]]:
    """Run ``source`` in the caller, in batches of about ``SERIAL_BATCH_S``; yield each batch's results.

    ``first_size`` items make the first batch (the calibrated batch size, when there is one).
    Items before a failure are yielded first; then the function's exception is raised, with the
    traceback as ``__cause__``.  A ``recorder`` gets each batch's timing, on the caller's row.
    """
    sizer = ChunkSizer(0, target_s=SERIAL_BATCH_S, first=first_size)
    done = start
    while True:
        check_deadline()
        batch = list(itertools.islice(source, sizer.size))
        if not batch:
            return
        started = time.perf_counter()
        clock = None if recorder is None else ItemClock(func, done)
        try:
            results = run_chunk(clock or func, batch, done, capture_errors=capture_errors, in_process=False)
        except ChunkFailed as failed:
            error = failed.wrapped.rebuild()
            if clock is not None and recorder is not None:
                recorder.ran(CALLER, done, clock.timing(done), failed=True)
                recorder.incident(done + failed.offset, error)
            yield unwrap(failed.results, capture_errors)
            raise error  # noqa: B904 - its __cause__ is the traceback text
        if clock is not None and recorder is not None:
            recorder.ran(CALLER, done, clock.timing(done))
        sizer.observe(len(batch), time.perf_counter() - started)
        done += len(batch)
        advance(len(batch))
        # Only errors="return" leaves Failure markers in the caller's results: no scan otherwise.
        yield unwrap(results, capture_errors) if capture_errors else results


class _Chunk:
    """Consecutive items starting at input position ``start``, and their result slots."""

    __slots__ = ("items", "missing", "slots", "start")

    def __init__(self, start: int, items: list[Any]) -> None:
        self.start = start
        self.items = items
        self.slots: list[Any] = [_EMPTY] * len(items)
        self.missing = len(items)


class Dispatch:
    """One run of ``func`` over ``source`` on ``pool``; iterate ``chunks()`` for result lists."""

    def __init__(
        self,
        pool: Pool,
        func: Callable[[Any], Any],
        source: Iterator[Any],
        start: int,
        *,
        chunksize: int,
        capture_errors: bool,
        retries: int = 0,
        retry_on: tuple[type[BaseException], ...] = (),
        window_per_worker: int = WINDOW_PER_WORKER,
        check_deadline: Callable[[], float | None] = lambda: None,
        advance: Callable[[int], None] = lambda n: None,
        total: int | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.pool = pool
        #: Told of every crash, timeout, retry and the exception that fails the call (``report=True``).
        self.recorder = recorder
        self.func = func
        self.source = source
        self.next_start = start
        self.sizer = ChunkSizer(chunksize)
        #: The input position after the last item, when it is known and the tail chunks may shrink.
        self.total = total
        self.capture_errors = capture_errors
        self.retries = retries
        self.retry_on = retry_on
        self.window = max(pool.workers * window_per_worker, 2)
        self.check_deadline = check_deadline
        self.advance = advance
        self.attempts: Counter[int] = Counter()
        self.task_ids = itertools.count()
        #: task id -> (chunk, offset of the task's first item in the chunk, item count, submitted at)
        self.in_flight: dict[int, tuple[_Chunk, int, int, float]] = {}
        self.queued: deque[tuple[_Chunk, int, int]] = deque()  # resubmissions waiting for a worker
        self.order: deque[_Chunk] = deque()
        self.source_done = False
        #: A failure will end the call (errors="raise"): read no more input.
        self.failing = False

    def adopt(self, sent: list[tuple[int, Any]], unsent: list[tuple[int, Any]], ran: list[Any]) -> None:
        """Take over a first call's speculation, before ``chunks()``; every result still comes back in input order.

        ``sent`` (position, item) pairs are in flight as task id ``position``; ``unsent`` never reached
        a worker; ``ran`` holds every other result from position 0 on, by position.
        """
        flying = {position for position, _ in sent}
        done_from = 0
        for position, item in sorted([*sent, *unsent], key=lambda pair: pair[0]):
            self._adopt_done(ran[done_from:position], done_from)
            chunk = _Chunk(position, [item])
            self.order.append(chunk)
            if position in flying:
                self.in_flight[position] = (chunk, 0, 1, time.monotonic())
            else:
                self.queued.append((chunk, 0, 1))
            done_from = position + 1
        self._adopt_done(ran[done_from:], done_from)
        self.next_start = max(len(ran), done_from)
        self.task_ids = itertools.count(self.next_start)

    def _adopt_done(self, results: list[Any], start: int) -> None:
        if results:
            done = _Chunk(start, [])
            done.slots = results
            self.order.append(done)

    def _submit(self, chunk: _Chunk, offset: int, count: int) -> None:
        task_id = next(self.task_ids)
        self.in_flight[task_id] = (chunk, offset, count, time.monotonic())
        items = chunk.items[offset : offset + count]
        self.pool.submit(task_id, self.func, items, chunk.start + offset, self.capture_errors)

    def _fill(self) -> None:
        while self.queued and self.pool.capacity() > 0:
            self._submit(*self.queued.popleft())
        while not (self.source_done or self.failing) and self.pool.capacity() > 0 and len(self.order) < self.window:
            items = list(itertools.islice(self.source, self._next_size()))
            if not items:
                self.source_done = True
                return
            chunk = _Chunk(self.next_start, items)
            self.next_start += len(items)
            self.order.append(chunk)
            self._submit(chunk, 0, len(items))

    def _next_size(self) -> int:
        """The size of the next chunk: the sizer's, shrunk near the end of an input of known length.

        Like OpenMP's guided schedule (``guided_size``), so a few slow items at
        the end are not stuck in one chunk while the other workers idle.
        """
        if self.total is None:
            return self.sizer.size
        return guided_size(self.sizer.size, self.total - self.next_start, self.pool.workers)

    def chunks(self, *, ordered: bool) -> Iterator[list[Any]]:
        """Yield each chunk's results once complete: in input order, or as they complete."""
        while True:
            self._fill()
            if not self.order:
                return
            if self.in_flight:
                for task_id, results, error in self.pool.poll(self.check_deadline()):
                    self._settle(task_id, results, error)
            elif not self.queued and not self.failing and not any(c.missing == 0 for c in self.order):
                msg = "internal error: chunks are missing results but none is in flight"
                raise RuntimeError(msg)
            # A failing item raises after the results before it (``until_failure``), as its chunk's turn comes.
            if ordered:
                while self.order and self.order[0].missing == 0:
                    yield from until_failure(self.order.popleft().slots, self.capture_errors)
            else:
                for done in [c for c in self.order if c.missing == 0]:
                    self.order.remove(done)
                    yield from until_failure(done.slots, self.capture_errors)
            self.check_deadline()

    def _settle(self, task_id: int, results: list[Any] | None, error: BaseException | None) -> None:
        chunk, offset, count, submitted = self.in_flight.pop(task_id)
        if error is not None and not isinstance(error, Exception):
            # SystemExit, KeyboardInterrupt and other BaseExceptions are never an item's result,
            # retried or resubmitted: the call ends with them (docs/reliability.md).
            raise error
        if results is None:
            results = []  # the chunk's results were lost with it (a crash outside stream mode)
        if error is None and offset == 0 and len(results) == chunk.missing == len(chunk.slots) and not self.retry_on:
            # The common case: a whole chunk came back at once.
            chunk.slots, chunk.missing = results, 0
            self.advance(len(results))
            self.sizer.observe(count, time.monotonic() - submitted)
            return
        for i, value in enumerate(results):
            self._fill_slot(chunk, offset + i, value)
        if error is not None:
            failed = offset + len(results)
            position = chunk.start + failed
            rest = count - len(results) - 1
            retried = self._may_retry(position, error)
            if self.recorder is not None:
                self.recorder.incident(position, error, retried=retried)
            if retried:
                rest += 1  # the failed item runs again with the rest
            else:
                self._fill_slot(chunk, failed, Failure(error))
                failed += 1
                if not self.capture_errors:
                    # The call fails at this item: raised when the chunk's turn comes, after every
                    # earlier result; its later items are not run, and no new chunk is started.
                    self._abandon(chunk)
                    rest = 0
            if rest > 0:
                self.queued.append((chunk, failed, rest))
        else:
            self.sizer.observe(count, time.monotonic() - submitted)

    def _abandon(self, chunk: _Chunk) -> None:
        self.failing = True
        for i, value in enumerate(chunk.slots):
            if value is _EMPTY:
                chunk.slots[i] = None
        chunk.missing = 0

    def _fill_slot(self, chunk: _Chunk, index: int, value: Any) -> None:
        if isinstance(value, Failure) and self._may_retry(chunk.start + index, value.exception(), raised=True):
            if self.recorder is not None:
                self.recorder.incident(chunk.start + index, value.exception(), retried=True)
            self.queued.append((chunk, index, 1))
            return
        chunk.slots[index] = value
        chunk.missing -= 1
        self.advance(1)

    def _may_retry(self, position: int, error: BaseException, *, raised: bool = False) -> bool:
        """Whether to run the item again: a crash or item timeout, or (``raised`` by it) a ``retry_on`` type."""
        by_type = bool(self.retry_on) and isinstance(error, self.retry_on)
        retryable = by_type if raised else by_type or isinstance(error, (WorkerCrashedError, TimeoutError))
        if not retryable or self.attempts[position] >= self.retries:
            return False
        self.attempts[position] += 1
        return True
