"""While the caller calibrates, a thread feeds the early fork workers the next items of a list, tuple or range.

Real fork workers where fork is safe; ``in_order`` and ``Dispatch.adopt`` also on their own.
"""

from __future__ import annotations

import logging
import os
import time

import pytest

import autopar
import helpers
from autopar._core._plans import speculation_plan
from autopar._dispatch import Dispatch
from autopar._feeder import Feeder, shared_input
from autopar._gather import call_facts
from autopar._model import Options, PoolSpec, Shipping
from autopar._speculation import in_order
from autopar._strategies._process._pool import ProcessPool
from autopar._worker import Failure

pytestmark = pytest.mark.timeout(60)
_PLAN = speculation_plan(call_facts(), Options(), 100, Shipping(name="f"))
needs_fork = pytest.mark.skipif(
    _PLAN is None or _PLAN.in_background, reason="the early pool forks where fork is safe and the default"
)


def test_only_iterators_of_lists_tuples_and_ranges_are_read_by_two_threads() -> None:
    assert all(shared_input(iter(kind)) for kind in ([1], (1,), range(3), range(2**70)))
    assert not any(shared_input(source) for source in (iter({1}), (x for x in [1]), iter("ab"), [1], range(3)))


def test_in_order_puts_each_result_at_its_input_position() -> None:
    """The workers' results at their positions, the caller's in the others, in turn."""
    assert in_order({0: "w0", 3: "w3"}, ["c1", "c2", "c4"]) == ["w0", "c1", "c2", "w3", "c4"]
    assert in_order({}, ["c0", "c1"]) == ["c0", "c1"]
    assert in_order({0: "w0", 1: "w1"}, []) == ["w0", "w1"]


def test_in_order_after_a_failure_in_the_caller_holds_no_result_it_did_not_run() -> None:
    """The caller stopped at a failing item: the positions it read but never ran hold None, after the Failure."""
    failure = Failure(ValueError("bad"))
    out = in_order({0: "w0", 5: "w5"}, ["c1", failure])
    assert out[:3] == ["w0", "c1", failure]
    assert out[3:] == [None, None, "w5"]


@needs_fork
def test_the_feeder_keeps_the_worker_busy_and_every_item_runs_once_at_its_position() -> None:
    """One worker kept busy while the caller reads slowly: the worker runs more than the first item, each item once."""
    pool = ProcessPool("fork", 1, PoolSpec())
    try:
        feeder = Feeder(pool, helpers.pid_and_square, capture_errors=False)
        source = iter(range(30))
        assert feeder.send(next(source), 0)
        ran: list[tuple[int, int]] = []
        for item in feeder.feed(source, 1, target=1):
            ran.append(helpers.pid_and_square(item))
            time.sleep(0.01)  # a caller that waits: the worker finishes its item meanwhile
        early = feeder.collect(lambda: None)
        assert len(early) > 1, early  # the worker took items beyond the first
        assert ran, early  # and the caller read some
        assert {pid for pid, _ in early.values()} == set(pool.pids())
        assert {pid for pid, _ in ran} == {os.getpid()}
        out = in_order(early, ran)
        assert [square for _, square in out] == [x * x for x in range(30)]
        assert feeder.out == {}
    finally:
        pool.shutdown()


@needs_fork
def test_a_stopped_feeder_sends_nothing_more() -> None:
    pool = ProcessPool("fork", 1, PoolSpec())
    try:
        feeder = Feeder(pool, helpers.pid_and_square, capture_errors=False)
        source = feeder.feed(iter(range(100)), 0, target=1)
        feeder.stop()
        sent = feeder.sent
        time.sleep(0.05)
        assert feeder.sent == sent <= 1
        early = feeder.collect(lambda: None)
        rest = list(source)
        assert len(early) + len(rest) == 100
        assert sorted([*early, *range(len(early), 100)]) == list(range(100))
    finally:
        pool.shutdown()


@needs_fork
def test_an_item_too_big_to_send_blind_goes_to_the_caller_and_feeding_stops() -> None:
    pool = ProcessPool("fork", 1, PoolSpec())
    try:
        feeder = Feeder(pool, helpers.pid_of, capture_errors=False)
        items = [b"a", bytes(1024 * 1024), b"c", b"d"]
        source = iter(items)
        assert feeder.send(next(source), 0)
        reading = feeder.feed(source, 1, target=1)
        deadline = time.monotonic() + 10
        while feeder.sent < 2 and time.monotonic() < deadline and feeder.results == {}:
            time.sleep(0.005)
        time.sleep(0.05)  # the worker is done with item 0: the thread read item 1, too big to send
        assert feeder.sent == 1
        assert next(reading) is items[1]  # the caller's next item
        assert list(reading) == items[2:]
        assert list(feeder.collect(lambda: None)) == [0]
    finally:
        pool.shutdown()


@needs_fork
def test_adopt_takes_items_out_at_any_position_with_the_caller_results_between() -> None:
    """Positions 0 and 3 in flight, 1, 2 and 4 ran in the caller: the dispatch yields 0..9 in order."""
    pool = ProcessPool("fork", 2, PoolSpec())
    try:
        pool.submit(0, helpers.pid_and_square, [0], 0, False)
        pool.submit(3, helpers.pid_and_square, [3], 3, False)
        ran = [None, helpers.pid_and_square(1), helpers.pid_and_square(2), None, helpers.pid_and_square(4)]
        dispatch = Dispatch(pool, helpers.pid_and_square, iter(range(5, 10)), 5, chunksize=1, capture_errors=False)
        dispatch.adopt([(0, 0), (3, 3)], [], ran)
        out = [result for chunk in dispatch.chunks(ordered=True) for result in chunk]
        assert [square for _, square in out] == [x * x for x in range(10)]
        assert out[0][0] != os.getpid()
        assert out[3][0] != os.getpid()
    finally:
        pool.shutdown()


def _calibration_log(caplog: pytest.LogCaptureFixture) -> str:
    return next(r.getMessage() for r in caplog.records if r.getMessage().startswith("autopar calibration:"))


@needs_fork
def test_items_that_wait_keep_every_worker_fed_during_calibration(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    """Waiting items from a list: the workers run several of them while the caller calibrates; each runs once."""
    items = [(str(tmp_path), x) for x in range(40)]
    with caplog.at_level(logging.DEBUG, logger="autopar"):
        out = autopar.map(helpers.record_item_slowly, items)
    assert out == [x * x for x in range(40)]
    lines = [line for path in tmp_path.iterdir() for line in path.read_text().split("\n") if line]
    assert sorted(int(line.split()[1]) for line in lines) == list(range(40))
    text = _calibration_log(caplog)
    assert "early_pool=('fork'" in text, text
    speculative = int(text.split("speculative_items=")[1].split(",")[0])
    assert speculative > 1, text  # beyond the one first item


@needs_fork
def test_a_generator_input_is_not_read_by_a_thread(caplog: pytest.LogCaptureFixture) -> None:
    """A generator may belong to its thread: only the first items go to the workers, before calibration."""
    with caplog.at_level(logging.DEBUG, logger="autopar"):
        out = autopar.map(helpers.sleep_for, (0.005 for _ in range(30)))
    assert out == [0.005] * 30
    text = _calibration_log(caplog)
    assert "speculative_items=1," in text, text
