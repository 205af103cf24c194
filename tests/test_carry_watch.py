"""The carry started while the first item still runs: its rule, and real items that wait then compute."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from typing import Any

import pytest

from autopar._calibrate import Clocks, calibrate
from autopar._carry_watch import caller_cpu_clock, watch_first
from autopar._core._sampling import CARRY_MAX_WORK_S
from autopar._core._sizing import MAX_THREADS
from autopar._core._watching import (
    EARLY_CARRY_AFTER_S,
    EARLY_CARRY_BUSY_SHARE,
    EARLY_CARRY_LATE_S,
    EARLY_CARRY_PROMPT_LOOKS,
    early_carry,
    early_look_ran,
    early_park,
    gil_seen,
)
from autopar._gather import call_facts
from autopar._thread_probe import os_threads
from autopar._worker import Failure

# -- the rule: a pure function of the first item's clocks so far ------------------------------------------


def test_the_carry_starts_once_the_item_blocked_then_ran_without_holding_the_gil() -> None:
    wall, again = 0.02, EARLY_CARRY_PROMPT_LOOKS - 1
    assert early_carry(wall, 0.001, 0.0001, 10, again) == 10
    assert early_carry(wall, 0.001, 0.0001, 100, again) == MAX_THREADS


def test_a_single_prompt_look_is_not_enough() -> None:
    """A write after a few milliseconds of bytecode gives the GIL up promptly, once."""
    assert early_carry(0.02, 0.001, 0.0001, 10, EARLY_CARRY_PROMPT_LOOKS - 2) == 0


def test_an_item_that_ran_while_the_watcher_waited_for_the_gil_runs_bytecode_and_ends_the_watch() -> None:
    assert early_carry(0.03, 0.005, EARLY_CARRY_LATE_S * 2, 10, EARLY_CARRY_PROMPT_LOOKS) is None


def test_the_watch_looks_again_until_the_item_has_run_a_while_and_has_run_since_the_last_look() -> None:
    assert early_carry(EARLY_CARRY_AFTER_S / 2, 0.0, 0.0, 10, EARLY_CARRY_PROMPT_LOOKS) == 0
    assert early_carry(0.01, 0.0, None, 10, EARLY_CARRY_PROMPT_LOOKS) == 0  # asleep since the last look


def test_an_item_that_computes_from_its_start_ends_the_watch() -> None:
    assert early_carry(0.01, 0.009, 0.0, 10, EARLY_CARRY_PROMPT_LOOKS) is None


def test_no_carry_starts_early_for_too_few_items_an_unknown_count_or_a_long_rest() -> None:
    again = EARLY_CARRY_PROMPT_LOOKS - 1
    assert early_carry(0.02, 0.001, 0.0, 1, again) is None
    assert early_carry(0.02, 0.001, 0.0, None, again) is None
    too_many = int(CARRY_MAX_WORK_S / 0.02) + 1
    assert early_carry(0.02, 0.001, 0.0, too_many, again) is None
    assert early_carry(0.02, 0.001, 0.0, too_many - 2, again) == min(too_many - 2, MAX_THREADS)


def test_a_look_tests_the_gil_only_where_the_item_kept_a_cpu_busy_through_it() -> None:
    """Hashing in C runs through a look; a write after a burst of bytecode, or a wait, does not."""
    assert early_look_ran(0.0011, 0.0012)
    assert early_look_ran(EARLY_CARRY_BUSY_SHARE * 0.001, 0.001)
    assert not early_look_ran(0.0001, 0.0012)
    assert not early_look_ran(0.0, 0.001)


def test_the_gil_is_seen_released_at_prompt_looks_in_a_row_and_held_at_one_late_look() -> None:
    assert gil_seen(None, 5) is None  # the item did not run through the look: nothing seen
    assert gil_seen(0.0001, EARLY_CARRY_PROMPT_LOOKS - 2) is None  # one prompt look is not enough
    assert gil_seen(0.0001, EARLY_CARRY_PROMPT_LOOKS - 1) is True
    assert gil_seen(EARLY_CARRY_LATE_S, EARLY_CARRY_PROMPT_LOOKS) is False


def test_threads_are_parked_while_the_item_blocks_and_not_while_it_computes() -> None:
    assert early_park(0.01, 0.0)
    assert not early_park(EARLY_CARRY_AFTER_S / 2, 0.0)
    assert not early_park(0.01, 0.009)


# -- real items, real threads ---------------------------------------------------------------------------

needs_watch = pytest.mark.skipif(
    caller_cpu_clock() is None or (os.cpu_count() or 1) < 2, reason="needs a thread CPU clock and 2 CPUs"
)
_BLOCK = bytes(1 << 20)


class Timed:
    """Records, per item, the thread that ran it and when; waits, then computes for a while."""

    def __init__(self, compute: str, fail_first: bool = False, burst_s: float = 0.08) -> None:
        self.compute = compute
        self.fail_first = fail_first
        self.burst_s = burst_s
        self.lock = threading.Lock()
        self.runs: dict[int, list[tuple[int, float, float]]] = {}

    def __call__(self, x: int) -> int:
        began = time.perf_counter()
        time.sleep(0.02)
        if self.compute == "c":  # hashing in C: the GIL is released for each megabyte
            digest = hashlib.sha256()
            while time.perf_counter() - began < 0.12:
                digest.update(_BLOCK)
        else:  # Python bytecode: the GIL is held
            computing = time.thread_time()
            while time.thread_time() - computing < self.burst_s:
                sum(range(200))
            if self.compute == "burst":  # a short burst, then a wait: a write, a reply
                time.sleep(0.01)
        with self.lock:
            self.runs.setdefault(x, []).append((threading.get_ident(), began, time.perf_counter()))
        if self.fail_first and x == 0:
            raise ValueError("bad item 0")
        return x * 2

    def first_ended(self) -> float:
        return self.runs[0][0][2]

    def began_elsewhere(self) -> list[float]:
        """When each item that a thread other than the caller's ran began."""
        caller = threading.get_ident()
        return sorted(began for runs in self.runs.values() for ident, began, _ in runs if ident != caller)


