"""The decision: compare the cost model's candidates, pick one, and say why in plain words.

``decide`` prices serial, threads, every usable process start method and the
Dask cluster (when measured) with ``_costs`` and picks the fastest; when
predictions are within 10% the simpler strategy wins (serial, threads, then
``auto_process_methods`` order, the cluster last).  ``forced_decision`` plans a
strategy the caller forced, which runs without calibration: its workers and
chunk size follow from the platform and the input length alone.

No clock, no OS calls, no randomness: the same inputs give the same decision.
"""

from __future__ import annotations

import math

from ._costs import (
    ASSUMED_ITEMS_UNKNOWN,
    DASK,
    MODELLED,
    SKEW_RATIO,
    Estimate,
    Workload,
    candidate,
    probe_reading,
    workload,
)
from ._model import Candidate, Decision, Measurements, Options, PlatformFacts, _fmt_s
from ._safety import PROCESS_METHODS, auto_process_methods, method_verdict

__all__ = ["FORCED_CHUNKS_PER_WORKER", "decide", "default_workers", "forced_decision"]

#: Predictions within this ratio of the fastest count as a tie, won by the simpler strategy.
_CLOSE_RATIO = 1.10
#: Probe speedup below which threads count as serialized.
_THREAD_GAIN_MIN = 1.2
#: Chunks per worker of a forced strategy with a known input length: a bounded read-ahead, balanced.
FORCED_CHUNKS_PER_WORKER = 4
#: Most threads a forced thread pool starts by default (as ``concurrent.futures.ThreadPoolExecutor``).
_MAX_DEFAULT_THREADS = 32
_SOURCES = {
    "env": "the AUTOPAR_STRATEGY environment variable",
    "call": "the call",
    "decorator": "the decorator",
    "config": "autopar.config()",
}


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


def _thread_reasons(wl: Workload, m: Measurements, platform: PlatformFacts, threads: int) -> list[str]:
    if wl.native:
        return [
            f"already uses ~{wl.cores_used:.1f} cores (native threads): threads would oversubscribe them, "
            "process workers limit native thread pools to one thread"
        ]
    reasons = []
    probe = probe_reading(m)
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


def _workload_reasons(wl: Workload, m: Measurements) -> list[str]:
    reasons = []
    if m.n_items is None:
        reasons.append(f"input length unknown: assuming {ASSUMED_ITEMS_UNKNOWN:,} more items")
    if wl.remaining == 0:
        reasons.append(f"no items left after the {m.sampled} sampled: nothing to run")
    elif wl.remaining == 1:
        reasons.append("only 1 item left: nothing to split across workers")
    if wl.item_max_s > SKEW_RATIO * wl.item_s > 0:
        reasons.append(
            f"item times are skewed (slowest {_fmt_s(wl.item_max_s)}, mean {_fmt_s(wl.item_s)}): smaller chunks"
        )
    return reasons


def _choice_reason(chosen: Candidate, scored: list[tuple[Candidate, Estimate]]) -> str:
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


def _forced_reasons(name: str, m: Measurements | None, platform: PlatformFacts, options: Options) -> list[str]:
    source = _SOURCES.get(options.strategy_source, options.strategy_source)
    reasons = [f"strategy {name!r} forced by {source}"]
    if name in PROCESS_METHODS:
        verdict = method_verdict(name, platform)
        if not verdict.safe:
            reasons.append(f"{name} is {'unsafe' if verdict.available else 'unavailable'}: {verdict.reason}")
        if m is not None and not m.data_picklable:
            reasons.append(f"items or results cannot be pickled: {name} will fail to send them")
        elif m is not None and not m.shippable and name != "fork":
            reasons.append(f"cannot ship the function to {name}: {m.ship_reason or 'not picklable by reference'}")
    elif m is not None and name not in MODELLED and not (name == DASK and m.cluster is not None):
        reasons.append(f"no cost model for {name!r}: workers and chunksize follow the generic rules")
    return reasons


def default_workers(strategy: str, platform: PlatformFacts) -> int:
    """Workers of a forced strategy when the caller named no count: one per CPU, more threads for waiting."""
    if strategy == "serial":
        return 1
    if strategy == "threads":
        # Forced threads are often used for waiting work, which needs more threads than CPUs.
        return min(_MAX_DEFAULT_THREADS, platform.cpu_count + 4)
    return max(platform.cpu_count, 1)


def forced_decision(
    platform: PlatformFacts, options: Options, n_items: int | None, *, cluster_threads: int | None = None
) -> Decision:
    """Plan the strategy the caller forced, which runs without calibration.

    Workers: ``options.workers``, else ``default_workers`` (for ``"dask"``, every
    thread of the cluster, ``cluster_threads``), never more than the items.  Chunk
    size: ``options.chunksize``, else ``FORCED_CHUNKS_PER_WORKER`` chunks per worker
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
    if options.chunksize is not None:
        chunksize = max(options.chunksize, 1)
    elif n_items:
        chunksize = -(-n_items // (workers * FORCED_CHUNKS_PER_WORKER))
    else:
        chunksize = 0
    return Decision(
        strategy=name,
        workers=workers,
        chunksize=chunksize,
        reasons=tuple(_forced_reasons(name, None, platform, options)),
        forced=True,
    )


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
    dask = next((x for x in candidates if x.strategy == DASK), None)
    if excluded is not None:
        text += f"; not a candidate: {excluded}"
    elif dask is not None and dask is not chosen and not options.forced:
        text += (
            f"; predicts {_fmt_s(dask.predicted_s)} against {_fmt_s(chosen.predicted_s)} for {chosen.strategy}: "
            "the cluster runs a call only when more than 10% faster than every local strategy"
        )
    return [text]


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
    ``__main__`` always run serially.

    Args:
        measurements: What calibration measured on real items.
        platform: The machine and interpreter.
        options: The call's resolved options.

    Returns:
        The decision, with every candidate and the reasons in plain words.
    """
    wl = workload(measurements, platform)
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
        names += (DASK,)  # last: the cluster never wins a tie against the machine at hand
    scored = [(c, e) for c, e in (candidate(n, wl, measurements, options) for n in names) if e is not None]
    candidates = [c for c, _ in scored]
    best_s = min(c.predicted_s for c in candidates)
    chosen = next(c for c in candidates if c.predicted_s <= best_s * _CLOSE_RATIO)
    reasons = [
        *_workload_reasons(wl, measurements),
        *_thread_reasons(wl, measurements, platform, candidates[1].workers),
    ]
    if options.forced:
        listed = [c for c in candidates if c.strategy == options.strategy]
        chosen = listed[0] if listed else candidate(options.strategy, wl, measurements, options)[0]
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
