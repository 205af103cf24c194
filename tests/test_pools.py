"""Pool reuse across calls: same key reuses workers, a failed pool is replaced, shutdown and recycling end workers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import warnings
from typing import TYPE_CHECKING, Any

import psutil
import pytest

import autopar
import helpers
from autopar import _pools
from conftest import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)

ITEMS = list(range(6))


def child_pids() -> set[int]:
    """Process ids of this process's live descendants."""
    return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}


def worker_pids(strategy: str, workers: int = 2, items: list[int] = ITEMS, **options: Any) -> set[int]:
    """The process ids of the workers that ran one item each."""
    return set(autopar.map(helpers.pid_of, items, strategy=strategy, workers=workers, chunksize=1, **options))


def test_second_call_reuses_worker_processes_same_strategy_and_workers(process_strategy: str) -> None:
    """A second call with the same strategy and worker count runs on the very same worker processes."""
    first = worker_pids(process_strategy)
    second = worker_pids(process_strategy)
    assert len(first) == 2
    assert second == first


def test_second_call_reuses_thread_pool_same_workers() -> None:
    """A second threads call with the same worker count gets the same idle pool back."""
    assert autopar.map(helpers.square, ITEMS, strategy="threads", workers=2) == [x * x for x in ITEMS]
    (pool,) = _pools.live_pools()
    assert autopar.map(helpers.square, ITEMS, strategy="threads", workers=2) == [x * x for x in ITEMS]
    assert _pools.live_pools() == [pool]


def autopar_threads() -> int:
    """Live threads of autopar's thread pools."""
    return sum(t.name.startswith("autopar-thread-") and t.is_alive() for t in threading.enumerate())


def test_idle_thread_pools_keep_at_most_max_idle_threads_longest_idle_shut_first() -> None:
    """Calls over 150, then 200 items on a thread each: the 150-thread pool goes when the 200 one comes back idle.

    Each count keys a pool of its own; without the limit both would stay, 350 threads waiting for nothing.
    """
    small, large = 150, _pools.MAX_IDLE_THREADS - 56
    assert small + large > _pools.MAX_IDLE_THREADS
    autopar.map(helpers.square, range(small), strategy="threads", workers=small)
    (first,) = _pools.live_pools()
    assert autopar_threads() == small
    autopar.map(helpers.square, range(large), strategy="threads", workers=large)
    (second,) = _pools.live_pools()
    assert second is not first
    assert wait_until(lambda: autopar_threads() == large), autopar_threads()
    assert _pools.warm_pools() == {("threads", large)}
    # Within the limit, pools of several counts stay idle side by side, and each serves its count again.
    autopar.map(helpers.square, ITEMS, strategy="threads", workers=4)
    assert _pools.warm_pools() == {("threads", large), ("threads", 4)}
    autopar.map(helpers.square, range(large), strategy="threads", workers=large)
    assert second in _pools.live_pools()


