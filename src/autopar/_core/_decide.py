"""The decision: size and price every candidate, pick one, and gather the reasons.

``decide`` prices serial, threads, every usable process start method, a pool
of subinterpreters (Python 3.14+, when ``_safety.interpreters_excluded`` allows
it) and the Dask cluster (when measured) with ``_costs`` and picks the fastest;
when predictions are within 10% the simpler strategy wins (serial, threads,
then ``auto_process_methods`` order, subinterpreters, the cluster last).  ``forced_decision`` plans a
strategy the caller forced, which runs without calibration: its workers and
chunk size follow from the platform and the input length alone.

No clock, no OS calls, no randomness: the same inputs give the same decision.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .._model import Candidate, Decision
from . import _reasons
from ._costs import (
    CLOSE_RATIO,
    DASK,
    INTERPRETER_CHUNK_OVERHEAD_S,
    MODELLED,
    PROCESS_CHUNK_OVERHEAD_S,
    THREAD_CHUNK_OVERHEAD_S,
    Estimate,
    cluster_parallelism,
    dask_estimate,
    dask_item_s,
    estimate,
)
from ._safety import INTERPRETERS, PROCESS_METHODS, interpreters_excluded, usable_process_methods
from ._sizing import (
    PLANNED_CHUNK_S,
    ceil_div,
    chunksize_for,
    default_workers,
    forced_chunksize,
    worker_options,
    workers_for,
)
from ._workload import Workload, clean, workload

if TYPE_CHECKING:
    from .._model import ClusterFacts, Measurements, Options, PlatformFacts

__all__ = ["candidate", "cluster_excluded", "decide", "forced_decision", "serial_exit"]


def serial_exit(platform: PlatformFacts) -> str | None:
    """Why this call must run serially whatever it measures (a nested call, a re-imported main, no thread starts), or None."""
    if platform.in_worker:
        return _reasons.NESTED
    if platform.in_main_bootstrap:
        return _reasons.IN_BOOTSTRAP
    for failed, why in platform.start_failures:
        if failed == "threads":
            return _reasons.no_threads(why)
    return None


def _dask_candidate(wl: Workload, m: Measurements, c: ClusterFacts, options: Options) -> tuple[Candidate, Estimate]:
    """Every cluster thread as a worker; chunks long enough that the scheduler keeps every thread fed."""
    slots = min(max(options.workers or c.total_threads, 1), max(wl.remaining, 1))
    if options.chunksize is not None:
        chunksize = max(options.chunksize, 1)
    else:
        item_s = dask_item_s(wl)
        chunksize = chunksize_for(wl, slots, item_s, clean(c.round_trip_s))
        if item_s > 0:
            # Handing a task to each thread takes slots * task overhead: a chunk should outlast that,
            # yet every thread should get a chunk.
            fed = math.ceil(slots * clean(c.task_overhead_s) / item_s)
            chunksize = max(min(max(chunksize, fed), ceil_div(wl.remaining, slots)), 1)
    workers = min(slots, max(ceil_div(wl.remaining, chunksize), 1))
    est = dask_estimate(wl, m, c, workers, chunksize)
    note = _reasons.dask_note(cluster_parallelism(wl, c, workers), (DASK, workers) in m.warm_pools)
    return Candidate(strategy=DASK, workers=workers, chunksize=chunksize, predicted_s=est.total_s, note=note), est


def candidate(
    strategy: str, wl: Workload, m: Measurements, options: Options, workers: int | None = None
) -> tuple[Candidate, Estimate | None]:
    """The candidate's workers, chunk size and prediction (None, and a NaN, for a plugin strategy).

    ``workers`` prices another worker count than the default one (``worker_options`` lists them).
    """
    if strategy == DASK and m.cluster is not None:
        return _dask_candidate(wl, m, m.cluster, options)
    workers = workers_for(strategy, wl, options) if workers is None else workers
    if options.chunksize is not None:
        chunksize = max(options.chunksize, 1)
    elif strategy == "serial":
        chunksize = max(wl.remaining, 1)
    elif strategy == "threads":
        chunksize = chunksize_for(wl, workers, wl.item_s, THREAD_CHUNK_OVERHEAD_S)
    elif strategy == INTERPRETERS:
        chunksize = chunksize_for(wl, workers, wl.process_item_s, INTERPRETER_CHUNK_OVERHEAD_S)
    else:  # process methods, and plugin strategies with process-like dispatch
        chunksize = chunksize_for(wl, workers, wl.process_item_s, PROCESS_CHUNK_OVERHEAD_S, PLANNED_CHUNK_S)
    workers = min(workers, max(ceil_div(wl.remaining, chunksize), 1))
    if strategy not in MODELLED:
        return Candidate(strategy=strategy, workers=workers, chunksize=chunksize, predicted_s=math.nan), None
    est = estimate(strategy, wl, m, options, workers, chunksize)
    note = _reasons.candidate_note(strategy, wl, m, workers)
    return Candidate(strategy=strategy, workers=workers, chunksize=chunksize, predicted_s=est.total_s, note=note), est


def forced_decision(
    platform: PlatformFacts, options: Options, n_items: int | None, *, cluster_threads: int | None = None
) -> Decision:
    """Plan the strategy the caller forced, which runs without calibration.

    Workers: ``options.workers``, else ``default_workers`` (for ``"dask"``, every
    thread of the cluster, ``cluster_threads``), never more than the items.  Chunk
    size: ``options.chunksize``, else ``CHUNKS_PER_WORKER`` chunks per worker
    when the input length is known, else 0, which lets dispatch size chunks as
    results come in.

    Args:
        platform: The machine and interpreter.
        options: The call's resolved options; ``options.strategy`` is the forced one.
        n_items: Items in the input, or None for a stream of unknown length.
        cluster_threads: Threads of the Dask cluster, for ``"dask"``.

    Returns:
        The decision, marked ``forced``, with the reasons (an unsafe start method among them).
    """
    name = options.strategy
    if name == "serial":
        workers = 1
    elif options.workers is not None:
        workers = max(options.workers, 1)
    elif name == DASK and cluster_threads is not None:
        workers = max(cluster_threads, 1)
    else:
        workers = default_workers(name, platform)
    if n_items is not None:
        workers = max(1, min(workers, n_items))
    return Decision(
        strategy=name,
        workers=workers,
        chunksize=forced_chunksize(options, workers, n_items),
        reasons=tuple(_reasons.forced_reasons(name, None, platform, options)),
        forced=True,
    )


def cluster_excluded(m: Measurements, options: Options) -> str | None:
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


def _serial_only(wl: Workload, m: Measurements, options: Options, reason: str) -> Decision:
    serial, _ = candidate("serial", wl, m, options)
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
    ``__main__`` always run serially (``serial_exit``).

    Args:
        measurements: What calibration measured on real items.
        platform: The machine and interpreter.
        options: The call's resolved options.

    Returns:
        The decision, with every candidate and the reasons in plain words.
    """
    wl = workload(measurements, platform)
    exit_reason = serial_exit(platform)
    if exit_reason is not None:
        return _serial_only(wl, measurements, options, exit_reason)
    excluded = cluster_excluded(measurements, options)
    scored = _score(wl, measurements, platform, options, with_cluster=excluded is None)
    candidates = [c for c, _ in scored]
    best_s = min(c.predicted_s for c in candidates)
    chosen = next(c for c in candidates if c.predicted_s <= best_s * CLOSE_RATIO)
    reasons = [
        *_reasons.workload_reasons(wl, measurements),
        *_reasons.thread_reasons(wl, measurements, platform, candidates[1].workers),
    ]
    if options.forced:
        chosen = _forced_candidate(wl, measurements, options, candidates)
        reasons += _reasons.forced_reasons(options.strategy, measurements, platform, options)
    else:
        reasons.append(_reasons.choice_reason(chosen, scored))
    reasons += _reasons.process_reasons(measurements, platform, chosen.strategy)
    reasons += _reasons.interpreters_reasons(measurements, platform, options, chosen.strategy)
    reasons += _reasons.cluster_reasons(measurements, options, chosen, candidates, excluded)
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


