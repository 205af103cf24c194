"""Reliability: timeouts and Ctrl-C stop workers, long use leaks nothing, streams stay bounded, results are exact."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autopar
import helpers
from conftest import wait_until

#: Python 3.12+ warns (3.15 by default) when ``os.fork()`` runs while the process has other threads; these
#: tests fork on purpose from a process that runs one (autopar warns with ``UnsafeStrategyWarning`` too).
FORK_WITH_THREADS = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)

ITEMS = list(range(6))


def assert_next_call_works(strategy: str) -> None:
    """A plain call with ``strategy`` returns correct results."""
    assert autopar.map(helpers.square, ITEMS, strategy=strategy, workers=2) == [x * x for x in ITEMS]


def child_pids() -> set[int]:
    """Process ids of this process's live descendants."""
    return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}


def all_gone(pids: Iterable[int]) -> bool:
    """Whether none of ``pids`` is a running process."""
    return not any(psutil.pid_exists(pid) for pid in pids)


# -- timeout ---------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_timeout_raises_and_stops_sleeping_workers_process_strategy(process_strategy: str, tmp_path: Path) -> None:
    """timeout= ends a call whose items sleep for 30 s with TimeoutError and terminates the sleeping workers."""
    assert_next_call_works(process_strategy)  # starts the workers, so the 2 s go to the items
    before = child_pids()
    items = [(str(tmp_path), 30.0), (str(tmp_path), 30.0)]
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out after 2"):
        autopar.map(helpers.touch_then_sleep, items, strategy=process_strategy, workers=2, chunksize=1, timeout=2)
    assert time.monotonic() - started < 10  # a guard: the items alone would take 30 s
    sleepers = {int(name) for name in os.listdir(tmp_path)}  # each worker wrote its pid before sleeping
    assert sleepers
    assert wait_until(lambda: all_gone(sleepers) and child_pids() <= before, timeout=5)
    assert_next_call_works(process_strategy)


@pytest.mark.timeout(20)
def test_timeout_raises_promptly_threads_while_item_still_runs() -> None:
    """With threads the caller gets TimeoutError at once although the thread running the item goes on."""
    release = threading.Event()
    running = threading.Event()

    def wait_for_release(x: int) -> int:
        running.set()
        release.wait(timeout=30)
        return x

    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="timed out"):
            autopar.map(wait_for_release, [1, 2], strategy="threads", workers=2, chunksize=1, timeout=0.5)
        assert time.monotonic() - started < 10  # a guard: the items wait 30 s for the release
        assert running.is_set()
        assert any(t.name.startswith("autopar-thread") and t.is_alive() for t in threading.enumerate())
    finally:
        release.set()
    assert_next_call_works("threads")


# -- Ctrl-C ----------------------------------------------------------------------


@FORK_WITH_THREADS
@pytest.mark.timeout(40)
def test_keyboard_interrupt_stops_workers_process_strategy(process_strategy: str, tmp_path: Path) -> None:
    """SIGINT in the main thread during map re-raises KeyboardInterrupt and ends the workers within 2 s."""
    started_dir = tmp_path / "started"
    started_dir.mkdir()
    items = [(str(started_dir), 60.0), (str(started_dir), 60.0)]
    call_over = threading.Event()
    interrupted_at: list[float] = []

    def interrupt_when_both_run() -> None:
        # Each worker creates a file named by its pid before it sleeps.
        wait_until(lambda: call_over.is_set() or len(os.listdir(started_dir)) == 2, timeout=30)
        if not call_over.is_set():
            interrupted_at.append(time.monotonic())
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # type: ignore[arg-type]

    interrupter = threading.Thread(target=interrupt_when_both_run, name="interrupter")
    try:
        # The interrupter thread makes fork report itself unsafe; it only polls a directory.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", autopar.UnsafeStrategyWarning)
            interrupter.start()
            with pytest.raises(KeyboardInterrupt):
                autopar.map(helpers.touch_then_sleep, items, strategy=process_strategy, workers=2, chunksize=1)
    finally:
        call_over.set()
        interrupter.join(timeout=30)
    assert interrupted_at, "the workers never started"
    pids = {int(name) for name in os.listdir(started_dir)}
    assert len(pids) == 2
    assert wait_until(lambda: all_gone(pids), timeout=10)
    assert time.monotonic() - interrupted_at[0] < 2.5  # a guard on "within 2 s", not a benchmark
    assert_next_call_works(process_strategy)


