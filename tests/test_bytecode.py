"""How much of an item's CPU runs in C: read with a profiler, or a budgeted tracer before 3.12 (``_bytecode``)."""

from __future__ import annotations

import hashlib
import sys
import time
from typing import Any

import pytest

import helpers
from autopar._bytecode import CShare, TracedShare, c_cpu_share, sample_meter
from autopar._worker import Failure

_DATA = b"x" * (1 << 20)


def countdown(n: int) -> int:
    while n:
        n -= 1
    return n


def digest(n: int) -> bytes:
    return hashlib.sha256(_DATA[:n]).digest()


def test_python_loops_spend_almost_none_of_their_cpu_in_c() -> None:
    results: list[Any] = [-1]
    share, ended = c_cpu_share(countdown, iter([200_000] * 5), 3, False, results)
    assert share is not None
    assert share < 0.1
    assert not ended
    assert results == [-1, 0, 0, 0]  # appended after what was there, in order


def test_hashing_spends_most_of_its_cpu_in_c() -> None:
    share, _ = c_cpu_share(digest, iter([len(_DATA)] * 3), 3, False, [])
    assert share is not None
    assert share > 0.5


def test_only_the_items_asked_for_are_read() -> None:
    source = iter(range(10))
    results: list[Any] = []
    c_cpu_share(abs, source, 4, False, results)
    assert results == [0, 1, 2, 3]
    assert next(source) == 4


def test_a_short_input_ends_and_an_empty_one_reads_nothing() -> None:
    results: list[Any] = []
    assert c_cpu_share(abs, iter([5, 6]), 4, False, results)[1] is True
    assert results == [5, 6]
    assert c_cpu_share(abs, iter([]), 4, False, results) == (None, True)


def test_a_failing_item_ends_the_input_with_its_failure_last() -> None:
    """As in the serial sample: the results before it, then its ``Failure``; nothing after it is read."""
    source = iter([1, 2, 3, 4, 5])
    results: list[Any] = []
    share, ended = c_cpu_share(helpers.fail_on_3, source, 4, False, results)
    assert (share, ended) == (None, True)
    assert results[:2] == [1, 2]
    assert isinstance(results[2], Failure)
    with pytest.raises(ValueError, match="3"):
        raise results[2].exception()
    assert list(source) == [5]  # the batch of 4 was read; 4 never ran
    assert sys.getprofile() is None


def test_a_profiler_already_set_is_left_alone() -> None:
    """A user's profiler is never replaced: nothing runs and no share is read."""

    sys.setprofile(users)
    try:
        source = iter([1, 2])
        assert c_cpu_share(abs, source, 2, False, []) == (None, False)
        assert sys.getprofile() is users
        assert next(source) == 1
    finally:
        sys.setprofile(None)


def users(frame: Any, event: str, arg: Any) -> None:
    """A profiler or tracer of the program's own (a debugger, coverage) that the meters must leave alone."""
    return None


def _calls(n: int) -> int:
    return sum(abs(i) for i in range(n))


def test_the_meter_reads_python_loops_low_and_hashing_high() -> None:
    python, hashing = CShare(), CShare()
    with python:
        countdown(200_000)
    with hashing:
        digest(len(_DATA))
    assert python.share is not None
    assert python.share < 0.1
    assert hashing.share is not None
    assert hashing.share > 0.5
    assert sys.getprofile() is None


def test_the_meter_removes_itself_once_its_events_are_spent() -> None:
    """A call-heavy batch pays for ``events`` profiler events at most: the meter leaves in the middle of it."""
    meter = CShare(events=50)
    with meter:
        _calls(1000)
        inside = sys.getprofile()
    assert inside is None
    assert meter.done
    assert meter.share is not None
    with meter:  # spent: it installs no more
        assert sys.getprofile() is None


def test_the_meter_installs_no_more_once_it_saw_enough_cpu() -> None:
    meter = CShare(cpu_s=0.001)
    with meter:
        countdown(2_000_000)
    assert meter.done
    seen = meter.covered
    assert seen >= 0.001
    with meter:
        assert sys.getprofile() is None
        countdown(10_000)
    assert meter.covered == seen


def test_reset_forgets_the_reading_and_restores_the_budget() -> None:
    meter = CShare(events=20)
    with meter:
        _calls(100)
    assert meter.done
    meter.reset()
    assert (meter.share, meter.done) == (None, False)
    with meter:
        assert sys.getprofile() is not None


