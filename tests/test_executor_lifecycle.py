"""``autopar.Executor``: shutdown, cancellation, timeouts, and process pools whose workers die."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import multiprocessing.resource_tracker
import sys
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest

import autopar
from conftest import wait_until
from helpers import pass_gate, pid_of, remember, segfault_quietly_on_3, sleep_for, square

PROCESSES = ("fork", "forkserver", "spawn")


# -- shutdown, cancellation, timeouts ----------------------------------------------------------------------------------


def _outcome(future: concurrent.futures.Future[Any]) -> Any:
    """The future's result, or "cancelled", once it is one or the other (a deadlock guard of 30 s)."""
    try:
        return future.result(timeout=30)
    except concurrent.futures.CancelledError:
        return "cancelled"


@pytest.mark.parametrize("strategy", ["threads", *PROCESSES, "auto"])
def test_shutdown_cancel_futures_cancels_pending_calls(strategy: str) -> None:
    """shutdown(cancel_futures=True) cancels the calls not yet started; the running one completes."""
    method = strategy if strategy in PROCESSES else None
    gate = multiprocessing.get_context(method).Event()
    executor = autopar.Executor(strategy, workers=1, initializer=remember, initargs=("gate", gate))
    first = executor.submit(pass_gate, 0)
    # A thread pool's worker may not have taken the first call off its queue yet (on 3.14, the new
    # thread often waits for the GIL while the caller submits): only a running call survives the
    # shutdown, so wait until it runs (issue 17).
    assert wait_until(first.running, timeout=30)
    pending = [executor.submit(pass_gate, x) for x in range(1, 11)]
    executor.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert first.result(timeout=30) == 0
    outcomes = [_outcome(f) for f in pending]
    # A process pool has already handed up to workers + 1 calls to its queue: those run.
    assert outcomes.count("cancelled") >= 8
    assert all(outcome in ("cancelled", x) for x, outcome in enumerate(outcomes, 1))
    executor.shutdown(wait=True)


@pytest.mark.parametrize("strategy", PROCESSES)
def test_cancel_pending_process_call_marks_future_done(strategy: str) -> None:
    """Cancelling a process pool call that waits in line succeeds, and wait() then counts it as done."""
    gate = multiprocessing.get_context(strategy).Event()
    with autopar.Executor(strategy, workers=1, initializer=remember, initargs=("gate", gate)) as executor:
        futures = [executor.submit(pass_gate, x) for x in range(5)]
        last = futures[-1]
        assert not last.running()
        assert last.cancel()
        assert last.cancelled()
        done, _ = concurrent.futures.wait([last], timeout=30)
        assert done == {last}
        gate.set()
        assert [f.result(timeout=30) for f in futures[:-1]] == [0, 1, 2, 3]
        assert not futures[0].cancel()


@pytest.mark.parametrize("strategy", ["threads", "auto"])
def test_map_timeout_raises_timeout_error_from_iterator(strategy: str) -> None:
    """map's timeout raises concurrent.futures.TimeoutError (the builtin one since 3.11) from the iterator."""
    with autopar.Executor(strategy, workers=2) as executor:
        results = executor.map(sleep_for, [0.0, 2.0], timeout=0.5)
        with pytest.raises(concurrent.futures.TimeoutError):
            list(results)


# -- process pools -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", PROCESSES)
def test_worker_crash_raises_worker_crashed_error(strategy: str) -> None:
    """A dead worker fails its future with WorkerCrashedError, a BrokenProcessPool, and the pool stays broken."""
    with autopar.Executor(strategy, workers=1) as executor:
        error = executor.submit(segfault_quietly_on_3, 3).exception(timeout=30)
        assert isinstance(error, autopar.WorkerCrashedError)
        assert isinstance(error, BrokenProcessPool)
        assert "SIGSEGV" in str(error) or "segmentation fault" in str(error)
        with pytest.raises(autopar.WorkerCrashedError, match="earlier call"):
            executor.submit(square, 1)


@pytest.mark.parametrize("strategy", PROCESSES)
def test_worker_crash_in_map_raises_worker_crashed_error(strategy: str) -> None:
    """A worker dying during map raises WorkerCrashedError from the iterator."""
    with autopar.Executor(strategy, workers=1) as executor, pytest.raises(autopar.WorkerCrashedError):
        list(executor.map(segfault_quietly_on_3, range(6)))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ProcessPoolExecutor has max_tasks_per_child from 3.11")
def test_max_tasks_per_worker_replaces_processes() -> None:
    """With max_tasks_per_worker=1 every call runs in a fresh worker process."""
    with autopar.Executor("spawn", workers=1, max_tasks_per_worker=1) as executor:
        pids = [executor.submit(pid_of, x).result(timeout=30) for x in range(3)]
    assert len(set(pids)) == 3
