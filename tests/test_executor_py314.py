"""``autopar.Executor``'s Python 3.14 API on every Python: ``map(buffersize=)``, ``terminate_workers()``, ``kill_workers()``."""

from __future__ import annotations

import concurrent.futures
import gc
import itertools
import multiprocessing
import multiprocessing.resource_tracker
import operator
import os
import pickle
from collections.abc import Iterator

import psutil
import pytest

import autopar
from conftest import wait_until
from helpers import identity, pass_gate, pid_of, remember, square

PROCESSES = ("fork", "forkserver", "spawn")
EVERY = ("serial", "threads", *PROCESSES, "auto")


@pytest.fixture(autouse=True)
def _semaphores_finalized_between_tests() -> Iterator[None]:
    """Collect garbage before and after each test, outside any call into the resource tracker.

    The ``Event`` objects these tests create, and the queues of earlier executors, unregister their
    semaphores from the resource tracker when finalized; finalized by a collection that happens to
    run inside a later ``resource_tracker`` call, they raise CPython's ``ReentrantCallError`` as an
    unraisable exception in whichever test runs then.
    """
    gc.collect()
    yield
    gc.collect()


class Counted:
    """An endless input that counts how many items were read from it."""

    def __init__(self) -> None:
        self.read = 0

    def __iter__(self) -> Iterator[int]:
        for x in itertools.count():
            self.read += 1
            yield x


@pytest.mark.timeout(60)
@pytest.mark.parametrize("strategy", EVERY)
@pytest.mark.parametrize(
    ("buffersize", "error"), [("2", TypeError), (2.0, TypeError), (0, ValueError), (-1, ValueError)]
)
def test_map_buffersize_rejects_bad_values_as_cpython_does(strategy: str, buffersize: object, error: type) -> None:
    """A bad buffersize raises CPython 3.14's TypeError or ValueError, with its message, before any call runs."""
    message = "buffersize must be an integer or None" if error is TypeError else r"buffersize must be None or > 0"
    with autopar.Executor(strategy, workers=1) as executor, pytest.raises(error, match=message):
        executor.map(square, range(4), buffersize=buffersize)  # type: ignore[arg-type]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("strategy", EVERY)
def test_map_buffersize_reads_an_endless_input_a_bounded_way_ahead(strategy: str) -> None:
    """map returns after reading buffersize items, and reads one more per result consumed."""
    items = Counted()
    with autopar.Executor(strategy, workers=2) as executor:
        results = executor.map(square, items, buffersize=3)
        assert items.read == 3
        assert [next(results) for _ in range(5)] == [0, 1, 4, 9, 16]
        assert items.read == 3 + 5
        results.close()  # type: ignore[attr-defined]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("strategy", EVERY)
def test_map_buffersize_zips_iterables_in_order(strategy: str) -> None:
    """Several iterables zip as in the builtin map, the shortest ending it; results keep input order."""
    with autopar.Executor(strategy, workers=2) as executor:
        assert list(executor.map(operator.add, range(10), range(100, 107), buffersize=2)) == [
            100 + 2 * x for x in range(7)
        ]
        assert list(executor.map(square, [], buffersize=2)) == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("strategy", PROCESSES)
def test_map_buffersize_counts_chunks_on_process_pools(strategy: str) -> None:
    """With chunksize on a process pool, buffersize counts chunks: it reads buffersize * chunksize items."""
    items = Counted()
    with autopar.Executor(strategy, workers=2) as executor:
        results = executor.map(square, items, chunksize=4, buffersize=2)
        assert items.read == 8
        assert [next(results) for _ in range(6)] == [x * x for x in range(6)]
        results.close()  # type: ignore[attr-defined]


_ran: list[int] = []


def _note(x: int) -> int:
    """Record that x ran, after the gate the initializer kept opens unless x is 0 (threads only: one process)."""
    if x:
        pass_gate(x)
    _ran.append(x)
    return x


@pytest.mark.timeout(60)
def test_map_buffersize_closing_the_iterator_cancels_pending_calls() -> None:
    """Closing the results early cancels the submitted calls that have not started; no further item is read."""
    _ran.clear()
    items = Counted()
    gate = multiprocessing.get_context("spawn").Event()
    with autopar.Executor("threads", workers=1, initializer=remember, initargs=("gate", gate)) as executor:
        results = executor.map(_note, items, buffersize=4)
        assert next(results) == 0  # item 1 blocks at the gate; the ones behind it wait in the queue
        results.close()  # type: ignore[attr-defined]
        gate.set()
    assert items.read == 5
    assert _ran[0] == 0
    assert len(_ran) <= 2  # the call running when closed may finish; the queued ones never run


