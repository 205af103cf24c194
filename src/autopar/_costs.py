"""The cost model: the predicted wall time of each strategy, with its worker count and chunk size.

``predict`` and ``candidate`` price the work left after calibration for serial,
threads, every process start method and a Dask cluster; ``_decide`` compares
the candidates.  With ``n`` items of mean wall time ``t``:

* serial: ``initializer + n * t``.
* threads: Amdahl's law.  The parallel fraction ``p`` comes from the thread
  probe, ``p = (1 - 1/s_k) / (1 - 1/k)``, or from the CPU share of wall time
  when there was no probe.  ``speedup(w) = 1 / ((1 - p) + p / w_eff)``, where
  ``w_eff`` is at most the CPU count unless the function mostly waits, and the
  CPU part can never need more than every CPU.  Chunk dispatch holds the GIL.
* processes: workers pay the item time, half the pickling and the pipe
  transfer; the caller pays the other half serially, so the pipeline runs at
  the pace of the slower side.  Native thread pools are limited to one thread
  in workers, so a function that already uses ``u`` cores costs ``u * t`` there.
* dask (only with cluster facts): the cluster runs ``par`` items at once:
  every thread for work that releases the GIL or uses native threads, but
  only one per worker process for GIL-bound work (threads of one process
  share its GIL).  The caller and the scheduler handle tasks one at a time,
  and every item and result crosses the network, so the run takes
  ``first use + 2 round trips + max(n * t / par, caller side) + tail``, where the
  caller side is ``chunks * task overhead + n * (pickling + bytes * s/byte)``.
  The cluster comes last in the order of simplicity: it wins only when it
  beats every local strategy by more than 10%.
* every pool: start-up (none for a warm pool) and a tail of half a chunk.

No clock, no OS calls, no randomness: the same inputs give the same decision.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

import attrs

from ._model import Candidate, ClusterFacts, Measurements, Options, PlatformFacts, _fmt_s
from ._safety import PROCESS_METHODS

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DEFAULT_WORKER_STARTUP_S", "Estimate", "Workload", "candidate", "predict", "probe_reading", "workload"]

#: Items assumed to remain when the input has no length (a generator): streams are usually long.
ASSUMED_ITEMS_UNKNOWN = 10_000
#: Most threads for waiting-dominated work.
_MAX_IO_THREADS = 32
#: Wall time for one worker to become ready, per start method, when calibration did not measure it.
_FORK_STARTUP_S = 0.02
_FORKSERVER_STARTUP_S = 0.08
_SPAWN_STARTUP_S = 0.25
DEFAULT_WORKER_STARTUP_S: Mapping[str, float] = MappingProxyType(
    {"fork": _FORK_STARTUP_S, "forkserver": _FORKSERVER_STARTUP_S, "spawn": _SPAWN_STARTUP_S}
)
_THREAD_STARTUP_S = 100e-6
#: Round trip of one chunk to a process worker, pickling aside.
_PROCESS_CHUNK_OVERHEAD_S = 300e-6
_THREAD_CHUNK_OVERHEAD_S = 30e-6
#: Moving pickled bytes through a pipe, each side (about 500 MB/s: several copies on the way).
_PIPE_S_PER_BYTE = 2e-9
#: Copying a shared object into shared memory once (about 1 GB/s).
_SHM_COPY_S_PER_BYTE = 1e-9
#: Largest share of a chunk's work its dispatch overhead may take.
_CHUNK_OVERHEAD_SHARE = 0.05
#: Chunk duration aimed at when items are many (joblib aims at tens to hundreds of ms).
_TARGET_CHUNK_S = 0.02
_CHUNKS_PER_WORKER = 4
_SKEWED_CHUNKS_PER_WORKER = 16
#: Slowest item over mean beyond which items count as skewed.
SKEW_RATIO = 4.0
#: Thread CPU over wall below which the function counts as waiting (I/O, sleeps, locks).
_WAITING_CPU_SHARE = 0.5
#: Process CPU over wall above which native threads already use several cores.
_NATIVE_CORES_RATIO = 1.3
_MIN_CPU_SHARE = 0.01
#: Voluntary context switches per item below which the function does not wait (it computes).
_MIN_WAITS_PER_ITEM = 0.5
#: Slow-down of threads that oversubscribe native thread pools.
_OVERSUBSCRIBE_PENALTY = 0.1

#: First use of a cluster: workers unpickle the function and import its module, as a spawn worker does.
_DASK_FIRST_USE_S = _SPAWN_STARTUP_S

DASK = "dask"
MODELLED = ("serial", "threads", *PROCESS_METHODS)


@attrs.frozen
class Workload:
    """The measurements reduced to what the model needs."""

    remaining: int
    item_s: float
    item_max_s: float
    cpu_share: float
    #: Cores the function already uses through native threads (1.0 when it uses one).
    cores_used: float
    thread_p: float
    cpu_count: int

    @property
    def native(self) -> bool:
        return self.cores_used > 1.0

    @property
    def waiting(self) -> bool:
        return not self.native and self.cpu_share < _WAITING_CPU_SHARE

    @property
    def process_item_s(self) -> float:
        """Per-item time in a process worker, whose native thread pools run one thread."""
        return self.item_s * self.cores_used


class Estimate(NamedTuple):
    total_s: float
    #: The work itself divided by the parallelism; the rest is start-up and dispatch.
    compute_s: float


def _clean(value: float) -> float:
    """A finite, non-negative number (calibration noise never makes the model raise)."""
    return value if math.isfinite(value) and value > 0 else 0.0


def _ceil_div(a: int, b: int) -> int:
    return -(-a // max(b, 1))


def probe_reading(m: Measurements) -> tuple[int, float] | None:
    """The thread probe's (workers, speedup), or None when there was no usable probe."""
    s = m.thread_speedup
    if m.thread_probe_workers >= 2 and s is not None and math.isfinite(s) and s > 0:
        # k threads cannot run more than k times as fast: a higher reading is timing noise.
        return m.thread_probe_workers, min(s, float(m.thread_probe_workers))
    return None


