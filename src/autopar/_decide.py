"""Pure cost model: measurements, platform facts and options in, a ``Decision`` out.

``decide`` predicts the wall time of the work left after calibration for serial,
threads and every usable process start method, and picks the fastest; when
predictions are within 10% the simpler strategy wins (serial, threads, then
``auto_process_methods`` order).  With ``n`` items of mean wall time ``t``:

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

from ._model import Candidate, ClusterFacts, Decision, Measurements, Options, PlatformFacts, _fmt_s
from ._safety import PROCESS_METHODS, auto_process_methods, method_verdict

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["decide", "predict"]

#: Items assumed to remain when the input has no length (a generator): streams are usually long.
_ASSUMED_ITEMS_UNKNOWN = 10_000
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
_SKEW_RATIO = 4.0
#: Thread CPU over wall below which the function counts as waiting (I/O, sleeps, locks).
_WAITING_CPU_SHARE = 0.5
#: Process CPU over wall above which native threads already use several cores.
_NATIVE_CORES_RATIO = 1.3
_MIN_CPU_SHARE = 0.01
#: Voluntary context switches per item below which the function does not wait (it computes).
_MIN_WAITS_PER_ITEM = 0.5
#: Slow-down of threads that oversubscribe native thread pools.
_OVERSUBSCRIBE_PENALTY = 0.1
#: Predictions within this ratio of the fastest count as a tie, won by the simpler strategy.
_CLOSE_RATIO = 1.10
#: Probe speedup below which threads count as serialized.
_THREAD_GAIN_MIN = 1.2

#: First use of a cluster: workers unpickle the function and import its module, as a spawn worker does.
_DASK_FIRST_USE_S = _SPAWN_STARTUP_S

_DASK = "dask"
_MODELLED = ("serial", "threads", *PROCESS_METHODS)
_SOURCES = {
    "env": "the AUTOPAR_STRATEGY environment variable",
    "call": "the call",
    "decorator": "the decorator",
    "config": "autopar.config()",
}


@attrs.frozen
class _Workload:
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


class _Estimate(NamedTuple):
    total_s: float
    #: The work itself divided by the parallelism; the rest is start-up and dispatch.
    compute_s: float


def _clean(value: float) -> float:
    """A finite, non-negative number (calibration noise never makes the model raise)."""
    return value if math.isfinite(value) and value > 0 else 0.0


def _ceil_div(a: int, b: int) -> int:
    return -(-a // max(b, 1))


def _probe(m: Measurements) -> tuple[int, float] | None:
    """The thread probe's (workers, speedup), or None when there was no usable probe."""
    s = m.thread_speedup
    if m.thread_probe_workers >= 2 and s is not None and math.isfinite(s) and s > 0:
        # k threads cannot run more than k times as fast: a higher reading is timing noise.
        return m.thread_probe_workers, min(s, float(m.thread_probe_workers))
    return None


def _thread_fraction(m: Measurements, platform: PlatformFacts, share: float, waiting: bool) -> float:
    # Waiting releases the GIL; the computing part still holds it (unless the build has no GIL).
    floor = 1.0 if not platform.gil_enabled else (1.0 - share if waiting else 0.0)
    probe = _probe(m)
    if probe is not None:
        k, s = probe
        # Computing threads beyond the CPU count add no parallelism, so the probe ran at most that many.
        k = k if waiting else min(k, max(platform.cpu_count, 1))
        if k >= 2:
            fitted = min(max((1 - 1 / s) / (1 - 1 / k), 0.0), 1.0)
            # A short probe on a busy machine can under-read waiting work, never over-read it.
            return max(fitted, floor) if waiting else fitted
    return floor


def _workload(m: Measurements, platform: PlatformFacts) -> _Workload:
    wall = _clean(m.item_wall_s)
    share = min(_clean(m.item_cpu_s) / wall, 1.0) if wall else 1.0
    if m.item_waits is not None and m.item_waits < _MIN_WAITS_PER_ITEM:
        # The thread never blocked: the CPU it lacked went to other processes, not to waiting.
        share = 1.0
    ratio = _clean(m.item_process_cpu_s) / wall if wall else 0.0
    cores = ratio if ratio > _NATIVE_CORES_RATIO else 1.0
    remaining = _ASSUMED_ITEMS_UNKNOWN if m.n_items is None else max(m.n_items - max(m.sampled, 0), 0)
    waiting = ratio <= _NATIVE_CORES_RATIO and share < _WAITING_CPU_SHARE
    return _Workload(
        remaining=remaining,
        item_s=wall,
        item_max_s=max(_clean(m.item_wall_max_s), wall),
        cpu_share=share,
        cores_used=cores,
        thread_p=_thread_fraction(m, platform, share, waiting),
        cpu_count=max(platform.cpu_count, 1),
    )