def test_a_profiler_an_item_sets_outlives_the_meter() -> None:
    """The meter removes only its own hook: an item that sets its own profiler keeps it."""

    try:
        with CShare():
            sys.setprofile(users)
        assert sys.getprofile() is users
    finally:
        sys.setprofile(None)


def test_the_meter_never_replaces_a_profiler_already_set() -> None:
    meter = CShare()
    sys.setprofile(users)
    try:
        with meter:
            assert sys.getprofile() is users
            countdown(10_000)
        assert sys.getprofile() is users
        assert meter.share is None
    finally:
        sys.setprofile(None)


def _count_then_read_own_tracer(n: int) -> object:
    """Count down, calling nothing a profiler sees; then return this frame's own tracer."""
    while n:
        n -= 1
    return sys._getframe().f_trace


def test_the_tracer_leaves_a_loop_that_calls_nothing_once_it_saw_its_budget() -> None:
    """A profiler alone would stay for the whole loop; line events let the tracer leave in the middle of it."""
    meter = TracedShare(cpu_s=0.001)
    with meter:
        left_frame_traced = _count_then_read_own_tracer(1_000_000)
        inside = (sys.gettrace(), sys.getprofile())
    assert inside == (None, None)
    assert left_frame_traced is None  # the frames it traced were cleared, not only the hooks
    assert meter.done
    assert meter.covered >= 0.001
    assert meter.share is not None
    assert meter.share < 0.1
    assert 0 < meter.slowed_s <= 0.001  # nearly all it saw was its own tracing, at most its budget


def test_the_tracer_reads_hashing_high_and_adds_little_to_it() -> None:
    meter = TracedShare(cpu_s=0.001)
    with meter:
        digest(len(_DATA))
    assert meter.share is not None
    assert meter.share > 0.5
    assert meter.slowed_s < meter.covered / 2  # C functions run at full speed under it
    assert (sys.gettrace(), sys.getprofile()) == (None, None)


def test_the_tracer_never_replaces_a_tracer_already_set() -> None:
    """A debugger's or coverage's tracer stays; the meter then reads nothing and slows nothing."""

    meter = TracedShare()
    sys.settrace(users)
    try:
        with meter:
            assert sys.gettrace() is users
            assert sys.getprofile() is None
        assert sys.gettrace() is users
    finally:
        sys.settrace(None)
    assert (meter.share, meter.slowed_s) == (None, 0.0)


def test_a_c_call_that_blocks_counts_on_neither_side() -> None:
    """A sleep's CPU time is the kernel's bookkeeping: items that wait, then run bytecode, read as bytecode."""
    meter = CShare()
    with meter:
        time.sleep(0.02)
    assert meter.in_c == 0.0
    waiting = TracedShare(cpu_s=0.0005)
    with waiting:
        time.sleep(0.02)
        countdown(500_000)
    assert waiting.share is not None
    assert waiting.share < 0.1


def test_the_sample_meter_traces_lines_only_where_the_profiler_slows_bytecode() -> None:
    meter = sample_meter(1000, 0.002)
    assert isinstance(meter, TracedShare) is (sys.version_info < (3, 12))
    assert (meter.budget, meter.cpu_s) == (1000, 0.002)


def test_a_generator_it_traced_is_left_to_the_next_tracer() -> None:
    """A generator started under the meter and resumed after it left hands its frame back at its next line."""

    def numbers() -> Any:
        yield sys._getframe()
        yield sys._getframe().f_trace

    gen = numbers()
    with TracedShare():
        frame = next(gen)
        assert frame.f_trace is not None  # the meter traces it while installed
    sys.settrace(users)  # a debugger, say, set afterwards: the meter's line hook runs once more, and lets go
    try:
        assert next(gen) is None
    finally:
        sys.settrace(None)


def test_the_tracer_watches_one_batch_until_reset() -> None:
    """The sample's first batch (one item) stands for the rest: tiny items would pay for tracing many times over."""
    meter = TracedShare(cpu_s=1.0)
    with meter:
        countdown(100)
    assert meter.done
    with meter:
        assert sys.gettrace() is None
    meter.reset()  # the batch was a warm-up (an import): the next one is watched
    assert not meter.done
    with meter:
        watched = sys.gettrace()
    assert watched is not None
    assert sys.gettrace() is None
