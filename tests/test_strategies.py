"""Every built-in strategy: results in input order, empty input, errors, options, crashes and shipping functions.

Each behaviour runs under the ``strategy`` fixture (serial, threads, fork,
forkserver, spawn) or, for worker deaths, under ``process_strategy``.  Calls in
one test keep the strategy and worker count constant so they share a pool.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

import psutil  # type: ignore[import-untyped,unused-ignore]
import pytest

import autopar
import helpers
from autopar import _pools
from autopar._model import PoolSpec
from autopar._strategies._process._pool import ProcessPool
from conftest import live_children, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

N_ITEMS = 40
EXPECTED = [x * x for x in range(N_ITEMS)]

#: How each kind of input is built from ``range(n)``.
INPUT_KINDS: dict[str, Callable[[int], Iterable[int]]] = {
    "list": lambda n: list(range(n)),
    "tuple": lambda n: tuple(range(n)),
    "range": range,
    "generator": lambda n: (x for x in range(n)),
}


def _is_dead(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


# -- results and order ---------------------------------------------------------


def test_map_returns_results_in_input_order_for_every_input_kind(strategy: str) -> None:
    """map returns [func(x) for x in items] in input order for a list, a tuple, a range and a generator."""
    for kind, build in INPUT_KINDS.items():
        result = autopar.map(helpers.square, build(N_ITEMS), strategy=strategy, workers=2, chunksize=1)
        assert result == EXPECTED, kind


def test_map_returns_results_in_input_order_with_multi_item_chunks(strategy: str) -> None:
    """Chunks of several items are reassembled in input order, including a short last chunk."""
    assert autopar.map(helpers.square, range(N_ITEMS + 3), strategy=strategy, workers=2, chunksize=7) == [
        x * x for x in range(N_ITEMS + 3)
    ]


@pytest.mark.parametrize("kind", list(INPUT_KINDS))
def test_map_returns_empty_list_without_a_pool_for_empty_input(strategy: str, kind: str) -> None:
    """An empty input returns [] and starts neither a pool nor a child process."""
    before = live_children()
    assert autopar.map(helpers.square, INPUT_KINDS[kind](0), strategy=strategy, workers=2) == []
    assert list(autopar.imap(helpers.square, INPUT_KINDS[kind](0), strategy=strategy, workers=2)) == []
    assert _pools.live_pools() == []
    assert live_children() - before == set()


# -- exceptions raised by func -------------------------------------------------


def test_map_raises_the_original_exception_with_the_worker_traceback_as_cause(strategy: str) -> None:
    """An exception in func reaches the caller with its type and message, and the worker traceback as __cause__."""
    with pytest.raises(ValueError, match=r"^bad item 3$") as info:
        autopar.map(helpers.fail_on_3, range(10), strategy=strategy, workers=2, chunksize=1)
    assert type(info.value) is ValueError
    cause = info.value.__cause__
    assert cause is not None
    assert "fail_on" in str(cause)
    assert "Traceback" in str(cause)


def test_map_after_an_exception_in_func_works(strategy: str) -> None:
    """A call that raised leaves the strategy usable: the next call returns correct results."""
    with pytest.raises(ValueError, match="bad item 3"):
        autopar.map(helpers.fail_on_3, range(10), strategy=strategy, workers=2, chunksize=1)
    assert autopar.map(helpers.square, range(N_ITEMS), strategy=strategy, workers=2, chunksize=1) == EXPECTED


# -- workers and chunksize -----------------------------------------------------


def test_map_uses_at_most_the_given_workers_and_keeps_each_chunk_on_one_worker(strategy: str) -> None:
    """workers=2 runs the items on at most two workers, and each chunk of 4 runs on a single worker."""
    ids = autopar.map(helpers.worker_id, range(32), strategy=strategy, workers=2, chunksize=4)
    assert len(set(ids)) <= 2
    for start in range(0, 32, 4):
        assert len(set(ids[start : start + 4])) == 1, f"chunk starting at {start} ran on several workers"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_map_over_many_items_uses_at_most_two_processes_with_workers_2(method: str) -> None:
    """pid_of over many items under fork or spawn with workers=2 shows at most two distinct worker pids."""
    pids = set(autopar.map(helpers.pid_of, range(400), strategy=method, workers=2))
    assert 1 <= len(pids) <= 2
    assert os.getpid() not in pids


def test_explain_reports_the_forced_workers_and_chunksize(strategy: str) -> None:
    """explain() of a forced call reports the workers and chunksize it was given (one worker for serial)."""
    decision = autopar.explain(helpers.square, range(100), strategy=strategy, workers=2, chunksize=5)
    assert (decision.strategy, decision.chunksize, decision.forced) == (strategy, 5, True)
    assert decision.workers == (1 if strategy == "serial" else 2)


# -- worker crashes ------------------------------------------------------------
#
# Two workers with chunks of two: item 3 is the second item of its chunk, and the
# other worker's results reach the caller around the crash.  ``timeout`` turns a
# hang into a TimeoutError well inside the test's own timeout.

CRASHES = [
    pytest.param(helpers.segfault_quietly_on_3, -11, "SIGSEGV", id="segfault"),
    pytest.param(helpers.exit_on_3, 7, "exit code 7", id="exit-7"),
]


@pytest.mark.parametrize(("func", "exitcode", "words"), CRASHES)
def test_map_raises_worker_crashed_error_naming_item_and_cause_when_a_worker_dies(
    process_strategy: str, func: Callable[[int], int], exitcode: int, words: str
) -> None:
    """A worker dying on item 3 raises WorkerCrashedError (a BrokenProcessPool) naming item 3 and the signal or exit code."""
    with pytest.raises(autopar.WorkerCrashedError) as info:
        autopar.map(func, range(10), strategy=process_strategy, workers=2, chunksize=2, timeout=30)
    error = info.value
    assert isinstance(error, BrokenProcessPool)
    assert isinstance(error, autopar.AutoparError)
    assert error.index == 3
    assert error.exitcode == exitcode
    assert "item 3" in str(error)
    assert words in str(error)
    assert process_strategy in str(error)


@pytest.mark.parametrize(("func", "exitcode", "words"), CRASHES)
def test_map_after_a_worker_crash_works(
    process_strategy: str, func: Callable[[int], int], exitcode: int, words: str
) -> None:
    """After a worker crash, the next call with the same strategy returns correct results."""
    with pytest.raises(autopar.WorkerCrashedError):
        autopar.map(func, range(10), strategy=process_strategy, workers=2, chunksize=2, timeout=30)
    assert autopar.map(helpers.square, range(N_ITEMS), strategy=process_strategy, workers=2) == EXPECTED


def test_pool_reports_a_crash_when_the_worker_died_before_the_next_submit(process_strategy: str) -> None:
    """A worker that dies while the caller is between poll and submit is still reported as crashed."""
    pool = ProcessPool(process_strategy, 2, PoolSpec())
    try:
        pids = pool.pids()
        pool.submit(0, helpers.exit_on_3, [3], 3, False)
        assert wait_until(lambda: any(_is_dead(pid) for pid in pids))
        pool.submit(1, helpers.square, [4], 4, False)
        outcomes: dict[int, tuple[Any, BaseException | None]] = {}
        while len(outcomes) < 2:
            polled = pool.poll(30)
            if not polled:
                break
            outcomes.update({task_id: (results, error) for task_id, results, error in polled})
        assert outcomes.get(1) == ([16], None)
        assert 0 in outcomes, "the crashed task was never reported"
        assert isinstance(outcomes[0][1], autopar.WorkerCrashedError)
    finally:
        pool.shutdown()


# -- shipping functions that pickle only by value --------------------------------


def test_fork_runs_a_lambda_and_a_closure_by_inheritance() -> None:
    """fork workers inherit a lambda or a closure, so neither needs to be pickled."""
    offset = 10
    assert autopar.map(lambda x: x * 2, range(20), strategy="fork", workers=2) == [x * 2 for x in range(20)]

    def add_offset(x: int) -> int:
        return x + offset

    assert autopar.map(add_offset, range(20), strategy="fork", workers=2) == [x + 10 for x in range(20)]


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_forced_fresh_interpreter_ships_a_lambda_and_a_closure_with_cloudpickle(method: str) -> None:
    """With cloudpickle installed, forced spawn or forkserver ships a lambda and a closure by value."""
    pytest.importorskip("cloudpickle")
    offset = 10

    def add_offset(x: int) -> int:
        return x + offset

    assert autopar.map(lambda x: x * 2, range(20), strategy=method, workers=2) == [x * 2 for x in range(20)]
    assert autopar.map(add_offset, range(20), strategy=method, workers=2) == [x + 10 for x in range(20)]


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_forced_fresh_interpreter_raises_for_a_closure_holding_a_lock(method: str) -> None:
    """A closure holding a lock cannot go even by value: SerializationError naming the cell, no worker started."""
    lock = threading.Lock()

    def locked(x: int) -> int:
        with lock:
            return x

    before = live_children()
    with pytest.raises(autopar.SerializationError) as info:
        autopar.map(locked, range(20), strategy=method, workers=2)
    message = str(info.value)
    assert "locked" in message
    assert "closure cell 'lock'" in message
    assert "lock" in message
    assert method in message
    assert _pools.live_pools() == []
    assert live_children() - before == set()


def test_auto_runs_a_closure_holding_a_lock_elsewhere_and_says_why() -> None:
    """Under auto, a function that cannot be sent even by value runs without fresh interpreters, with the reason."""
    lock = threading.Lock()

    def locked(x: int) -> int:
        with lock:
            return sum(range(2000)) + x

    assert autopar.map(locked, range(50)) == [sum(range(2000)) + x for x in range(50)]
    text = autopar.explain(locked, range(50))
    assert "closure cell 'lock'" in str(text)


@pytest.mark.timeout(60)
def test_forced_unsafe_fork_warns_once_at_the_callers_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forcing fork while another thread runs warns UnsafeStrategyWarning once, pointing at the caller's line."""
    import threading
    import warnings

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert autopar.map(helpers.square, range(8), strategy="fork", workers=2) == [x * x for x in range(8)]
            assert autopar.map(helpers.square, range(8), strategy="fork", workers=2) == [x * x for x in range(8)]
    finally:
        stop.set()
        thread.join()
    unsafe = [w for w in caught if issubclass(w.category, autopar.UnsafeStrategyWarning)]
    assert len(unsafe) == 1, [str(w.message) for w in caught]
    assert unsafe[0].filename == __file__
    assert "fork" in str(unsafe[0].message)
