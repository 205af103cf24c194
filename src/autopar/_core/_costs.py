"""The cost model: the predicted wall time of each strategy at a given worker count and chunk size.

``estimate`` and ``predict`` price the work left after calibration for serial,
threads, every process start method and a Dask cluster; ``_decide`` sizes and
compares the candidates.  With ``n`` items of mean wall time ``t``:

* serial: ``initializer + n * t``.
* threads: Amdahl's law.  The parallel fraction ``p`` comes from the thread
  probe, ``p = (1 - 1/s_k) / (1 - 1/k)``, or from the CPU share of wall time
  when there was no probe.  ``speedup(w) = 1 / ((1 - p) + p / w_eff)``, where
  ``w_eff`` is at most the CPU count unless the function mostly waits, and the
  CPU part can never need more than every CPU.  Chunk dispatch holds the GIL.
* processes: workers pay the item time, half the pickling and the pipe
  transfer; the caller pays the other half serially, so the pipeline runs at
  the pace of the slower side.  Items that wait part of the time run at most
  ``cpu_count / cpu_share`` at once: they wait together, then share the cores
  (``lockstep``).  Native thread pools are limited to one thread in workers,
  so a function that already uses ``u`` cores costs ``u * t`` there.
* dask (only with cluster facts): the cluster runs ``par`` items at once:
  every thread for work that releases the GIL or uses native threads, but
  only one per worker process for GIL-bound work (threads of one process
  share its GIL).  The caller and the scheduler handle tasks one at a time,
  and every item and result crosses the network, so the run takes
  ``first use + 2 round trips + max(n * t / par, caller side) + tail``, where the
  caller side is ``chunks * task overhead + n * (pickling + bytes * s/byte)``.
  The cluster comes last in the order of simplicity: it wins only when it
  beats every local strategy by more than 10%.
* interpreters (Python 3.14+): priced as processes, without the pipe: items
  and results are pickled in one interpreter and unpickled in the other, their
  bytes copied once in memory; a chunk costs less to hand over, and auto first
  runs one item alone in a subinterpreter (its trial), which adds about one item.
* every pool: start-up (none for a warm pool; the added workers only, for the
  pool started before measuring) and a tail: computing items run in rounds of
  ``workers``, sharing the cores when there are more workers than cores, so the
  tail is what the last round leaves idle, and a quarter of a chunk more with
  fewer workers than chunks, for cores that run unequally (``uneven_tail_s``);
  for waiting items, half a chunk.

No clock, no OS calls, no randomness: the same inputs give the same decision.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

from ._rounds import lockstep, rounds_s, skew_tail_s, tail_s, uneven_tail_s
from ._safety import INTERPRETERS, PROCESS_METHODS
from ._sizing import ceil_div
from ._workload import MIN_CPU_SHARE, Workload, clean, workload

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._model import ClusterFacts, Measurements, Options, PlatformFacts

__all__ = [
    "CLOSE_RATIO",
    "DASK",
    "DASK_FIRST_USE_S",
    "DEFAULT_WORKER_STARTUP_S",
    "INTERPRETER_CHUNK_OVERHEAD_S",
    "MODELLED",
    "PICKLE_S_PER_BYTE",
    "PROCESS_CHUNK_OVERHEAD_S",
    "THREAD_CHUNK_OVERHEAD_S",
    "Estimate",
    "cluster_parallelism",
    "dask_estimate",
    "dask_item_s",
    "estimate",
    "predict",
    "thread_speedup",
    "worker_startup_s",
]

#: Wall time for one worker to become ready, per start method, when calibration did not measure it.
_FORK_STARTUP_S = 20e-3
_FORKSERVER_STARTUP_S = 80e-3
_SPAWN_STARTUP_S = 250e-3
#: A subinterpreter: create it, give it the caller's import path and import autopar's worker module
#: there (50-130 ms measured for a pool of two on a 2-core x86-64 VM, against 9 ms for fork).
_INTERPRETERS_STARTUP_S = 100e-3
DEFAULT_WORKER_STARTUP_S: Mapping[str, float] = MappingProxyType(
    {
        "fork": _FORK_STARTUP_S,
        "forkserver": _FORKSERVER_STARTUP_S,
        "spawn": _SPAWN_STARTUP_S,
        INTERPRETERS: _INTERPRETERS_STARTUP_S,
    }
)
_THREAD_STARTUP_S = 100e-6
#: The caller's own time to fork one more worker (the fork, its pipe, its process object), one after
#: another before the call goes on: about 2 ms each measured for 2-8 fork workers on a 2-core VM.
_FORK_CALL_S = 2e-3
#: Round trip of one chunk to a process worker, pickling aside.
PROCESS_CHUNK_OVERHEAD_S = 300e-6
THREAD_CHUNK_OVERHEAD_S = 30e-6
#: Round trip of one chunk to a subinterpreter, pickling aside: two queue hand-offs and a call into it
#: (about 150 us measured on Python 3.14).
INTERPRETER_CHUNK_OVERHEAD_S = 150e-6
#: Moving pickled bytes through a pipe, each side (about 500 MB/s: several copies on the way).
_PIPE_S_PER_BYTE = 2e-9
#: Pickling and unpickling a large buffer (bytes, an array): two copies, about 2 ns per byte
#: measured for 20 MB on a 2-core x86-64 VM (page faults of the fresh copies included).
PICKLE_S_PER_BYTE = 2e-9
#: Copying a shared object into shared memory once (about 1 GB/s).
_SHM_COPY_S_PER_BYTE = 1e-9
#: Slow-down of threads that oversubscribe native thread pools.
_OVERSUBSCRIBE_PENALTY = 0.1

#: First use of a cluster: workers unpickle the function and import its module, as a spawn worker does.
DASK_FIRST_USE_S = _SPAWN_STARTUP_S

#: Predictions within this ratio of the fastest count as a tie, won by the simpler strategy
#: (timing noise on a shared machine is about 5-10%).
CLOSE_RATIO = 1.10

DASK = "dask"
MODELLED = ("serial", "threads", *PROCESS_METHODS, INTERPRETERS)


class Estimate(NamedTuple):
    total_s: float
    #: The work itself divided by the parallelism; the rest is start-up and dispatch.
    compute_s: float


def thread_speedup(wl: Workload, workers: int) -> float:
    if workers <= 1:
        return 1.0
    if wl.native:
        return 1 / (1 + _OVERSUBSCRIBE_PENALTY)
    w_eff = workers if wl.blocks else min(workers, wl.cpu_count)
    amdahl = 1 / ((1 - wl.thread_p) + wl.thread_p / w_eff)
    return min(amdahl, wl.cpu_count / max(wl.cpu_share, MIN_CPU_SHARE))


def _serial_estimate(wl: Workload, m: Measurements) -> Estimate:
    work = wl.remaining * wl.item_s
    return Estimate((clean(m.initializer_s) if wl.remaining else 0.0) + work, work)


def _thread_estimate(wl: Workload, m: Measurements, workers: int, chunksize: int) -> Estimate:
    speedup = thread_speedup(wl, workers)
    compute = wl.remaining * wl.item_s / speedup
    start = 0.0
    if ("threads", workers) not in m.warm_pools:
        # Initializers run concurrently, and scale as the function does.
        start = workers * (_THREAD_STARTUP_S + clean(m.initializer_s) / speedup)
    dispatch = ceil_div(wl.remaining, chunksize) * THREAD_CHUNK_OVERHEAD_S
    return Estimate(start + compute + dispatch + tail_s(wl, workers, chunksize * wl.item_s), compute)


def worker_startup_s(m: Measurements, method: str) -> float:
    return clean(m.worker_startup_s.get(method, DEFAULT_WORKER_STARTUP_S.get(method, _SPAWN_STARTUP_S)))


def _process_estimate(
    wl: Workload, m: Measurements, options: Options, method: str, workers: int, chunksize: int
) -> Estimate:
    item_s = wl.process_item_s
    # Items that wait part of the time wait together, then share the cores; computing items share them.
    share = 1.0 if wl.native else max(wl.cpu_share, MIN_CPU_SHARE)
    w_eff = lockstep(workers, share, wl.cpu_count) if wl.blocks else min(workers, wl.cpu_count)
    half_pickle_s = clean(m.pickle_s) / 2
    in_memory = method == INTERPRETERS  # bytes copied in memory, not through a pipe
    per_byte = _SHM_COPY_S_PER_BYTE if in_memory else _PIPE_S_PER_BYTE
    pipe_s = (clean(m.item_pickle_bytes) + clean(m.result_pickle_bytes)) * per_byte
    chunks = ceil_div(wl.remaining, chunksize)
    overhead = INTERPRETER_CHUNK_OVERHEAD_S if in_memory else PROCESS_CHUNK_OVERHEAD_S
    chunk_s = overhead + max(m.func_pickle_bytes, 0) * per_byte
    workers_s = (wl.remaining * (item_s + half_pickle_s + pipe_s) + chunks * chunk_s) / w_eff
    caller_s = wl.remaining * (half_pickle_s + pipe_s)
    # Workers boot in parallel, one per CPU; each one runs the initializer and, unless it
    # inherits it by fork, maps the shared object (bytes and arrays: copied once into shared memory).
    shared_s = 0.0 if method == "fork" else max(m.shared_bytes, 0) * _SHM_COPY_S_PER_BYTE
    # A worker not forked from the caller imports again what the first item imported (``warmup_s``).
    imports_s = 0.0 if method == "fork" else clean(m.warmup_s)
    boot_s = worker_startup_s(m, method) + clean(m.initializer_s) + shared_s + imports_s
    start = _start_s(m, method, workers, boot_s, wl.cpu_count)
    if options.max_tasks_per_worker:
        start += boot_s * max(ceil_div(ceil_div(chunks, workers), options.max_tasks_per_worker) - 1, 0)
    if in_memory and not options.forced:
        start += item_s + overhead  # the trial: auto runs one item alone before the rest
    if wl.blocks:
        total = start + max(workers_s, caller_s) + tail_s(wl, workers, chunksize * item_s)
    else:  # computing items run in rounds: the last one may leave cores idle, unless the caller is slower
        chunk_work_s = chunk_s + chunksize * (item_s + half_pickle_s + pipe_s)
        in_flight = _in_flight_s(wl, m, method)
        run_s = rounds_s(chunks, chunk_work_s, workers, wl.cpu_count, in_flight)
        uneven_s = uneven_tail_s(chunks + sum(1 for left in in_flight if left > 0), chunk_work_s, workers)
        total = start + max(workers_s, run_s, caller_s) + skew_tail_s(wl, workers) + uneven_s
    return Estimate(total, wl.remaining * item_s / w_eff)


def _in_flight_s(wl: Workload, m: Measurements, method: str) -> tuple[float, ...]:
    """Seconds left in the items the early pool of ``method`` runs, which a decision of it keeps.

    Each has been out ``m.speculative_out_s`` seconds, sharing the CPUs with the caller's sample since.
    """
    if m.early_pool is None or m.early_pool[0] != method or not m.speculative_out_s:
        return ()
    rate = min(1.0, wl.cpu_count / (len(m.speculative_out_s) + 1))
    return tuple(max(wl.process_item_s - clean(age) * rate, 0.0) for age in m.speculative_out_s)


def _start_s(m: Measurements, method: str, workers: int, boot_s: float, cpu_count: int) -> float:
    """Start-up of a pool of ``workers``: none if one is idle; else they boot in parallel, one per CPU.

    The pool started before measuring (``m.early_pool``) grows instead: its added
    workers boot while the others compute, taking their CPU time from them, once the
    caller forked them in turn (``_FORK_CALL_S`` each).
    """
    if (method, workers) in m.warm_pools:
        return 0.0
    early = m.early_pool
    if early is not None and early[0] == method and early[1] < workers:
        forks = _FORK_CALL_S if method == "fork" else 0.0
        return (boot_s / cpu_count + forks) * (workers - early[1])
    return boot_s * ceil_div(workers, cpu_count)


def cluster_parallelism(wl: Workload, c: ClusterFacts, slots: int) -> float:
    """Items the cluster runs at once: every thread, unless GIL-bound work shares a process's GIL."""
    if wl.native:
        return float(slots)
    threads = c.threads_per_worker if c.processes else c.total_threads
    processes = c.workers if c.processes else 1
    per_process = 1 / ((1 - wl.thread_p) + wl.thread_p / max(threads, 1))
    return max(min(processes * per_process, slots), 1.0)