def _thread_speedup(wl: _Workload, workers: int) -> float:
    if workers <= 1:
        return 1.0
    if wl.native:
        return 1 / (1 + _OVERSUBSCRIBE_PENALTY)
    w_eff = workers if wl.waiting else min(workers, wl.cpu_count)
    amdahl = 1 / ((1 - wl.thread_p) + wl.thread_p / w_eff)
    return min(amdahl, wl.cpu_count / max(wl.cpu_share, _MIN_CPU_SHARE))


def _tail_s(wl: _Workload, workers: int, chunk_s: float) -> float:
    """The last chunks finish unevenly: about half a chunk, plus half the slowest item's excess."""
    return 0.0 if workers <= 1 else 0.5 * chunk_s + 0.5 * (wl.item_max_s - wl.item_s)


def _serial_estimate(wl: _Workload, m: Measurements) -> _Estimate:
    work = wl.remaining * wl.item_s
    return _Estimate((_clean(m.initializer_s) if wl.remaining else 0.0) + work, work)


def _thread_estimate(wl: _Workload, m: Measurements, workers: int, chunksize: int) -> _Estimate:
    speedup = _thread_speedup(wl, workers)
    compute = wl.remaining * wl.item_s / speedup
    start = 0.0
    if ("threads", workers) not in m.warm_pools:
        # Initializers run concurrently, and scale as the function does.
        start = workers * (_THREAD_STARTUP_S + _clean(m.initializer_s) / speedup)
    dispatch = _ceil_div(wl.remaining, chunksize) * _THREAD_CHUNK_OVERHEAD_S
    return _Estimate(start + compute + dispatch + _tail_s(wl, workers, chunksize * wl.item_s), compute)


def _worker_startup_s(m: Measurements, method: str) -> float:
    return _clean(m.worker_startup_s.get(method, DEFAULT_WORKER_STARTUP_S.get(method, _SPAWN_STARTUP_S)))


def _process_estimate(
    wl: _Workload, m: Measurements, options: Options, method: str, workers: int, chunksize: int
) -> _Estimate:
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
    return _Estimate(total, wl.remaining * item_s / w_eff)


def _cluster_parallelism(wl: _Workload, c: ClusterFacts, slots: int) -> float:
    """Items the cluster runs at once: every thread, unless GIL-bound work shares a process's GIL."""
    if wl.native:
        return float(slots)
    threads = c.threads_per_worker if c.processes else c.total_threads
    processes = c.workers if c.processes else 1
    per_process = 1 / ((1 - wl.thread_p) + wl.thread_p / max(threads, 1))
    return max(min(processes * per_process, slots), 1.0)


def _dask_item_s(wl: _Workload) -> float:
    """Per-item time on a cluster thread: native thread pools there compete for the same cores."""
    return wl.process_item_s if wl.native else wl.item_s


def _dask_estimate(wl: _Workload, m: Measurements, c: ClusterFacts, workers: int, chunksize: int) -> _Estimate:
    item_s = _dask_item_s(wl)
    slots = max(min(workers, c.total_threads), 1)
    compute = wl.remaining * item_s / _cluster_parallelism(wl, c, slots)
    per_byte = _clean(c.transfer_s_per_byte)
    chunks = _ceil_div(wl.remaining, chunksize)
    # Every task carries the function; every item and result is pickled and crosses the network.
    per_task = _clean(c.task_overhead_s) + max(m.func_pickle_bytes, 0) * per_byte
    per_item = _clean(m.pickle_s) + (_clean(m.item_pickle_bytes) + _clean(m.result_pickle_bytes)) * per_byte
    caller = chunks * per_task + wl.remaining * per_item
    start = 0.0 if (_DASK, workers) in m.warm_pools else _DASK_FIRST_USE_S + _clean(m.initializer_s)
    # A round trip to start the first task, and one to fetch the last result once it is done.
    latency = 2 * _clean(c.round_trip_s)
    total = start + latency + max(compute, caller) + _tail_s(wl, slots, chunksize * item_s)
    return _Estimate(total, compute)


