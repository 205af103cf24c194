"""Calibration: measure a workload on its own first items, processing each item exactly once.

Two phases, both on real items whose results are kept for the output:

1. *Serial sample*: batches of doubling size run in the calling thread, timed
   with the wall clock, the thread's CPU clock and the process's CPU clock,
   until about ``_SERIAL_SAMPLE_S`` of work has been seen.  A few items and
   results are pickled to price what a process pool would pay.
2. *Thread probe*: a few further items run at once on ``k`` short-lived
   threads.  The speedup over the serial rate tells GIL-bound code (about 1x)
   from code that releases the GIL or waits (about kx).  The threads are joined
   before returning, so a fork afterwards sees no extra thread.

The clocks are arguments, so tests script time instead of waiting for it.
"""

from __future__ import annotations

import math
import os
import pickle
import threading
import time
from typing import TYPE_CHECKING, Any

import attrs

from ._costs import DEFAULT_WORKER_STARTUP_S
from ._model import Measurements, PlatformFacts
from ._safety import auto_process_methods
from ._serialize import has_cloudpickle, ship_problem
from ._worker import ChunkFailed, run_chunk

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["Calibration", "Clocks", "calibrate"]

#: Seconds of serial work to sample before deciding (less when the whole run is small).
_SERIAL_SAMPLE_S = 0.015
#: Seconds each probe thread should work for: longer on bigger runs, where a steadier reading pays.
_PROBE_MIN_S = 0.015
_PROBE_MAX_S = 0.04
#: Share of the estimated remaining serial work the probe may use.
_PROBE_SHARE = 0.01
#: Skip the thread probe when the remaining work is estimated below this many seconds.
_PROBE_MIN_WORK_S = 0.08
#: At most this many items in the serial sample (tiny items are timed in batches).
_MAX_SAMPLE_ITEMS = 50_000
#: Items assumed left in a stream of unknown length, to size the probe.
_ASSUMED_REMAINING = 10_000
#: Process CPU over wall beyond which native threads are at work (as in the cost model).
_NATIVE_RATIO = 1.3
#: Thread CPU over wall at or below which waiting is unambiguous and the thread probe is skipped.
_WAITING_PROBE_MOOT_SHARE = 0.1
#: How many items and results to pickle to price process pools.
_PICKLE_SAMPLES = 3


def _thread_waits() -> int | None:
    """Voluntary context switches of the calling thread so far (Linux), else None."""
    try:
        import resource  # POSIX only; RUSAGE_THREAD is Linux only

        return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    except (ImportError, AttributeError, OSError, ValueError):
        return None


@attrs.frozen
class Clocks:
    """The clocks calibration reads: wall, this thread's CPU, this process's CPU, this thread's waits."""

    wall: Callable[[], float] = time.perf_counter
    thread: Callable[[], float] = time.thread_time
    process: Callable[[], float] = time.process_time
    waits: Callable[[], int | None] = _thread_waits


@attrs.define
class Calibration:
    """What calibration measured, and where it left the input."""

    measurements: Measurements
    #: Results of the first ``len(results)`` items, in input order.
    results: list[Any]
    #: The input ran out during calibration: nothing is left to run.
    exhausted: bool


class _Sample:
    """Running totals of the serial sample."""

    def __init__(self) -> None:
        self.count = 0
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self.process_s = 0.0
        self.max_item_s = 0.0
        self.waits: int | None = 0


def _take(source: Iterator[Any], count: int) -> list[Any]:
    batch: list[Any] = []
    for item in source:
        batch.append(item)
        if len(batch) >= count:
            break
    return batch


def _run_serial(
    func: Callable[[Any], Any],
    source: Iterator[Any],
    n_items: int | None,
    clocks: Clocks,
    capture_errors: bool,
    results: list[Any],
    check_deadline: Callable[[], object],
) -> tuple[_Sample, bool]:
    sample = _Sample()
    size = 1
    while sample.count < _MAX_SAMPLE_ITEMS:
        check_deadline()
        batch = _take(source, size)
        if not batch:
            return sample, True
        v0, w0, c0, p0 = clocks.waits(), clocks.wall(), clocks.thread(), clocks.process()
        results.extend(_run(func, batch, len(results), capture_errors))
        wall = clocks.wall() - w0
        v1 = clocks.waits()
        sample.waits = None if v0 is None or v1 is None or sample.waits is None else sample.waits + v1 - v0
        sample.count += len(batch)
        sample.wall_s += wall
        sample.cpu_s += clocks.thread() - c0
        sample.process_s += clocks.process() - p0
        sample.max_item_s = max(sample.max_item_s, wall / len(batch))
        per_item = sample.wall_s / sample.count
        target = _SERIAL_SAMPLE_S
        if n_items is not None:
            # Sample at most ~2% of the estimated whole (but always one item).
            target = min(target, 0.02 * per_item * n_items)
        if sample.wall_s >= target:
            return sample, False
        size = min(size * 2, max(1, _MAX_SAMPLE_ITEMS - sample.count))
    return sample, False