def dask_item_s(wl: Workload) -> float:
    """Per-item time on a cluster thread: native thread pools there compete for the same cores."""
    return wl.process_item_s if wl.native else wl.item_s


def dask_estimate(wl: Workload, m: Measurements, c: ClusterFacts, workers: int, chunksize: int) -> Estimate:
    item_s = dask_item_s(wl)
    slots = max(min(workers, c.total_threads), 1)
    compute = wl.remaining * item_s / cluster_parallelism(wl, c, slots)
    per_byte = clean(c.transfer_s_per_byte)
    chunks = ceil_div(wl.remaining, chunksize)
    # Every task carries the function; every item and result is pickled and crosses the network.
    per_task = clean(c.task_overhead_s) + max(m.func_pickle_bytes, 0) * per_byte
    per_item = clean(m.pickle_s) + (clean(m.item_pickle_bytes) + clean(m.result_pickle_bytes)) * per_byte
    caller = chunks * per_task + wl.remaining * per_item
    start = 0.0 if (DASK, workers) in m.warm_pools else DASK_FIRST_USE_S + clean(m.initializer_s)
    # A round trip to start the first task, and one to fetch the last result once it is done.
    latency = 2 * clean(c.round_trip_s)
    total = start + latency + max(compute, caller) + tail_s(wl, slots, chunksize * item_s)
    return Estimate(total, compute)


def estimate(strategy: str, wl: Workload, m: Measurements, options: Options, workers: int, chunksize: int) -> Estimate:
    if strategy == DASK and m.cluster is not None:
        return dask_estimate(wl, m, m.cluster, workers, chunksize)
    if strategy == "serial":
        return _serial_estimate(wl, m)
    if strategy == "threads":
        return _thread_estimate(wl, m, workers, chunksize)
    if strategy in PROCESS_METHODS or strategy == INTERPRETERS:
        return _process_estimate(wl, m, options, strategy, workers, chunksize)
    msg = (
        f"strategy {strategy!r} has no cost model; expected 'serial', 'threads', one of {PROCESS_METHODS!r}, "
        "'interpreters', or 'dask' with measurements.cluster set"
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
        strategy: "serial", "threads", "fork", "forkserver", "spawn", "interpreters", or "dask" when
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
    return estimate(strategy, wl, measurements, options, max(workers, 1), max(chunksize, 1)).total_s