def _thread_fraction(m: Measurements, platform: PlatformFacts, share: float, waiting: bool) -> float:
    # Waiting releases the GIL; the computing part still holds it (unless the build has no GIL).
    floor = 1.0 if not platform.gil_enabled else (1.0 - share if waiting else 0.0)
    probe = probe_reading(m)
    if probe is not None:
        k, s = probe
        # Computing threads beyond the CPU count add no parallelism, so the probe ran at most that many.
        k = k if waiting else min(k, max(platform.cpu_count, 1))
        if k >= 2:
            fitted = min(max((1 - 1 / s) / (1 - 1 / k), 0.0), 1.0)
            # A short probe on a busy machine can under-read waiting work, never over-read it.
            return max(fitted, floor) if waiting else fitted
    return floor


def workload(m: Measurements, platform: PlatformFacts) -> Workload:
    wall = _clean(m.item_wall_s)
    share = min(_clean(m.item_cpu_s) / wall, 1.0) if wall else 1.0
    if m.item_waits is not None and m.item_waits < _MIN_WAITS_PER_ITEM:
        # The thread never blocked: the CPU it lacked went to other processes, not to waiting.
        share = 1.0
    ratio = _clean(m.item_process_cpu_s) / wall if wall else 0.0
    cores = ratio if ratio > _NATIVE_CORES_RATIO else 1.0
    remaining = ASSUMED_ITEMS_UNKNOWN if m.n_items is None else max(m.n_items - max(m.sampled, 0), 0)
    waiting = ratio <= _NATIVE_CORES_RATIO and share < _WAITING_CPU_SHARE
    return Workload(
        remaining=remaining,
        item_s=wall,
        item_max_s=max(_clean(m.item_wall_max_s), wall),
        cpu_share=share,
        cores_used=cores,
        thread_p=_thread_fraction(m, platform, share, waiting),
        cpu_count=max(platform.cpu_count, 1),
    )