def _run(func: Callable[[Any], Any], batch: list[Any], start: int, capture_errors: bool) -> list[Any]:
    try:
        return run_chunk(func, batch, start, capture_errors=capture_errors, in_process=False)
    except ChunkFailed as failed:
        raise failed.wrapped.rebuild()  # noqa: B904 - its __cause__ is the traceback text


def _probe_threads(
    func: Callable[[Any], Any],
    source: Iterator[Any],
    threads: int,
    per_thread: int,
    capture_errors: bool,
    results: list[Any],
    clocks: Clocks,
) -> tuple[float, int, float] | None:
    """Run ``threads`` batches at once; return (wall seconds, items run, summed thread CPU seconds).

    None when the input ran out before a fair probe.
    """
    batches = [_take(source, per_thread) for _ in range(threads)]
    batches = [b for b in batches if b]
    if len(batches) < threads or len(batches[-1]) < per_thread:
        # Too little input left for a fair probe: run it serially, keep the results.
        for batch in batches:
            results.extend(_run(func, batch, len(results), capture_errors))
        return None
    outputs: list[list[Any] | BaseException] = [[] for _ in batches]
    starts = [len(results) + i * per_thread for i in range(threads)]
    barrier = threading.Barrier(threads + 1)

    cpu = [0.0] * threads

    def work(i: int) -> None:
        barrier.wait()
        started = clocks.thread()
        try:
            outputs[i] = run_chunk(func, batches[i], starts[i], capture_errors=capture_errors, in_process=False)
            cpu[i] = clocks.thread() - started
        except ChunkFailed as failed:
            outputs[i] = failed.wrapped.rebuild()
        except BaseException as exc:
            outputs[i] = exc

    before = _os_threads()
    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    w0 = clocks.wall()
    for worker in workers:
        worker.join()
    wall = clocks.wall() - w0
    _await_threads_gone(before)
    for out in outputs:
        if isinstance(out, BaseException):
            raise out
        results.extend(out)
    return wall, threads * per_thread, sum(cpu)


def _computing(sample: _Sample) -> bool:
    """The sample computed in this thread: no blocking waits (or CPU near wall) and no native threads."""
    if sample.wall_s <= 0 or sample.process_s > _NATIVE_RATIO * sample.wall_s:
        return False
    if sample.waits is not None:
        return sample.waits < 0.5 * max(sample.count, 1)
    return sample.cpu_s >= 0.8 * sample.wall_s


def _clearly_waiting(sample: _Sample) -> bool:
    """The sample mostly waited (thread CPU at most a tenth of wall, no native threads): threads scale it.

    The cost model then takes the waiting share as parallel whatever a probe reads,
    so a probe would only delay the run by an item's wait or more.
    """
    if sample.wall_s <= 0 or sample.process_s > _NATIVE_RATIO * sample.wall_s:
        return False
    blocked = sample.waits is None or sample.waits >= 0.5 * max(sample.count, 1)
    return blocked and sample.cpu_s <= _WAITING_PROBE_MOOT_SHARE * sample.wall_s


def _cheapest_process_overhead_s(
    facts: PlatformFacts,
    can_ship: bool,
    startup_s: dict[str, float],
    warm_pools: frozenset[tuple[str, int]],
    pickling_s: float,
) -> float:
    """Start-up plus pickling of the cheapest process pool auto may use here (infinite if none)."""
    methods = [m for m in auto_process_methods(facts) if can_ship or m == "fork"]
    if not methods:
        return math.inf
    method = methods[0]
    warm = any(name == method for name, _ in warm_pools)
    start = 0.0 if warm else startup_s.get(method, DEFAULT_WORKER_STARTUP_S[method])
    return start + pickling_s


def _os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _await_threads_gone(count: int, patience_s: float = 0.05) -> None:
    """Wait briefly until the OS has reaped the probe threads.

    A joined thread lingers at the OS level for a few milliseconds; a call
    starting then would count it and needlessly rule out fork.
    """
    deadline = time.monotonic() + patience_s
    while _os_threads() > count and time.monotonic() < deadline:
        time.sleep(0.0005)


def _pickle_costs(
    func: Callable[[Any], Any], items: list[Any], outputs: list[Any]
) -> tuple[int, float, float, float, bool]:
    """(function bytes, mean item bytes, mean result bytes, seconds per item both ways, data picklable)."""
    try:
        func_bytes = len(pickle.dumps(func))
    except Exception:
        func_bytes = 0
    item_bytes = result_bytes = 0
    seconds = 0.0
    pairs = list(zip(items, outputs, strict=False))[:_PICKLE_SAMPLES]
    for item, out in pairs:
        t0 = time.perf_counter()
        try:
            a = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
            b = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.loads(a)
            pickle.loads(b)
        except Exception:
            return func_bytes, 0.0, 0.0, 0.0, False
        seconds += time.perf_counter() - t0
        item_bytes += len(a)
        result_bytes += len(b)
    n = max(len(pairs), 1)
    return func_bytes, item_bytes / n, result_bytes / n, seconds / n, True