@pytest.mark.timeout(60)
@pytest.mark.parametrize("strategy", ["threads", *PROCESSES])
def test_map_buffersize_timeout_raises_timeout_error(strategy: str) -> None:
    """A result not ready within map's timeout raises concurrent.futures.TimeoutError from the iterator."""
    gate = multiprocessing.get_context(strategy if strategy in PROCESSES else None).Event()
    with autopar.Executor(strategy, workers=1, initializer=remember, initargs=("gate", gate)) as executor:
        results = executor.map(pass_gate, range(3), timeout=0.2, buffersize=1)
        with pytest.raises(concurrent.futures.TimeoutError):
            next(results)
        gate.set()


# -- terminate_workers, kill_workers ------------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    """The process ended (reaped, or a zombie); it may be reaped while we look."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["terminate_workers", "kill_workers"])
@pytest.mark.parametrize("strategy", PROCESSES)
def test_stopping_workers_ends_running_calls_and_the_pool(strategy: str, how: str) -> None:
    """The worker processes are gone, the running call fails, pending calls are cancelled, submit then raises."""
    gate = multiprocessing.get_context(strategy).Event()  # never set: the call runs until stopped
    executor = autopar.Executor(strategy, workers=1, initializer=remember, initargs=("gate", gate))
    pid = executor.submit(pid_of, None).result(timeout=30)
    running = executor.submit(pass_gate, 1)
    assert wait_until(running.running, timeout=30)
    pending = [executor.submit(pass_gate, x) for x in range(2, 8)]
    getattr(executor, how)()
    with pytest.raises(autopar.WorkerCrashedError):
        running.result(timeout=30)
    assert wait_until(lambda: _gone(pid))
    outcomes = []
    for future in pending:
        try:
            outcomes.append(future.result(timeout=30))
        except concurrent.futures.CancelledError:
            outcomes.append("cancelled")
        except autopar.WorkerCrashedError:
            outcomes.append("crashed")  # already handed to the worker's queue
    assert outcomes.count("cancelled") >= 4
    with pytest.raises(RuntimeError):
        executor.submit(square, 2)
    executor.shutdown(wait=True)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["terminate_workers", "kill_workers"])
@pytest.mark.parametrize("strategy", ["serial", "threads", "auto"])
def test_stopping_workers_without_processes_cancels_pending_calls(strategy: str, how: str) -> None:
    """Threads cannot be stopped: the running call finishes, pending calls are cancelled, the executor is shut down."""
    gate = multiprocessing.get_context("spawn").Event()
    executor = autopar.Executor(strategy, workers=1, initializer=remember, initargs=("gate", gate))
    if strategy == "serial":
        gate.set()
    first = executor.submit(pass_gate, 0)
    assert wait_until(lambda: first.running() or first.done(), timeout=30)
    pending = [executor.submit(pass_gate, x) for x in range(1, 6)]
    getattr(executor, how)()
    gate.set()
    assert first.result(timeout=30) == 0
    if strategy != "serial":
        assert all(future.cancelled() for future in pending)
    with pytest.raises(RuntimeError):
        executor.submit(square, 2)
    executor.shutdown(wait=True)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["terminate_workers", "kill_workers"])
def test_stopping_workers_of_an_unused_or_broken_executor_does_nothing_more(how: str) -> None:
    """Before any call, or after a worker died, stopping the workers raises nothing."""
    fresh = autopar.Executor("forkserver", workers=1)
    getattr(fresh, how)()
    with pytest.raises(RuntimeError):
        fresh.submit(square, 2)
    broken = autopar.Executor("fork", workers=1)
    with pytest.raises(autopar.WorkerCrashedError):
        broken.submit(os._exit, 1).result(timeout=30)
    getattr(broken, how)()
    broken.shutdown(wait=True)


# -- pickling errors -----------------------------------------------------------------------------------------------


class RefusesPickling:
    """An argument whose pickling fails with PicklingError, as Python 3.14 reports most pickling failures."""

    def __reduce__(self) -> object:
        raise pickle.PicklingError("RefusesPickling refuses to be pickled")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("strategy", PROCESSES)
def test_pickling_error_of_an_item_is_a_serialization_error(strategy: str) -> None:
    """autopar.map turns a PicklingError of an item into SerializationError (itself a PicklingError), naming the item."""
    with pytest.raises(autopar.SerializationError, match="RefusesPickling refuses to be pickled") as info:
        autopar.map(identity, [0, RefusesPickling(), 2], strategy=strategy, workers=2, chunksize=1)
    assert isinstance(info.value, pickle.PicklingError)
    assert "input positions 1..1" in str(info.value)
    assert isinstance(info.value.__cause__, pickle.PicklingError)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("strategy", PROCESSES)
def test_executor_pickling_error_is_caught_as_pickling_error(strategy: str) -> None:
    """A forced Executor's process pool reports the standard library's PicklingError, which the same handler catches."""
    with autopar.Executor(strategy, workers=1) as executor:
        future = executor.submit(identity, RefusesPickling())
        with pytest.raises(pickle.PicklingError, match="RefusesPickling refuses to be pickled"):
            future.result(timeout=30)
        assert executor.submit(square, 3).result(timeout=30) == 9