def _alone() -> None:
    """Wait for threads other tests left running to end: one running bytecode holds the GIL, as an item might."""
    deadline = time.monotonic() + 20
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.01)


def _early(func: Timed, n: int, judge: bool, attempts: int = 4) -> Any:
    """Calibrate ``func`` over ``n`` items until its carry starts during the first item; that calibration.

    A single late look at the GIL (a garbage collection, another test's thread) ends a watch, so the
    first attempt may not start early; every attempt must still run each item once, in order.
    """
    for _ in range(attempts):
        func.runs.clear()
        threads = os_threads()
        cal = calibrate(func, iter(range(n)), n_items=n, facts=call_facts(), judge=lambda m: judge)
        assert all(len(runs) == 1 for runs in func.runs.values())  # every item once
        assert os_threads() <= threads  # the watcher and the carry's threads are gone
        if func.began_elsewhere() and func.began_elsewhere()[0] < func.first_ended():
            return cal
        assert sorted(func.runs) == list(range(len(cal.results)))  # the items calibration kept
    pytest.fail(f"the carry never started during the first item in {attempts} calls")


@needs_watch
@pytest.mark.timeout(60)
def test_items_that_wait_then_hash_carry_on_threads_started_before_the_first_item_ended() -> None:
    func = Timed("c")
    cal = _early(func, 6, judge=True)
    assert cal.results == [x * 2 for x in range(6)]
    assert sorted(func.runs) == list(range(6))
    assert func.runs[0][0][0] == threading.get_ident()  # the first item ran in the caller
    assert cal.carried
    assert cal.measurements.sampled == 1 + cal.measurements.thread_probe_workers


@needs_watch
@pytest.mark.timeout(60)
def test_items_that_wait_then_run_bytecode_start_no_thread_before_the_first_item_ends() -> None:
    func = Timed("python")
    cal = calibrate(func, iter(range(6)), n_items=6, facts=call_facts(), judge=lambda m: False)
    assert cal.results[: len(func.runs)] == [x * 2 for x in sorted(func.runs)]
    assert all(len(runs) == 1 for runs in func.runs.values())
    assert all(began > func.first_ended() for began in func.began_elsewhere())


@needs_watch
@pytest.mark.timeout(60)
def test_items_that_wait_then_run_a_short_burst_of_bytecode_then_wait_start_no_thread_early() -> None:
    """3 ms of bytecode, under the 5 ms switch interval, then a wait: the watcher may get the GIL promptly after it."""
    for _ in range(5):
        func = Timed("burst", burst_s=0.003)
        calibrate(func, iter(range(6)), n_items=6, facts=call_facts(), judge=lambda m: False)
        assert all(len(runs) == 1 for runs in func.runs.values())
        assert all(began > func.first_ended() for began in func.began_elsewhere())


@needs_watch
@pytest.mark.timeout(60)
def test_a_first_item_that_raises_beside_an_early_carry_ends_the_input_and_leaves_no_thread_behind() -> None:
    func = Timed("c", fail_first=True)
    cal = _early(func, 6, judge=True)
    assert cal.exhausted
    assert len(cal.results) == 1  # the carried items' results are dropped: the call raises the failure
    assert isinstance(cal.results[0], Failure)
    assert "bad item 0" in str(cal.results[0].exception())