def _thread_speedup(wl: Workload, workers: int) -> float:
    if workers <= 1:
        return 1.0
    if wl.native:
        return 1 / (1 + _OVERSUBSCRIBE_PENALTY)
    w_eff = workers if wl.waiting else min(workers, wl.cpu_count)
    amdahl = 1 / ((1 - wl.thread_p) + wl.thread_p / w_eff)
    return min(amdahl, wl.cpu_count / max(wl.cpu_share, _MIN_CPU_SHARE))


def _tail_s(wl: Workload, workers: int, chunk_s: float) -> float:
    """The last chunks finish unevenly: about half a chunk, plus half the slowest item's excess."""
    return 0.0 if workers <= 1 else 0.5 * chunk_s + 0.5 * (wl.item_max_s - wl.item_s)


def _serial_estimate(wl: Workload, m: Measurements) -> Estimate:
    work = wl.remaining * wl.item_s
    return Estimate((_clean(m.initializer_s) if wl.remaining else 0.0) + work, work)


def _thread_estimate(wl: Workload, m: Measurements, workers: int, chunksize: int) -> Estimate:
    speedup = _thread_speedup(wl, workers)
    compute = wl.remaining * wl.item_s / speedup
    start = 0.0
    if ("threads", workers) not in m.warm_pools:
        # Initializers run concurrently, and scale as the function does.
        start = workers * (_THREAD_STARTUP_S + _clean(m.initializer_s) / speedup)
    dispatch = _ceil_div(wl.remaining, chunksize) * _THREAD_CHUNK_OVERHEAD_S
    return Estimate(start + compute + dispatch + _tail_s(wl, workers, chunksize * wl.item_s), compute)


def _worker_startup_s(m: Measurements, method: str) -> float:
    return _clean(m.worker_startup_s.get(method, DEFAULT_WORKER_STARTUP_S.get(method, _SPAWN_STARTUP_S)))


def _process_estimate(
    wl: Workload, m: Measurements, options: Options, method: str, workers: int, chunksize: int
) -> Estimate:
    item_s = wl.process_item_s
    w_eff = min(workers, wl.cpu_count / max(1.0 if wl.native else wl.cpu_share, _MIN_CPU_SHARE))
    half_pickle_s = _clean(m.pickle_s) / 2
    pipe_s = (_clean(m.item_pickle_bytes) + _clean(m.result_pickle_bytes)) * _PIPE_S_PER_BYTE
    chunks = _ceil_div(wl.remaining, chunksize)
    chunk_s = _PROCESS_CHUNK_OVERHEAD_S + max(m.func_pickle_bytes, 0) * _PIPE_S_PER_BYTE
    workers_s = (wl.remaining * (item_s + half_pickle_s + pipe_s) + chunks * chunk_s) / w_eff
    caller_s = wl.remaining * (half_pickle_s + pipe_s)
    # Workers boot in parallel, one per CPU; each one runs the initializer and, unless it
    # inherits it by fork, maps the shared object (bytes and arrays: copied once into shared memory).
    shared_s = 0.0 if method == "fork" else max(m.shared_bytes, 0) * _SHM_COPY_S_PER_BYTE
    boot_s = _worker_startup_s(m, method) + _clean(m.initializer_s) + shared_s
    start = 0.0 if (method, workers) in m.warm_pools else boot_s * _ceil_div(workers, wl.cpu_count)
    if options.max_tasks_per_worker:
        start += boot_s * max(_ceil_div(_ceil_div(chunks, workers), options.max_tasks_per_worker) - 1, 0)
    total = start + max(workers_s, caller_s) + _tail_s(wl, workers, chunksize * item_s)
    return Estimate(total, wl.remaining * item_s / w_eff)


def _cluster_parallelism(wl: Workload, c: ClusterFacts, slots: int) -> float:
    """Items the cluster runs at once: every thread, unless GIL-bound work shares a process's GIL."""
    if wl.native:
        return float(slots)
    threads = c.threads_per_worker if c.processes else c.total_threads
    processes = c.workers if c.processes else 1
    per_process = 1 / ((1 - wl.thread_p) + wl.thread_p / max(threads, 1))
    return max(min(processes * per_process, slots), 1.0)


