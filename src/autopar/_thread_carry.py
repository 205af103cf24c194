"""The wide thread probe that carries on: items that wait part of their time, one per thread, then the rest.

A short probe on two threads, then a pool, leaves the CPUs idle twice while
items wait (the probe's last item, then the pool's first).  ``carry_threads``
starts ``plan.threads`` threads, each taking the next item as it finishes
one: the first round (one item per thread) is timed, and ``keep`` judges that
reading.  If threads win, they go on through the input; else they take no
more, finish what they run, and the call runs the rest as decided::

    threads: take (position, item) under the lock --> run it --> settle its result --> take the next
    caller:  wait for the first round --> keep(reading)? --> no: stop taking
             wait until every item taken has settled, checking the deadline --> results in input order

Every item read runs exactly once, and its result is kept.  Like a thread
pool's, a thread cannot be stopped: on a timeout or Ctrl-C no item is taken
any more, the caller returns at once, and the threads (daemons) end after their item.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any

import attrs

from ._thread_probe import ProbeReading, await_all_gone, run_caught, start_all, start_each

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._calibrate import Clocks
    from ._core._sampling import ProbePlan

__all__ = ["Carrying", "carry_threads", "finish_carry", "start_carry"]

#: Seconds between the caller's deadline checks while it waits.
_CHECK_S = 0.05
_NONE = object()


class _Carry:
    """The items the threads take and settle, by input position, and the first round's timing."""

    def __init__(self, source: Iterator[Any], first: int, round_items: int, clocks: Clocks) -> None:
        self.source = source
        self.clocks = clocks
        self.first = self.next = first  # the input positions of the first item and of the next one taken
        self.round_items = round_items
        self.settled: dict[int, Any] = {}
        self.errors: dict[int, BaseException] = {}
        self.cpu_s = 0.0  # the threads' CPU time on their first items
        self.round_wall: float | None = None  # when the first round's last item settled
        self.stopped = self.ended = False
        self.input_error: BaseException | None = None  # what the input itself raised: it ended there
        #: (thread, input position, began, ended) of every item run, on ``clocks.wall``: the call's report shows them.
        self.spans: list[tuple[int, int, float, float]] = []
        self.changed = threading.Condition()

    def take(self) -> tuple[int, Any] | None:
        """The next item and its position; None once stopped, at the end of the input (or its error), or after a failure."""
        with self.changed:
            if self.stopped or self.ended or self.errors:
                return None
            try:
                item = next(self.source, _NONE)
            except BaseException as exc:  # the input itself raised: it ends here, and the caller raises it
                self.input_error, self.ended = exc, True
                self.changed.notify_all()
                return None
            if item is _NONE:
                self.ended = True
                return None
            self.next += 1
            return self.next - 1, item

    def settle(
        self, position: int, result: list[Any] | BaseException, cpu_s: float | None, span: tuple[int, int, float, float]
    ) -> None:
        with self.changed:
            self.spans.append(span)
            if isinstance(result, BaseException):
                self.errors[position] = result
            else:
                self.settled[position] = result[0]
            if cpu_s is not None:
                self.cpu_s += cpu_s
            if self.round_wall is None and len(self.settled) + len(self.errors) >= self.round_items:
                self.round_wall = self.clocks.wall()
            self.changed.notify_all()

    def work(self, func: Callable[[Any], Any], capture_errors: bool, ready: Callable[[], object], index: int) -> None:
        """A thread's loop: once ``ready()`` (all have started), take the next item, run it, settle it, until none is left."""
        try:
            ready()
        except threading.BrokenBarrierError:  # another thread would not start: the caller runs the items
            return
        began: float | None = self.clocks.thread()
        while (taken := self.take()) is not None:
            position, item = taken
            started = self.clocks.wall()
            outcome = run_caught(func, [item], position, capture_errors)
            span = (index, position, started, self.clocks.wall())
            self.settle(position, outcome, None if began is None else self.clocks.thread() - began, span)
            began = None  # CPU time is read on each thread's first item: the first round's

    def started(self, threads: int) -> None:
        """Only ``threads`` threads started: the first round is theirs."""
        with self.changed:
            self.round_items = threads
            if self.round_wall is None and len(self.settled) + len(self.errors) >= threads:
                self.round_wall = self.clocks.wall()

    def out(self) -> int:
        """Items taken and not settled."""
        return self.next - self.first - len(self.settled) - len(self.errors)

    def wait(self, done: Callable[[], bool], check_deadline: Callable[[], object]) -> None:
        """Wait until ``done()``; on a timeout or Ctrl-C no item is taken any more, and the error propagates."""
        try:
            with self.changed:
                while not done():
                    self.changed.wait(_CHECK_S)
                    check_deadline()
        except BaseException:
            self.stopped = True
            raise