@needs_watch
@pytest.mark.timeout(60)
def test_a_carry_started_early_is_stopped_when_the_judge_prefers_another_strategy() -> None:
    func = Timed("c")
    cal = _early(func, 100, judge=False)
    assert not cal.carried
    assert cal.results == [x * 2 for x in range(len(cal.results))]  # the items run so far, in order
    assert sorted(func.runs) == list(range(len(cal.results)))
    assert len(cal.results) < 100  # the rest is left for the chosen strategy


def _count(n: int) -> int:
    while n:
        n -= 1
    return n


@needs_watch
@pytest.mark.timeout(60)
def test_the_watch_on_the_first_item_leaves_the_samples_profile_to_the_items() -> None:
    """Starting and ending the watcher is neither timed nor profiled: short bytecode items read as bytecode.

    Profiled with them, the thread start's waits made 40,000 items of 35 us look like C code, and a thread
    probe ran where none can help.
    """
    _alone()
    cal = calibrate(_count, iter([700] * 40_000), n_items=40_000, facts=call_facts(), judge=lambda m: False)
    assert cal.measurements.thread_probe_workers == 0
    assert cal.results == [0] * len(cal.results)


class Told:
    """The early workers' side of calibration: records when, and from which thread, the first item was said to block."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[int, float]] = []

    def blocked(self) -> None:
        self.calls.append((threading.get_ident(), time.perf_counter()))
        if self.fail:
            raise RuntimeError("the early pool broke")

    def sampled(self, m: Any, c_share: float | None) -> Any:
        return m


def _hash_for(seconds: float) -> int:
    """Hash in C, which releases the GIL for each megabyte, from the start, for ``seconds``."""
    began, digest = time.perf_counter(), hashlib.sha256()
    while time.perf_counter() - began < seconds:
        digest.update(_BLOCK)
    return 0


def _bytecode_for(seconds: float) -> int:
    """Run Python bytecode, which holds the GIL, for ``seconds`` of CPU time."""
    began = time.thread_time()
    while time.thread_time() - began < seconds:
        sum(range(200))
    return 0


def _gil_of(func: Any, seconds: float) -> bool | None:
    """What the watch of a first item running ``func(seconds)`` saw of its GIL."""
    watch = watch_first(func, iter([seconds] * 3), 4, False, Clocks(), call_facts(), allowed=True)
    assert watch is not None
    threads = os_threads()
    with watch.at(1):
        func(seconds)
    assert os_threads() <= threads  # the watcher is gone
    assert watch.carrying is None  # items that compute from their start start no carry
    return watch.gil


@needs_watch
@pytest.mark.timeout(60)
def test_the_watch_tells_c_code_that_releases_the_gil_from_bytecode_that_holds_it() -> None:
    """A single late look (a garbage collection, another process on the CPU) may hide a release: a few tries."""
    _alone()
    assert any(_gil_of(_hash_for, 0.05) is True for _ in range(4))
    assert _gil_of(_bytecode_for, 0.05) is False


@needs_watch
@pytest.mark.timeout(60)
def test_the_early_workers_are_told_once_while_the_first_item_blocks() -> None:
    func, told = Timed("python"), Told()
    cal = calibrate(func, iter(range(6)), n_items=6, facts=call_facts(), judge=lambda m: False, early_workers=told)
    assert cal.results[: len(func.runs)] == [x * 2 for x in sorted(func.runs)]
    assert len(told.calls) == 1
    ident, at = told.calls[0]
    assert ident != threading.get_ident()  # the watcher, while the caller ran the item
    assert func.runs[0][0][1] < at < func.first_ended()


@needs_watch
@pytest.mark.timeout(60)
def test_the_early_workers_are_not_told_of_items_that_compute_from_their_start() -> None:
    _alone()
    told = Told()
    cal = calibrate(
        _count, iter([3_000_000] * 4), n_items=4, facts=call_facts(), judge=lambda m: False, early_workers=told
    )
    assert cal.results == [0] * len(cal.results)
    assert told.calls == []


@needs_watch
@pytest.mark.timeout(60)
def test_what_telling_the_early_workers_raises_is_raised_in_the_caller_after_the_first_item() -> None:
    """An item it read may be lost with the error: the call fails instead of returning without it."""
    func, told = Timed("python"), Told(fail=True)
    threads = os_threads()
    with pytest.raises(RuntimeError, match="the early pool broke"):
        calibrate(func, iter(range(6)), n_items=6, facts=call_facts(), judge=lambda m: False, early_workers=told)
    assert sorted(func.runs) == [0]  # raised at the end of the first item, before the next
    assert os_threads() <= threads