def _dask_item_s(wl: Workload) -> float:
    """Per-item time on a cluster thread: native thread pools there compete for the same cores."""
    return wl.process_item_s if wl.native else wl.item_s


def _dask_estimate(wl: Workload, m: Measurements, c: ClusterFacts, workers: int, chunksize: int) -> Estimate:
    item_s = _dask_item_s(wl)
    slots = max(min(workers, c.total_threads), 1)
    compute = wl.remaining * item_s / _cluster_parallelism(wl, c, slots)
    per_byte = _clean(c.transfer_s_per_byte)
    chunks = _ceil_div(wl.remaining, chunksize)
    # Every task carries the function; every item and result is pickled and crosses the network.
    per_task = _clean(c.task_overhead_s) + max(m.func_pickle_bytes, 0) * per_byte
    per_item = _clean(m.pickle_s) + (_clean(m.item_pickle_bytes) + _clean(m.result_pickle_bytes)) * per_byte
    caller = chunks * per_task + wl.remaining * per_item
    start = 0.0 if (DASK, workers) in m.warm_pools else _DASK_FIRST_USE_S + _clean(m.initializer_s)
    # A round trip to start the first task, and one to fetch the last result once it is done.
    latency = 2 * _clean(c.round_trip_s)
    total = start + latency + max(compute, caller) + _tail_s(wl, slots, chunksize * item_s)
    return Estimate(total, compute)


def _estimate(strategy: str, wl: Workload, m: Measurements, options: Options, workers: int, chunksize: int) -> Estimate:
    if strategy == DASK and m.cluster is not None:
        return _dask_estimate(wl, m, m.cluster, workers, chunksize)
    if strategy == "serial":
        return _serial_estimate(wl, m)
    if strategy == "threads":
        return _thread_estimate(wl, m, workers, chunksize)
    if strategy in PROCESS_METHODS:
        return _process_estimate(wl, m, options, strategy, workers, chunksize)
    msg = (
        f"strategy {strategy!r} has no cost model; expected 'serial', 'threads', one of {PROCESS_METHODS!r}, "
        "or 'dask' with measurements.cluster set"
    )
    raise ValueError(msg)


def predict(
    strategy: str,
    workers: int,
    chunksize: int,
    measurements: Measurements,
    platform: PlatformFacts,
    options: Options,
) -> float:
    """Predict the wall time, in seconds, of the remaining work run by ``strategy``.

    Args:
        strategy: "serial", "threads", "fork", "forkserver", "spawn", or "dask" when
            ``measurements.cluster`` holds the cluster's facts.
        workers: Worker count (at least 1 is used).
        chunksize: Items per chunk (at least 1 is used).
        measurements: What calibration measured.
        platform: The machine and interpreter.
        options: The call's options (``max_tasks_per_worker`` adds worker restarts).

    Returns:
        The predicted seconds, start-up of a cold pool included.

    Raises:
        ValueError: ``strategy`` is not one the model knows.
    """
    wl = workload(measurements, platform)
    return _estimate(strategy, wl, measurements, options, max(workers, 1), max(chunksize, 1)).total_s


def _workers(strategy: str, wl: Workload, options: Options) -> int:
    if strategy == "serial":
        return 1
    if options.workers is not None:
        wanted = max(options.workers, 1)
    elif strategy == "threads" and wl.waiting:
        # Waiting threads need little CPU: about cpu_count / cpu_share of them keep every CPU busy.
        by_share = int(wl.cpu_count / max(wl.cpu_share, _MIN_CPU_SHARE))
        wanted = max(wl.cpu_count, min(by_share, _MAX_IO_THREADS))
    else:
        wanted = wl.cpu_count
    return min(wanted, max(wl.remaining, 1))


