"""At a thread probe of items that wait, the early fork workers done with their first item get the next ones.

Real fork workers where fork is safe; ``in_order`` and ``Dispatch.adopt`` also on their own.
"""

from __future__ import annotations

import logging
import os
import time

import pytest

import autopar
import helpers
from autopar._carry_watch import caller_cpu_clock
from autopar._core._plans import speculation_plan
from autopar._dispatch import Dispatch
from autopar._feeder import Feeder, in_order
from autopar._gather import call_facts
from autopar._model import Options, PoolSpec, Shipping
from autopar._strategies._process._pool import ProcessPool
from autopar._worker import Failure

pytestmark = pytest.mark.timeout(60)
_PLAN = speculation_plan(call_facts(), Options(), 100, Shipping(name="f"))
needs_fork = pytest.mark.skipif(
    _PLAN is None or _PLAN.in_background, reason="the early pool forks where fork is safe and the default"
)


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


def _wait_for_result(feeder: Feeder, position: int) -> None:
    deadline = time.monotonic() + 20
    while position not in feeder.results and time.monotonic() < deadline:
        feeder.top_up(0)  # settles what came back, sends nothing
        time.sleep(0.002)
    assert position in feeder.results


@needs_fork
def test_top_up_gives_idle_workers_the_next_items_and_every_item_runs_once_at_its_position() -> None:
    """Item 0 out, the caller reads 1 and 2; a top-up to 2 sends 3 and 4; the caller goes on from 5."""
    pool = ProcessPool("fork", 2, PoolSpec())
    try:
        feeder = Feeder(pool, helpers.pid_and_square, capture_errors=False)
        source = iter(range(12))
        assert feeder.send(next(source), 0)
        reading = feeder.reading(source, 1)
        ran = [helpers.pid_and_square(next(reading)) for _ in range(2)]
        _wait_for_result(feeder, 0)
        feeder.top_up(2)
        assert sorted(feeder.out) == [3, 4]
        assert feeder.sent == 3
        ran += [helpers.pid_and_square(item) for item in reading]
        assert [square for _, square in ran] == [x * x for x in (1, 2, *range(5, 12))]
        early = feeder.collect(lambda: None)
        assert sorted(early) == [0, 3, 4]
        assert {pid for pid, _ in early.values()} <= set(pool.pids())
        out = in_order(early, ran)
        assert [square for _, square in out] == [x * x for x in range(12)]
        assert feeder.out == {}
        assert len(feeder.ages()) == 0
    finally:
        pool.shutdown()


@needs_fork
def test_top_up_to_zero_only_settles_what_came_back() -> None:
    pool = ProcessPool("fork", 1, PoolSpec())
    try:
        feeder = Feeder(pool, helpers.pid_and_square, capture_errors=False)
        assert feeder.send(0, 0)
        assert len(feeder.ages()) == 1
        reading = feeder.reading(iter(range(1, 5)), 1)
        _wait_for_result(feeder, 0)
        assert (feeder.sent, feeder.out) == (1, {})
        assert list(reading) == [1, 2, 3, 4]
    finally:
        pool.shutdown()


@needs_fork
def test_an_item_too_big_to_send_blind_goes_to_the_caller_at_its_position() -> None:
    pool = ProcessPool("fork", 2, PoolSpec())
    try:
        feeder = Feeder(pool, helpers.pid_of, capture_errors=False)
        items = [b"a", b"b", bytes(1024 * 1024), b"d"]
        source = iter(items)
        assert feeder.send(next(source), 0)
        reading = feeder.reading(source, 1)
        assert next(reading) == b"b"
        _wait_for_result(feeder, 0)
        feeder.top_up(2)  # item 2 is too big: it stays for the caller, and nothing more is sent
        assert feeder.out == {}
        assert feeder.sent == 1
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
@pytest.mark.parametrize("kind", [list, iter])
def test_items_that_wait_run_once_in_order_on_an_early_pool_grown_to_overlap_their_waits(
    tmp_path, caplog: pytest.LogCaptureFixture, kind
) -> None:
    """Waiting items, from a list or an iterator: each runs once, in order.  The serial sample's profile shows
    Python bytecode (traced before 3.12), so the early pool grows past the CPUs, every worker gets an item, and
    no thread probe runs."""
    items = [(str(tmp_path), x) for x in range(40)]
    with caplog.at_level(logging.DEBUG, logger="autopar"):
        out = autopar.map(helpers.record_wait_then_compute, kind(items))
    assert out == [x * x for x in range(40)]
    lines = [line for path in tmp_path.iterdir() for line in path.read_text().split("\n") if line]
    assert sorted(int(line.split()[1]) for line in lines) == list(range(40))
    text = _calibration_log(caplog)
    speculative = int(text.split("speculative_items=")[1].split(",")[0])
    probed = int(text.split("thread_probe_workers=")[1].split(",")[0])
    workers = int(text.split("early_pool=('fork', ")[1].split(")")[0])
    assert workers > (os.cpu_count() or 1), text
    assert speculative >= workers, text  # beyond the one first item: every worker fed
    assert probed == 0, text


@needs_fork
@pytest.mark.timeout(60)
def test_an_idle_early_worker_takes_an_item_while_the_callers_first_item_waits(tmp_path) -> None:
    """The caller's first item blocks: the early pool's idle worker starts the next item before that one ends."""
    if caller_cpu_clock() is None:
        pytest.skip("the first item is watched where the caller's thread CPU clock can be read")
    items = [(str(tmp_path), x) for x in range(40)]
    assert autopar.map(helpers.stamp_wait_then_compute, items) == [x * x for x in range(40)]
    lines = [line.split() for path in tmp_path.iterdir() for line in path.read_text().split("\n") if line]
    runs = {int(x): (int(pid), float(began), float(ended)) for _, x, pid, began, ended in lines}
    assert sorted(int(line[1]) for line in lines) == list(range(40))  # each item once
    first = min(x for x, (pid, _, _) in runs.items() if pid == os.getpid())  # the items before it went out at once
    later = [began for x, (pid, began, _) in runs.items() if x > first and pid != os.getpid()]
    assert min(later) < runs[first][2], runs


def test_skipping_gives_the_positions_the_caller_read_around_those_sent() -> None:
    class Taking:  # a pool that takes every task: only the positions sent matter here
        def submit(self, *task: object) -> None:
            pass

    feeder = Feeder(pool=Taking(), func=abs, capture_errors=False)  # type: ignore[arg-type]
    for position in (0, 2, 3):
        assert feeder.send(position, position)
    assert feeder.skipping(1, 4) == [1, 4, 5, 6]
    assert feeder.skipping(7, 2) == [7, 8]