def calibrate(
    func: Callable[[Any], Any],
    source: Iterator[Any],
    *,
    n_items: int | None,
    facts: PlatformFacts,
    capture_errors: bool = False,
    clocks: Clocks | None = None,
    worker_startup_s: dict[str, float] | None = None,
    warm_pools: frozenset[tuple[str, int]] = frozenset(),
    initializer_s: float = 0.0,
    shared_bytes: int = 0,
    check_deadline: Callable[[], object] = lambda: None,
    thread_probe: bool = True,
) -> Calibration:
    """Run the first items of ``source`` to measure the workload; keep their results.

    ``thread_probe=False`` skips the thread probe (its threads would be workers that
    never ran the call's initializer).  Every item read from ``source`` is run exactly once and its result kept in
    ``results``; the rest of ``source`` is left unread.  ``check_deadline`` is
    called between batches (it raises ``TimeoutError`` once the call's time is
    up; an item already running in the caller cannot be stopped).  An exception from ``func`` propagates unless
    ``capture_errors``, in which case it takes the item's result slot.
    """
    clocks = clocks or Clocks()
    begun = clocks.wall()
    results: list[Any] = []
    head: list[Any] = []

    def recording() -> Iterator[Any]:
        for item in source:
            if len(head) < _PICKLE_SAMPLES:
                head.append(item)
            yield item

    stream = recording()
    sample, exhausted = _run_serial(func, stream, n_items, clocks, capture_errors, results, check_deadline)
    per_item = sample.wall_s / max(sample.count, 1)
    func_bytes, item_bytes, result_bytes, pickle_s, picklable = _pickle_costs(func, head, results)
    problem = ship_problem(func, main_importable=facts.main_importable)
    shippable = problem is None or has_cloudpickle()
    threads = min(max(facts.cpu_count, 2), 4)
    probe: tuple[float, int, float] | None = None
    if thread_probe and not exhausted and facts.cpu_count > 1 and per_item > 0:
        remaining = None if n_items is None else n_items - sample.count
        estimate_s = (_ASSUMED_REMAINING if remaining is None else remaining) * per_item
        probe_s = min(max(_PROBE_SHARE * estimate_s, _PROBE_MIN_S), _PROBE_MAX_S)
        per_thread = max(1, math.ceil(probe_s / per_item))
        probe_work_s = threads * per_thread * per_item
        # Probe only when the rest of the work dwarfs the probe, which may run at serial speed,
        # and when its answer matters: computing work that a cheap process pool runs at full
        # speed goes there whether or not threads would scale, and work that clearly waits
        # goes to threads whatever the probe reads.
        worth_it = remaining is None or remaining * per_item >= max(_PROBE_MIN_WORK_S, 10 * probe_work_s)
        process_s = _cheapest_process_overhead_s(
            facts, shippable and picklable, worker_startup_s or {}, warm_pools, estimate_s / per_item * pickle_s
        )
        moot = (_computing(sample) and process_s <= probe_work_s * (threads - 1) / threads) or _clearly_waiting(sample)
        if worth_it and not moot:
            probe = _probe_threads(func, stream, threads, per_thread, capture_errors, results, clocks)
    speedup = None
    if probe is not None and probe[0] > 0:
        speedup = probe[1] * per_item / probe[0]
        if _computing(sample):
            # For computing work the threads' summed CPU over the probe's wall time is the
            # parallelism they reached; it does not lean on the serial sample's per-item time.
            speedup = max(speedup, probe[2] / probe[0])
    measurements = Measurements(
        n_items=n_items,
        sampled=len(results),
        item_wall_s=per_item,
        item_cpu_s=sample.cpu_s / max(sample.count, 1),
        item_process_cpu_s=sample.process_s / max(sample.count, 1),
        item_wall_max_s=sample.max_item_s,
        item_waits=None if sample.waits is None else sample.waits / max(sample.count, 1),
        func_pickle_bytes=func_bytes,
        item_pickle_bytes=item_bytes,
        result_pickle_bytes=result_bytes,
        pickle_s=pickle_s,
        thread_probe_workers=threads if probe is not None else 0,
        thread_speedup=speedup,
        shippable=shippable,
        ship_reason=problem or "",
        data_picklable=picklable,
        worker_startup_s=dict(worker_startup_s or {}),
        warm_pools=warm_pools,
        initializer_s=initializer_s,
        shared_bytes=shared_bytes,
        calibration_s=clocks.wall() - begun,
    )
    return Calibration(measurements=measurements, results=results, exhausted=exhausted)