def _estimate(
    strategy: str, wl: _Workload, m: Measurements, options: Options, workers: int, chunksize: int
) -> _Estimate:
    if strategy == _DASK and m.cluster is not None:
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
    wl = _workload(measurements, platform)
    return _estimate(strategy, wl, measurements, options, max(workers, 1), max(chunksize, 1)).total_s


def _workers(strategy: str, wl: _Workload, options: Options) -> int:
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


def _chunksize(wl: _Workload, workers: int, item_s: float, overhead_s: float) -> int:
    """Chunks long enough to hide dispatch, yet several per worker for balance.

    Skewed items get more, shorter chunks: a slow item then delays less work behind it.
    """
    skew = wl.item_max_s / wl.item_s if wl.item_s else 1.0
    skewed = skew > _SKEW_RATIO
    balance = max(wl.remaining // (workers * (_SKEWED_CHUNKS_PER_WORKER if skewed else _CHUNKS_PER_WORKER)), 1)
    if item_s <= 0:
        return balance
    target_s = _TARGET_CHUNK_S / skew if skewed else _TARGET_CHUNK_S
    wanted = max(overhead_s / _CHUNK_OVERHEAD_SHARE / item_s, target_s / item_s)
    return balance if wanted >= balance else max(math.ceil(wanted), 1)


def _dask_candidate(wl: _Workload, m: Measurements, c: ClusterFacts, options: Options) -> tuple[Candidate, _Estimate]:
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
    warm = "warm" if (_DASK, workers) in m.warm_pools else f"first use {_fmt_s(_DASK_FIRST_USE_S)}"
    note = f"cluster runs {par:.0f} at once; {warm}"
    return Candidate(strategy=_DASK, workers=workers, chunksize=chunksize, predicted_s=est.total_s, note=note), est


def _candidate(strategy: str, wl: _Workload, m: Measurements, options: Options) -> tuple[Candidate, _Estimate | None]:
    """The candidate's workers, chunk size and prediction (None, and a NaN, for a plugin strategy)."""
    if strategy == _DASK and m.cluster is not None:
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
    if strategy not in _MODELLED:
        return Candidate(strategy=strategy, workers=workers, chunksize=chunksize, predicted_s=math.nan), None
    est = _estimate(strategy, wl, m, options, workers, chunksize)
    note = _note(strategy, wl, m, workers)
    return Candidate(strategy=strategy, workers=workers, chunksize=chunksize, predicted_s=est.total_s, note=note), est


def _note(strategy: str, wl: _Workload, m: Measurements, workers: int) -> str:
    if strategy == "serial":
        return "runs in the caller"
    if strategy == "threads":
        return f"{_thread_speedup(wl, workers):.2f}x on threads"
    if (strategy, workers) in m.warm_pools:
        return "warm pool"
    start = _worker_startup_s(m, strategy) + _clean(m.initializer_s)
    with_init = f" (initializer {_fmt_s(m.initializer_s)} included)" if m.initializer_s > 0 else ""
    return f"start-up {_fmt_s(start)} per worker{with_init}"


def _process_methods(m: Measurements, platform: PlatformFacts) -> tuple[str, ...]:
    """The start methods auto-selection may use for this function and data."""
    if not m.data_picklable:
        return ()
    methods = auto_process_methods(platform)
    return methods if m.shippable else tuple(x for x in methods if x == "fork")


def _process_reasons(m: Measurements, platform: PlatformFacts, chosen: str) -> list[str]:
    if not m.data_picklable:
        return ["items or results cannot be pickled: no process strategy"]
    using = f"; using {chosen}" if chosen in PROCESS_METHODS else ""
    reasons = []
    fork = method_verdict("fork", platform)
    if fork.available and not fork.safe:
        reasons.append(f"fork is unsafe: {fork.reason}{using}")
    elif fork.safe and "fork" not in auto_process_methods(platform):
        reasons.append(f"the interpreter's default start method is {platform.default_start_method}: fork is left out")
    shipped = [x for x in auto_process_methods(platform) if x != "fork"]
    if not m.shippable and shipped:
        inherit = "; fork workers inherit it" if "fork" in _process_methods(m, platform) else ""
        why = m.ship_reason or "it cannot be pickled by reference"
        reasons.append(f"cannot ship the function to {'/'.join(shipped)}: {why}{inherit}")
    return reasons


def _thread_reasons(wl: _Workload, m: Measurements, platform: PlatformFacts, threads: int) -> list[str]:
    if wl.native:
        return [
            f"already uses ~{wl.cores_used:.1f} cores (native threads): threads would oversubscribe them, "
            "process workers limit native thread pools to one thread"
        ]
    reasons = []
    probe = _probe(m)
    if probe is not None:
        k, s = probe
        if s >= _THREAD_GAIN_MIN:
            reasons.append(f"releases the GIL: {k} threads ran {s:.2f}x as fast as one")
        elif platform.gil_enabled:
            reasons.append(f"the GIL serializes this function: {k} threads ran {s:.2f}x as fast as one")
        else:
            reasons.append(f"threads do not help: {k} threads ran {s:.2f}x as fast as one")
    elif not platform.gil_enabled:
        reasons.append("free-threaded interpreter: threads run in parallel")
    elif not wl.waiting:
        reasons.append(
            f"computes under the GIL (CPU {wl.cpu_share:.0%} of wall, threads not probed): threads cannot run it in parallel"
        )
    if wl.waiting:
        reasons.append(f"waits more than it computes (CPU {wl.cpu_share:.0%} of wall): threads, up to {threads}")
    return reasons


def _workload_reasons(wl: _Workload, m: Measurements) -> list[str]:
    reasons = []
    if m.n_items is None:
        reasons.append(f"input length unknown: assuming {_ASSUMED_ITEMS_UNKNOWN:,} more items")
    if wl.remaining == 0:
        reasons.append(f"no items left after the {m.sampled} sampled: nothing to run")
    elif wl.remaining == 1:
        reasons.append("only 1 item left: nothing to split across workers")
    if wl.item_max_s > _SKEW_RATIO * wl.item_s > 0:
        reasons.append(
            f"item times are skewed (slowest {_fmt_s(wl.item_max_s)}, mean {_fmt_s(wl.item_s)}): smaller chunks"
        )
    return reasons


def _choice_reason(chosen: Candidate, scored: list[tuple[Candidate, _Estimate]]) -> str:
    serial = scored[0][0]
    fastest = min((c for c, _ in scored), key=lambda c: c.predicted_s)
    if chosen.strategy != "serial":
        text = (
            f"{chosen.strategy} with {chosen.workers} workers: predicted {_fmt_s(chosen.predicted_s)} "
            f"against {_fmt_s(serial.predicted_s)} serially"
        )
        if fastest is not chosen:
            text += f"; simpler than {fastest.strategy} ({_fmt_s(fastest.predicted_s)}) and within 10% of it"
        return text
    gaining = [(c, e) for c, e in scored[1:] if e.compute_s * _CLOSE_RATIO < serial.predicted_s]
    if not gaining:
        return "no strategy runs the work faster than serial"
    best, est = min(gaining, key=lambda ce: ce[0].predicted_s)
    cost = est.total_s - est.compute_s
    if serial.predicted_s <= cost:
        return (
            f"total work {_fmt_s(serial.predicted_s)} is below the pool start-up, pickling and dispatch cost "
            f"of {best.strategy} ({_fmt_s(cost)})"
        )
    return (
        f"no parallel strategy beats serial by more than 10%: the best, {best.strategy} with {best.workers} "
        f"workers, predicts {_fmt_s(best.predicted_s)} against {_fmt_s(serial.predicted_s)}, "
        f"its start-up, pickling and dispatch ({_fmt_s(cost)}) outweighing the gain"
    )


def _forced_reasons(name: str, m: Measurements, platform: PlatformFacts, options: Options) -> list[str]:
    source = _SOURCES.get(options.strategy_source, options.strategy_source)
    reasons = [f"strategy {name!r} forced by {source}"]
    if name in PROCESS_METHODS:
        verdict = method_verdict(name, platform)
        if not verdict.safe:
            reasons.append(f"{name} is {'unsafe' if verdict.available else 'unavailable'}: {verdict.reason}")
        if not m.data_picklable:
            reasons.append(f"items or results cannot be pickled: {name} will fail to send them")
        elif not m.shippable and name != "fork":
            reasons.append(f"cannot ship the function to {name}: {m.ship_reason or 'not picklable by reference'}")
    elif name not in _MODELLED and not (name == _DASK and m.cluster is not None):
        reasons.append(f"no cost model for {name!r}: workers and chunksize follow the generic rules")
    return reasons


def _cluster_excluded(m: Measurements, options: Options) -> str | None:
    """Why auto-selection may not send this call to the cluster it knows, or None when it may."""
    c = m.cluster
    if c is None:
        return "no cluster"
    if c.total_threads < 1:
        return "the cluster has no workers"
    if not m.data_picklable:
        return "items or results cannot be pickled"
    if options.has_shared:
        return "shared= is not sent to a cluster"
    return None


def _cluster_reasons(m: Measurements, options: Options, chosen: Candidate, candidates: list[Candidate]) -> list[str]:
    c = m.cluster
    if c is None:
        return []
    mb_s = f"{1e-6 / c.transfer_s_per_byte:,.0f} MB/s" if c.transfer_s_per_byte > 0 else "unmeasured transfer"
    text = (
        f"Dask cluster {c.address}: {c.workers} worker(s) x {c.threads_per_worker} thread(s) "
        f"({'a process each' if c.processes else 'threads of one process'}), round trip {_fmt_s(c.round_trip_s)}, "
        f"{_fmt_s(c.task_overhead_s)} per task, {mb_s}"
    )
    excluded = _cluster_excluded(m, options)
    dask = next((x for x in candidates if x.strategy == _DASK), None)
    if excluded is not None:
        text += f"; not a candidate: {excluded}"
    elif dask is not None and dask is not chosen and not options.forced:
        text += (
            f"; predicts {_fmt_s(dask.predicted_s)} against {_fmt_s(chosen.predicted_s)} for {chosen.strategy}: "
            "the cluster runs a call only when more than 10% faster than every local strategy"
        )
    return [text]


def _serial_only(wl: _Workload, m: Measurements, options: Options, reason: str) -> Decision:
    serial, _ = _candidate("serial", wl, m, options)
    return Decision(
        strategy="serial",
        workers=1,
        chunksize=serial.chunksize,
        predicted_s=serial.predicted_s,
        candidates=(serial,),
        reasons=(reason,),
        measurements=m,
        forced=False,
        limit_native_threads=False,
    )


def decide(measurements: Measurements, platform: PlatformFacts, options: Options) -> Decision:
    """Choose the strategy, worker count and chunk size for the remaining work.

    Every candidate (serial, threads, each usable start method, and the Dask
    cluster when ``measurements.cluster`` describes one) gets a predicted wall
    time; the fastest wins, or the simplest within 10% of it (the cluster last).  A forced
    ``options.strategy`` is always the one chosen; the others stay listed for
    ``explain``.  Nested calls and spawn children importing an unguarded
    ``__main__`` always run serially.

    Args:
        measurements: What calibration measured on real items.
        platform: The machine and interpreter.
        options: The call's resolved options.

    Returns:
        The decision, with every candidate and the reasons in plain words.
    """
    wl = _workload(measurements, platform)
    if platform.in_worker:
        return _serial_only(wl, measurements, options, "nested call inside a worker: running serially")
    if platform.in_main_bootstrap:
        return _serial_only(
            wl,
            measurements,
            options,
            "this process is a spawn child importing __main__: running serially; "
            'put the entry point under `if __name__ == "__main__":`',
        )
    names = ("serial", "threads", *_process_methods(measurements, platform))
    if _cluster_excluded(measurements, options) is None:
        names += (_DASK,)  # last: the cluster never wins a tie against the machine at hand
    scored = [(c, e) for c, e in (_candidate(n, wl, measurements, options) for n in names) if e is not None]
    candidates = [c for c, _ in scored]
    best_s = min(c.predicted_s for c in candidates)
    chosen = next(c for c in candidates if c.predicted_s <= best_s * _CLOSE_RATIO)
    reasons = [
        *_workload_reasons(wl, measurements),
        *_thread_reasons(wl, measurements, platform, candidates[1].workers),
    ]
    if options.forced:
        listed = [c for c in candidates if c.strategy == options.strategy]
        chosen = listed[0] if listed else _candidate(options.strategy, wl, measurements, options)[0]
        if not (listed or math.isnan(chosen.predicted_s)):
            candidates.append(chosen)
        reasons += _forced_reasons(options.strategy, measurements, platform, options)
    else:
        reasons.append(_choice_reason(chosen, scored))
    reasons += _process_reasons(measurements, platform, chosen.strategy)
    reasons += _cluster_reasons(measurements, options, chosen, candidates)
    return Decision(
        strategy=chosen.strategy,
        workers=chosen.workers,
        chunksize=chosen.chunksize,
        predicted_s=None if math.isnan(chosen.predicted_s) else chosen.predicted_s,
        candidates=tuple(candidates),
        reasons=tuple(reasons),
        measurements=measurements,
        forced=options.forced,
        limit_native_threads=chosen.strategy in PROCESS_METHODS,
    )