_IDLE_PROCESS_LIMIT = """
    import os, psutil, autopar
    from autopar import _pools

    def pid_of(x):
        return os.getpid()

    def live():
        return {p.pid for p in psutil.Process().children() if p.status() != psutil.STATUS_ZOMBIE}

    if __name__ == "__main__":
        os.sched_setaffinity(0, {0, 1})  # 2 CPUs: idle process pools keep at most 16 workers
        seen = {}
        for workers in (12, 2, 3):
            seen[workers] = set(autopar.map(pid_of, range(workers), strategy="fork", workers=workers, chunksize=1))
            print(workers, sorted(_pools.warm_pools()), len(live()), flush=True)
        again = set(autopar.map(pid_of, range(2), strategy="fork", workers=2, chunksize=1))
        print("reused", again <= seen[2], not (seen[12] & live()), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_idle_process_pools_keep_at_most_eight_workers_per_cpu_longest_idle_shut_first(tmp_path: Path) -> None:
    """On 2 CPUs, idle fork pools of 12, 2 and 3 workers: the 12 go when the 3 come back idle (17 > 16); the 2 stay warm.

    Eight per CPU is the most one decision runs (``MAX_PROCESSES_PER_CPU``): its pool stays warm for the next call.
    """
    script = tmp_path / "idle.py"
    script.write_text(textwrap.dedent(_IDLE_PROCESS_LIMIT))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.splitlines() == [
        "12 [('fork', 12)] 12",
        "2 [('fork', 2), ('fork', 12)] 14",
        "3 [('fork', 2), ('fork', 3)] 5",
        "reused True True",
    ], out.stderr


def test_different_worker_counts_get_different_pools() -> None:
    """Calls with different worker counts run on separate pools, each kept for its own count."""
    two = worker_pids("fork", workers=2)
    three = worker_pids("fork", workers=3)
    assert len(two) == 2
    assert len(three) == 3
    assert two.isdisjoint(three)
    assert worker_pids("fork", workers=2) == two
    assert worker_pids("fork", workers=3) == three


def test_next_call_works_after_worker_crash(process_strategy: str, tmp_path: Path) -> None:
    """After a WorkerCrashedError the next call returns correct results on live workers."""
    pid_file = str(tmp_path / "pid")
    # Two chunks of three, one per worker: the second dies on its first item.
    items = [(pid_file, x) for x in (1, 2, 3, 0, 4, 5)]
    with pytest.raises(autopar.WorkerCrashedError, match="item 3"):
        autopar.map(helpers.sigkill_on_0_after_pid_file, items, strategy=process_strategy, workers=2, chunksize=3)
    with open(pid_file) as f:
        crashed = int(f.read())
    assert autopar.map(helpers.square, ITEMS, strategy=process_strategy, workers=2) == [x * x for x in ITEMS]
    pids = worker_pids(process_strategy)
    assert crashed not in pids
    assert all(psutil.pid_exists(pid) for pid in pids)


def test_pool_kept_after_function_exception() -> None:
    """An exception raised by the function leaves the pool sound, so it stays warm for the next call."""
    with pytest.raises(ValueError, match="bad item 3"):
        autopar.map(helpers.fail_on_3, ITEMS, strategy="fork", workers=2, chunksize=1)
    assert ("fork", 2) in _pools.warm_pools()
    assert autopar.map(helpers.square, ITEMS, strategy="fork", workers=2) == [x * x for x in ITEMS]


def _crash(strategy: str) -> None:
    with pytest.raises(autopar.WorkerCrashedError):
        autopar.map(helpers.segfault_quietly_on_3, [0, 1, 2, 3, 4, 5], strategy=strategy, workers=2, chunksize=3)


def _unpicklable_argument(strategy: str) -> None:
    with pytest.raises(autopar.SerializationError):
        autopar.map(helpers.identity, [0, 1, helpers.ReduceRaises()], strategy=strategy, workers=2, chunksize=1)


@pytest.mark.parametrize("fail", [_crash, _unpicklable_argument], ids=["crash", "pickling"])
def test_pool_not_kept_after_crash_or_pickling_failure(fail: Callable[[str], None]) -> None:
    """A pool that saw a worker crash or a pickling failure is shut down, so the next call starts fresh."""
    fail("fork")
    assert ("fork", 2) not in _pools.warm_pools()
    assert _pools.live_pools() == []


def test_shutdown_terminates_idle_workers(process_strategy: str) -> None:
    """autopar.shutdown() ends every idle worker process."""
    pids = worker_pids(process_strategy)
    assert all(psutil.pid_exists(pid) for pid in pids)
    autopar.shutdown()
    assert wait_until(lambda: not any(psutil.pid_exists(pid) for pid in pids), timeout=10)
    assert _pools.live_pools() == []
    assert _pools.warm_pools() == frozenset()
    assert worker_pids(process_strategy).isdisjoint(pids)


def test_max_tasks_per_worker_recycles_workers(process_strategy: str) -> None:
    """max_tasks_per_worker=1 replaces each worker after one chunk, so more processes than workers ran."""
    pids = worker_pids(process_strategy, items=[0, 1, 2, 3], max_tasks_per_worker=1)
    assert len(pids) == 4
    again = worker_pids(process_strategy, items=[0, 1, 2, 3], max_tasks_per_worker=1)
    assert len(again) == 4
    assert again.isdisjoint(pids)


def test_pool_pids_after_recycling_lists_only_live_workers() -> None:
    """ProcessPool.pids() skips workers stopped by recycling instead of failing on their closed process."""
    worker_pids("fork", items=[0, 1, 2, 3], max_tasks_per_worker=1)
    pids = [pid for pool in _pools.live_pools() for pid in pool.pids()]
    assert all(psutil.pid_exists(pid) for pid in pids)


def adder(k: int) -> Callable[[int], int]:
    """A closure adding k: fork workers inherit it instead of unpickling it."""

    def add(x: int) -> int:
        return x + k

    return add


def test_fork_closure_calls_accumulate_no_pools() -> None:
    """Fork calls with a new closure each time do not pile up idle pools or worker processes."""
    before = child_pids()
    for k in range(5):
        assert autopar.map(adder(k), ITEMS, strategy="fork", workers=2) == [x + k for x in ITEMS]
        assert len(_pools.live_pools()) <= 1
    assert wait_until(lambda: len(child_pids() - before) <= 2, timeout=10)


@pytest.mark.parametrize("strategy", ["threads", "fork", "forkserver"])
def test_concurrent_calls_from_threads_get_correct_results(strategy: str) -> None:
    """Four threads calling map at the same moment each get their own correct results."""
    callers = 4
    barrier = threading.Barrier(callers)
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def call(k: int) -> None:
        items = list(range(k * 100, k * 100 + 20))
        try:
            barrier.wait(timeout=30)
            results[k] = autopar.map(helpers.square, items, strategy=strategy, workers=2, chunksize=1)
        except BaseException as exc:
            errors.append(exc)

    # fork with threads running is unsafe and says so; the filter is set here, once, for every thread.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", autopar.UnsafeStrategyWarning)
        warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks", category=DeprecationWarning)
        threads = [threading.Thread(target=call, args=(k,), name=f"caller-{k}") for k in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=45)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert results == {k: [x * x for x in range(k * 100, k * 100 + 20)] for k in range(callers)}