def _score(
    wl: Workload, m: Measurements, platform: PlatformFacts, options: Options, *, with_cluster: bool
) -> list[tuple[Candidate, Estimate]]:
    """Every modelled candidate auto may use, simplest first, with its estimate."""
    usable = usable_process_methods(platform, shippable=m.shippable, picklable=m.data_picklable)
    names = ("serial", "threads", *usable)
    if interpreters_excluded(platform, m, options) is None:
        names += (INTERPRETERS,)  # after processes: a tie goes to workers every module loads in
    if with_cluster:
        names += (DASK,)  # last: the cluster never wins a tie against the machine at hand
    scored = [_best_count(n, wl, m, options) for n in names]
    return [(c, e) for c, e in scored if e is not None]


def _best_count(strategy: str, wl: Workload, m: Measurements, options: Options) -> tuple[Candidate, Estimate | None]:
    """The strategy's candidate at the worker count, of those ``worker_options`` lists, predicted fastest."""
    if strategy == DASK:
        return candidate(strategy, wl, m, options)
    priced = [candidate(strategy, wl, m, options, count) for count in worker_options(strategy, wl, options)]
    return min(priced, key=lambda ce: ce[0].predicted_s)


def _forced_candidate(wl: Workload, m: Measurements, options: Options, candidates: list[Candidate]) -> Candidate:
    """The forced strategy's candidate; appended to ``candidates`` when auto would not have listed it."""
    listed = [c for c in candidates if c.strategy == options.strategy]
    if listed:
        return listed[0]
    chosen = candidate(options.strategy, wl, m, options)[0]
    if not math.isnan(chosen.predicted_s):
        candidates.append(chosen)
    return chosen