@attrs.define
class Carrying:
    """A carry under way: its threads, started and released, and the item state they share."""

    state: _Carry
    workers: list[threading.Thread]
    #: When they were released (on ``clocks.wall``).
    began: float
    #: The process's peak resident memory when they started (``clocks.peak``).
    peak: int = 0
    #: What they wait for before their first item, if not for each other.
    go: threading.Event | None = None

    @property
    def threads(self) -> int:
        return len(self.workers)

    def stop(self) -> None:
        """No item is taken any more: the threads end after the one they run."""
        with self.state.changed:
            self.state.stopped = True

    def release(self, clocks: Clocks) -> None:
        """Let threads started waiting for ``go`` take their items; the first round is timed from now."""
        self.began = clocks.wall()
        if self.go is not None:
            self.go.set()

    def abandon(self, clocks: Clocks) -> None:
        """Stop, and wait for the threads to end: the results of their items are dropped (an item before them raised)."""
        self.stop()
        if self.go is not None:
            self.go.set()
        self.join(clocks)

    def join(self, clocks: Clocks) -> None:
        """Wait for the threads to end, and for the OS to reap them, before anything forks."""
        for worker in self.workers:
            worker.join()
        await_all_gone(self.workers, clocks)


def start_carry(
    func: Callable[[Any], Any],
    source: Iterator[Any],
    threads: int,
    first: int,
    capture_errors: bool,
    clocks: Clocks,
    *,
    go: threading.Event | None = None,
) -> Carrying | None:
    """Start ``threads`` threads taking items from ``source``, the first at input position ``first``.

    Without ``go``, the threads wait for each other, so that the first round is timed from one start,
    and None when one would not start (a process or thread limit): then no item was taken.  With it,
    they wait for ``go`` (``Carrying.release``; ``stop`` first to let them end untaken), and the carry
    goes on with the threads that started (None: not one did).
    """
    state = _Carry(source, first, threads, clocks)
    peak = clocks.peak()
    if go is not None:
        workers = start_each(functools.partial(state.work, func, capture_errors, go.wait), threads)
        state.started(len(workers))
        return Carrying(state, workers, clocks.wall(), peak, go) if workers else None
    barrier = threading.Barrier(threads + 1)
    together = start_all(functools.partial(state.work, func, capture_errors, barrier.wait), threads, barrier)
    if together is None:
        return None
    barrier.wait()
    return Carrying(state, together, clocks.wall(), peak)


def carry_threads(
    func: Callable[[Any], Any],
    source: Iterator[Any],
    plan: ProbePlan,
    capture_errors: bool,
    results: list[Any],
    clocks: Clocks,
    keep: Callable[[ProbeReading], bool],
    check_deadline: Callable[[], object],
    spans: list[tuple[int, int, float, float]] | None = None,
) -> tuple[ProbeReading | None, bool]:
    """Run ``plan.threads`` items at once, and on through ``source`` while ``keep`` the first round's reading.

    Results go to ``results`` in input order, and (thread, input position, began, ended) of each item
    run to ``spans``.  Returns the first round's reading (None when the input ran out first, or a
    thread would not start) and whether the input ran out.
    """
    carrying = start_carry(func, source, plan.threads, len(results), capture_errors, clocks)
    if carrying is None:
        return None, False
    return finish_carry(carrying, results, clocks, keep, check_deadline, spans)


def finish_carry(
    carrying: Carrying,
    results: list[Any],
    clocks: Clocks,
    keep: Callable[[ProbeReading], bool],
    check_deadline: Callable[[], object],
    spans: list[tuple[int, int, float, float]] | None = None,
) -> tuple[ProbeReading | None, bool]:
    """Judge a started carry's first round with ``keep``, wait for its items, and gather them (see ``carry_threads``).

    ``results`` must hold every item before the carry's first: its results follow them.
    """
    state = carrying.state
    state.wait(
        lambda: state.round_wall is not None or bool(state.errors) or (state.ended and not state.out()), check_deadline
    )
    reading = _reading(state, carrying.began)
    if reading is None or not keep(reading):
        carrying.stop()
    state.wait(lambda: (state.stopped or state.ended or bool(state.errors)) and not state.out(), check_deadline)
    carrying.join(clocks)
    if spans is not None:
        spans.extend(sorted(state.spans, key=lambda span: span[1]))
    _gather(state, state.first, results)
    return reading, state.ended


def _reading(state: _Carry, w0: float) -> ProbeReading | None:
    """The first round's reading: its wall time, items and first items' CPU; None when fewer than two items ran."""
    with state.changed:
        done = len(state.settled) + len(state.errors)
        if state.round_wall is None or done < 2:
            return None
        return ProbeReading(wall_s=state.round_wall - w0, items=state.round_items, cpu_s=state.cpu_s)


def _gather(state: _Carry, first: int, results: list[Any]) -> None:
    """Append the results in input order; raise the first failure (in input order) unless errors are captured."""
    for position in range(first, state.next):
        if position in state.errors:
            raise state.errors[position]
        results.append(state.settled[position])
    if state.input_error is not None:  # after the last item taken
        raise state.input_error