# -- sustained use ---------------------------------------------------------------


def _snapshot() -> tuple[int, int, set[int]]:
    return psutil.Process().num_fds(), threading.active_count(), child_pids()


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["threads", "fork"])
def test_thousand_calls_leak_no_fds_threads_or_processes(strategy: str) -> None:
    """1000 consecutive small calls leave the open file descriptors, threads and child processes as they were."""
    items = [1, 2, 3, 4]
    expected = [x * x for x in items]
    assert autopar.map(helpers.square, items, strategy=strategy, workers=2, chunksize=1) == expected  # warm pool
    fds, threads, children = _snapshot()
    for _ in range(1000):
        assert autopar.map(helpers.square, items, strategy=strategy, workers=2, chunksize=1) == expected
    fds_after, threads_after, children_after = _snapshot()
    assert fds_after - fds <= 5
    assert threads_after == threads
    assert children_after == children


# -- bounded memory --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["threads", "fork"])
def test_imap_over_million_items_stays_bounded(strategy: str) -> None:
    """imap over a generator of a million items reads only a bounded window ahead and keeps RSS growth small."""
    total, chunksize, workers = 1_000_000, 1_000, 2
    pulled = 0

    def numbers() -> Iterator[int]:
        nonlocal pulled
        for x in range(total):
            pulled += 1
            yield x

    me = psutil.Process()
    rss_before = me.memory_info().rss
    lead = 0
    peak_rss = rss_before
    consumed = 0
    for consumed, result in enumerate(
        autopar.imap(helpers.square, numbers(), strategy=strategy, workers=workers, chunksize=chunksize), start=1
    ):
        assert result == (consumed - 1) ** 2
        lead = max(lead, pulled - consumed)
        if consumed % 100_000 == 0:
            peak_rss = max(peak_rss, me.memory_info().rss)
    assert consumed == total
    assert lead >= chunksize - 1  # the window was measured while a chunk was being consumed
    # At most a few chunks per worker are read ahead of the consumer: thousands, not a million.
    assert lead <= 2 * 4 * workers * chunksize
    assert peak_rss - rss_before < 100 * 1024 * 1024


# -- properties ------------------------------------------------------------------

SHAPES = ("list", "tuple", "generator")


def shaped(items: list[Any], shape: str) -> Iterable[Any]:
    """``items`` as a list, a tuple or a generator."""
    if shape == "list":
        return list(items)
    if shape == "tuple":
        return tuple(items)
    return (x for x in items)


@pytest.mark.parametrize("strategy", ["serial", "threads"])
@settings(deadline=None, max_examples=25)
@given(
    items=st.lists(st.integers(-1000, 1000), max_size=60),
    chunksize=st.integers(1, 50),
    shape=st.sampled_from(SHAPES),
)
def test_map_equals_list_comprehension_in_caller_process(
    strategy: str, items: list[int], chunksize: int, shape: str
) -> None:
    """map returns [f(x) for x in items] in order and calls f exactly once per item, for any input shape."""
    calls: list[int] = []

    def f(x: int) -> int:
        calls.append(x)
        return 3 * x + 1

    result = autopar.map(f, shaped(items, shape), strategy=strategy, workers=2, chunksize=chunksize)
    assert result == [3 * x + 1 for x in items]
    assert Counter(calls) == Counter(items)


@settings(deadline=None, max_examples=25)
@given(
    items=st.lists(st.integers(-1000, 1000), max_size=60),
    chunksize=st.integers(1, 50),
    shape=st.sampled_from(SHAPES),
)
def test_map_equals_list_comprehension_fork(
    tmp_path_factory: pytest.TempPathFactory, items: list[int], chunksize: int, shape: str
) -> None:
    """With fork workers map returns [f(x) for x in items] in order and runs each item exactly once."""
    fd, log = tempfile.mkstemp(dir=tmp_path_factory.getbasetemp(), suffix=".log")
    os.close(fd)
    args = [(log, x) for x in items]
    result = autopar.map(helpers.record_square, shaped(args, shape), strategy="fork", workers=2, chunksize=chunksize)
    assert result == [x * x for x in items]
    with open(log) as f:
        ran = [int(line) for line in f]
    assert Counter(ran) == Counter(items)
