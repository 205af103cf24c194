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

from ._thread_probe import ProbeReading, await_threads_gone, os_threads, run_caught, start_all

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._calibrate import Clocks
    from ._core._sampling import ProbePlan

__all__ = ["carry_threads"]

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

    def work(self, func: Callable[[Any], Any], capture_errors: bool, barrier: threading.Barrier, index: int) -> None:
        """A thread's loop: once all have started, take the next item, run it, settle it, until none is left."""
        try:
            barrier.wait()
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
    first = len(results)
    state = _Carry(source, first, plan.threads, clocks)
    barrier = threading.Barrier(plan.threads + 1)
    work = functools.partial(state.work, func, capture_errors, barrier)

    before = os_threads()
    workers = start_all(work, plan.threads, barrier)
    if workers is None:
        return None, False
    barrier.wait()
    w0 = clocks.wall()
    state.wait(
        lambda: state.round_wall is not None or bool(state.errors) or (state.ended and not state.out()), check_deadline
    )
    reading = _reading(state, w0)
    if reading is None or not keep(reading):
        state.stopped = True
    state.wait(lambda: (state.stopped or state.ended or bool(state.errors)) and not state.out(), check_deadline)
    for worker in workers:
        worker.join()
    await_threads_gone(before, clocks)
    if spans is not None:
        spans.extend(sorted(state.spans, key=lambda span: span[1]))
    _gather(state, first, results)
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
