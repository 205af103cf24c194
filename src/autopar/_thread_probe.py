"""The thread probe: a few items run at once on short-lived threads, to read how threads scale.

The speedup over the serial sample's rate tells GIL-bound code (about 1x) from
code that releases the GIL or waits (about k x on k threads).  The threads are
joined, and the operating system given a moment to reap them, before returning,
so a fork afterwards sees no extra thread.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import os
import threading
from typing import TYPE_CHECKING, Any

import attrs

from ._sample import run_in_caller
from ._worker import ChunkFailed, run_chunk

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._calibrate import Clocks
    from ._core._sampling import ProbePlan

__all__ = [
    "ProbeReading",
    "await_all_gone",
    "await_thread_gone",
    "os_threads",
    "probe_threads",
    "run_caught",
    "start_all",
    "start_each",
]

#: Seconds to wait for the OS to reap joined probe threads.
_REAP_PATIENCE_S = 0.05
_REAP_POLL_S = 0.0005


@attrs.frozen
class ProbeReading:
    """What the probe measured: its wall time, the items it ran and the threads' summed CPU time."""

    wall_s: float
    items: int
    cpu_s: float


def os_threads() -> int:
    """Threads of this process as the OS counts them (Python's count elsewhere)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def await_thread_gone(native_id: int | None, clocks: Clocks, patience_s: float = _REAP_PATIENCE_S) -> None:
    """Wait briefly until the OS has reaped one joined thread (Linux; elsewhere, at once).

    A joined thread lingers at the OS level for a few milliseconds; a call
    starting then would count it and needlessly rule out fork.  Its own task is
    awaited, not a thread count: an item may start threads that stay (BLAS, at
    NumPy's import), which would keep a count up for the whole patience.
    """
    task = f"/proc/self/task/{native_id}"
    if native_id is None or not os.path.isdir("/proc/self/task"):
        return
    for _ in range(math.ceil(patience_s / _REAP_POLL_S)):
        if not os.path.exists(task):
            return
        clocks.sleep(_REAP_POLL_S)


def await_all_gone(workers: list[threading.Thread], clocks: Clocks) -> None:
    """Wait for joined ``workers`` to be reaped by the OS too (``await_thread_gone``), before anything forks."""
    for worker in workers:
        await_thread_gone(worker.native_id, clocks)


def _in_caller(func: Callable[[Any], Any], batches: list[list[Any]], capture_errors: bool, results: list[Any]) -> None:
    """Run the probe's batches serially in the caller instead, keeping their results."""
    for batch in batches:
        results.extend(run_in_caller(func, batch, len(results), capture_errors))


def run_caught(
    func: Callable[[Any], Any], items: list[Any], start: int, capture_errors: bool
) -> list[Any] | BaseException:
    """Run a batch on a probe thread: its results, or the exception the caller raises for it (an item's, rebuilt
    with its traceback, or SystemExit and KeyboardInterrupt raised by ``func``)."""
    try:
        return run_chunk(func, items, start, capture_errors=capture_errors, in_process=False)
    except ChunkFailed as failed:
        return failed.wrapped.rebuild()
    except BaseException as exc:
        return exc


def start_all(work: Callable[[int], None], threads: int, barrier: threading.Barrier) -> list[threading.Thread] | None:
    """Start ``threads`` threads running ``work(i)`` (``start_each``); None, the started ones gone before any item,
    when one would not start."""
    workers = start_each(work, threads)
    if len(workers) < threads:  # "can't start new thread": a process or thread limit
        barrier.abort()
        for started in workers:
            started.join()
        return None
    return workers


def start_each(work: Callable[[int], None], threads: int) -> list[threading.Thread]:
    """Start up to ``threads`` threads running ``work(i)`` at once, each in a copy of the caller's context (so items
    see the caller's ``config()``, as on the thread pool); the ones that started (a process or thread limit stops the
    rest)."""
    workers: list[threading.Thread] = []
    for i in range(threads):
        worker = threading.Thread(target=contextvars.copy_context().run, args=(work, i), daemon=True)
        try:
            worker.start()
        except RuntimeError:  # "can't start new thread"
            break
        workers.append(worker)
    return workers


def probe_threads(
    func: Callable[[Any], Any],
    source: Iterator[Any],
    plan: ProbePlan,
    capture_errors: bool,
    results: list[Any],
    clocks: Clocks,
) -> ProbeReading | None:
    """Run ``plan.threads`` batches at once and time them; None, with the batches run in the caller,
    when the input ran out before a fair probe or a thread would not start (a process or thread limit)."""
    threads, per_thread = plan.threads, plan.per_thread
    batches = [b for b in (list(itertools.islice(source, per_thread)) for _ in range(threads)) if b]
    if len(batches) < threads or len(batches[-1]) < per_thread:  # too little input left for a fair probe
        _in_caller(func, batches, capture_errors, results)
        return None
    outputs: list[list[Any] | BaseException] = [[] for _ in batches]
    starts = [len(results) + i * per_thread for i in range(threads)]
    barrier = threading.Barrier(threads + 1)
    cpu = [0.0] * threads

    def work(i: int) -> None:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:  # another probe thread would not start: the caller runs the batches
            return
        started = clocks.thread()
        outputs[i] = run_caught(func, batches[i], starts[i], capture_errors)
        cpu[i] = clocks.thread() - started

    workers = start_all(work, threads, barrier)
    if workers is None:
        _in_caller(func, batches, capture_errors, results)
        return None
    barrier.wait()
    w0 = clocks.wall()
    for worker in workers:
        worker.join()
    wall = clocks.wall() - w0
    await_all_gone(workers, clocks)
    for out in outputs:
        if isinstance(out, BaseException):
            raise out
        results.extend(out)
    return ProbeReading(wall_s=wall, items=threads * per_thread, cpu_s=sum(cpu))