def _chunksize(wl: Workload, workers: int, item_s: float, overhead_s: float) -> int:
    """Chunks long enough to hide dispatch, yet several per worker for balance.

    Skewed items get more, shorter chunks: a slow item then delays less work behind it.
    """
    skew = wl.item_max_s / wl.item_s if wl.item_s else 1.0
    skewed = skew > SKEW_RATIO
    balance = max(wl.remaining // (workers * (_SKEWED_CHUNKS_PER_WORKER if skewed else _CHUNKS_PER_WORKER)), 1)
    if item_s <= 0:
        return balance
    target_s = _TARGET_CHUNK_S / skew if skewed else _TARGET_CHUNK_S
    wanted = max(overhead_s / _CHUNK_OVERHEAD_SHARE / item_s, target_s / item_s)
    return balance if wanted >= balance else max(math.ceil(wanted), 1)


def _dask_candidate(wl: Workload, m: Measurements, c: ClusterFacts, options: Options) -> tuple[Candidate, Estimate]:
    """Every cluster thread as a worker; chunks long enough that the scheduler keeps every thread fed."""
    slots = min(max(options.workers or c.total_threads, 1), max(wl.remaining, 1))
    if options.chunksize is not None:
        chunksize = max(options.chunksize, 1)
    else:
        item_s = _dask_item_s(wl)
        chunksize = _chunksize(wl, slots, item_s, _clean(c.round_trip_s))
        if item_s > 0:
            # Handing a task to each thread takes slots * task overhead: a chunk should outlast that,
            # yet every thread should get a chunk.
            fed = math.ceil(slots * _clean(c.task_overhead_s) / item_s)
            chunksize = max(min(max(chunksize, fed), _ceil_div(wl.remaining, slots)), 1)
    workers = min(slots, max(_ceil_div(wl.remaining, chunksize), 1))
    est = _dask_estimate(wl, m, c, workers, chunksize)
    par = _cluster_parallelism(wl, c, workers)
    warm = "warm" if (DASK, workers) in m.warm_pools else f"first use {_fmt_s(_DASK_FIRST_USE_S)}"
    note = f"cluster runs {par:.0f} at once; {warm}"
    return Candidate(strategy=DASK, workers=workers, chunksize=chunksize, predicted_s=est.total_s, note=note), est


def candidate(strategy: str, wl: Workload, m: Measurements, options: Options) -> tuple[Candidate, Estimate | None]:
    """The candidate's workers, chunk size and prediction (None, and a NaN, for a plugin strategy)."""
    if strategy == DASK and m.cluster is not None:
        return _dask_candidate(wl, m, m.cluster, options)
    workers = _workers(strategy, wl, options)
    if options.chunksize is not None:
        chunksize = max(options.chunksize, 1)
    elif strategy == "serial":
        chunksize = max(wl.remaining, 1)
    elif strategy == "threads":
        chunksize = _chunksize(wl, workers, wl.item_s, _THREAD_CHUNK_OVERHEAD_S)
    else:  # process methods, and plugin strategies with process-like dispatch
        chunksize = _chunksize(wl, workers, wl.process_item_s, _PROCESS_CHUNK_OVERHEAD_S)
    workers = min(workers, max(_ceil_div(wl.remaining, chunksize), 1))
    if strategy not in MODELLED:
        return Candidate(strategy=strategy, workers=workers, chunksize=chunksize, predicted_s=math.nan), None
    est = _estimate(strategy, wl, m, options, workers, chunksize)
    note = _note(strategy, wl, m, workers)
    return Candidate(strategy=strategy, workers=workers, chunksize=chunksize, predicted_s=est.total_s, note=note), est


def _note(strategy: str, wl: Workload, m: Measurements, workers: int) -> str:
    if strategy == "serial":
        return "runs in the caller"
    if strategy == "threads":
        return f"{_thread_speedup(wl, workers):.2f}x on threads"
    if (strategy, workers) in m.warm_pools:
        return "warm pool"
    start = _worker_startup_s(m, strategy) + _clean(m.initializer_s)
    with_init = f" (initializer {_fmt_s(m.initializer_s)} included)" if m.initializer_s > 0 else ""
    return f"start-up {_fmt_s(start)} per worker{with_init}"
