"""Every reason text ``explain()`` and the ``autopar`` logger show, next to the facts it reports.

The decision functions hand over what they compared; these functions say it
in plain words.  No rule is decided here: a text only reports a number or a
verdict computed elsewhere in the core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._render import format_seconds
from ._costs import CLOSE_RATIO, DASK, DASK_FIRST_USE_S, MODELLED, thread_speedup, worker_startup_s
from ._safety import (
    DAEMONIC,
    INTERPRETERS,
    PROCESS_METHODS,
    auto_process_methods,
    interpreters_excluded,
    method_verdict,
    shm_text,
    usable_process_methods,
)
from ._sizing import MAX_PROCESSES_PER_CPU
from ._workload import ASSUMED_ITEMS_UNKNOWN, SKEW_RATIO, clean, probe_reading

if TYPE_CHECKING:
    from .._model import Candidate, Measurements, Options, PlatformFacts
    from ._costs import Estimate
    from ._workload import Workload

__all__ = [
    "EMPTY_INPUT",
    "EXHAUSTED",
    "IN_BOOTSTRAP",
    "NESTED",
    "no_threads",
    "BOOTSTRAP_WARNING",
    "candidate_note",
    "choice_reason",
    "dask_note",
    "cluster_reasons",
    "forced_reasons",
    "interpreters_reasons",
    "item_timeout_forced_message",
    "item_timeout_none_message",
    "item_timeout_reason",
    "shipping_message",
    "process_reasons",
    "start_reasons",
    "thread_reasons",
    "workload_reasons",
]

#: Probe speedup below which threads count as serialized.
THREAD_GAIN_MIN = 1.2

EMPTY_INPUT = "empty input"
EXHAUSTED = "the whole input ran during calibration"
NESTED = "nested call inside an autopar worker: runs serially"
IN_BOOTSTRAP = 'called while a child process imports __main__ (no `if __name__ == "__main__":` guard)'


def no_threads(why: str) -> str:
    """Why a call whose threads could not start runs serially (no pool of any kind would start either)."""
    return f"threads could not start, so the rest runs serially in the caller: {why}"


BOOTSTRAP_WARNING = (
    "autopar.map called while a worker process imports the main module: running serially. "
    'Put the call under `if __name__ == "__main__":` to run it in parallel.'
)
_SOURCES = {
    "env": "the AUTOPAR_STRATEGY environment variable",
    "call": "the call",
    "decorator": "the decorator",
    "config": "autopar.config()",
}


def item_timeout_reason(method: str) -> str:
    return f"item_timeout needs workers that can be stopped: {method}, without calibrating in the caller"


def item_timeout_forced_message(item_timeout: float | None, strategy: str) -> str:
    return (
        f"item_timeout={item_timeout!r} needs a process strategy (fork, forkserver or spawn) "
        f"whose workers can be stopped; strategy {strategy!r} cannot stop a running item"
    )


def item_timeout_none_message(item_timeout: float | None) -> str:
    return (
        f"item_timeout={item_timeout!r} needs a process strategy, and none can run this function here; "
        "pass the lock, socket or open file the function holds as an item, or create it in the worker"
    )


def shipping_message(name: str, problem: str, strategy: str) -> str:
    """The message of the ``SerializationError`` for a forced strategy that cannot send the function."""
    return (
        f"strategy {strategy!r} cannot send the function {name!r} to its worker processes: {problem}. "
        "Fix: create that object inside the function (or in an initializer) instead of capturing it, "
        "move the function to module level in an importable module, "
        "or use strategy='auto', 'fork' (where safe) or 'threads'."
    )


def start_reasons(platform: PlatformFacts, chosen: str) -> list[str]:
    """Why process workers cannot start here: a daemonic process, no usable ``/dev/shm``, or methods whose start failed in this call."""
    if platform.daemon:
        return [f"{DAEMONIC}: no process strategy"]
    if platform.shm_problem is not None:
        return [f"{shm_text(platform.shm_problem)}: no process strategy"]
    return [
        f"{method} workers could not start, so {chosen} runs instead: {why}"
        for method, why in platform.start_failures
        if method != INTERPRETERS  # a failed trial: interpreters_reasons says it
    ]


def process_reasons(m: Measurements, platform: PlatformFacts, chosen: str) -> list[str]:
    if not m.data_picklable:
        return ["items or results cannot be pickled: no process strategy"]
    using = f"; using {chosen}" if chosen in PROCESS_METHODS else ""
    reasons = start_reasons(platform, chosen)
    if platform.daemon or platform.shm_problem is not None:
        return reasons
    fork = method_verdict("fork", platform)
    if fork.available and not fork.safe:
        reasons.append(f"fork is unsafe: {fork.reason}{using}")
    elif fork.safe and "fork" not in auto_process_methods(platform):
        reasons.append(f"the interpreter's default start method is {platform.default_start_method}: fork is left out")
    shipped = [x for x in auto_process_methods(platform) if x != "fork"]
    if not m.shippable and shipped:
        usable = usable_process_methods(platform, shippable=m.shippable, picklable=m.data_picklable)
        inherit = "; fork workers inherit it" if "fork" in usable else ""
        why = m.ship_reason or "it cannot be pickled by reference"
        reasons.append(f"cannot ship the function to {'/'.join(shipped)}: {why}{inherit}")
    return reasons


def interpreters_reasons(m: Measurements, platform: PlatformFacts, options: Options, chosen: str) -> list[str]:
    """Why subinterpreters were left out, or how auto tries a pool of them; nothing where none exist."""
    if options.forced or not platform.subinterpreters or platform.python_version < (3, 14):
        return []
    excluded = interpreters_excluded(platform, m, options)
    if chosen == INTERPRETERS:
        return [
            "interpreters: the first item runs alone in a subinterpreter as a trial; "
            "if its modules do not load there, the next candidate runs the call"
        ]
    return [] if excluded is None else [f"interpreters not a candidate: {excluded}"]


def thread_reasons(wl: Workload, m: Measurements, platform: PlatformFacts, threads: int) -> list[str]:
    if wl.native:
        return [
            f"already uses ~{wl.cores_used:.1f} cores (native threads): threads would oversubscribe them, "
            "process workers limit native thread pools to one thread"
        ]
    reasons = []
    probe = probe_reading(m)
    if probe is not None:
        k, s = probe
        if s >= THREAD_GAIN_MIN:
            reasons.append(f"releases the GIL: {k} threads ran {s:.2f}x as fast as one")
        elif platform.gil_enabled:
            reasons.append(f"the GIL serializes this function: {k} threads ran {s:.2f}x as fast as one")
        else:
            reasons.append(f"threads do not help: {k} threads ran {s:.2f}x as fast as one")
    elif not platform.gil_enabled:
        reasons.append("free-threaded interpreter: threads run in parallel")
    elif not wl.blocks:
        reasons.append(
            f"computes under the GIL (CPU {wl.cpu_share:.0%} of wall, threads not probed): threads cannot run it in parallel"
        )
    if wl.waiting:
        reasons.append(f"waits more than it computes (CPU {wl.cpu_share:.0%} of wall): threads, up to {threads}")
    elif wl.blocks:
        reasons.append(
            f"waits part of each item (CPU {wl.cpu_share:.0%} of wall): more workers than CPUs overlap the waits"
        )
    return reasons


def workload_reasons(wl: Workload, m: Measurements) -> list[str]:
    reasons = []
    if m.n_items is None:
        reasons.append(f"input length unknown: assuming {ASSUMED_ITEMS_UNKNOWN:,} more items")
    if wl.remaining == 0:
        reasons.append(f"no items left after the {m.sampled} sampled: nothing to run")
    elif wl.remaining == 1:
        reasons.append("only 1 item left: nothing to split across workers")
    if wl.item_max_s > SKEW_RATIO * wl.item_s > 0:
        reasons.append(
            f"item times are skewed (slowest {format_seconds(wl.item_max_s)}, mean {format_seconds(wl.item_s)}): smaller chunks"
        )
    if wl.max_in_flight < min(wl.remaining, MAX_PROCESSES_PER_CPU * wl.cpu_count):  # the limit cut a count
        held = m.peak_growth_bytes / 2**20
        reasons.append(
            f"each item holds about {held:,.0f} MiB: at most {wl.max_in_flight} at once in the memory available"
        )
    return reasons


def choice_reason(chosen: Candidate, scored: list[tuple[Candidate, Estimate]]) -> str:
    serial = scored[0][0]
    fastest = min((c for c, _ in scored), key=lambda c: c.predicted_s)
    if chosen.strategy != "serial":
        text = (
            f"{chosen.strategy} with {chosen.workers} workers: predicted {format_seconds(chosen.predicted_s)} "
            f"against {format_seconds(serial.predicted_s)} serially"
        )
        if fastest is not chosen:
            text += f"; simpler than {fastest.strategy} ({format_seconds(fastest.predicted_s)}) and within 10% of it"
        return text
    gaining = [(c, e) for c, e in scored[1:] if e.compute_s * CLOSE_RATIO < serial.predicted_s]
    if not gaining:
        return "no strategy runs the work faster than serial"
    best, est = min(gaining, key=lambda ce: ce[0].predicted_s)
    cost = est.total_s - est.compute_s
    if serial.predicted_s <= cost:
        return (
            f"total work {format_seconds(serial.predicted_s)} is below the pool start-up, pickling and dispatch cost "
            f"of {best.strategy} ({format_seconds(cost)})"
        )
    return (
        f"no parallel strategy beats serial by more than 10%: the best, {best.strategy} with {best.workers} "
        f"workers, predicts {format_seconds(best.predicted_s)} against {format_seconds(serial.predicted_s)}, "
        f"its start-up, pickling and dispatch ({format_seconds(cost)}) outweighing the gain"
    )


def forced_reasons(name: str, m: Measurements | None, platform: PlatformFacts, options: Options) -> list[str]:
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


def cluster_reasons(
    m: Measurements, options: Options, chosen: Candidate, candidates: list[Candidate], excluded: str | None
) -> list[str]:
    c = m.cluster
    if c is None:
        return []
    mb_s = f"{1e-6 / c.transfer_s_per_byte:,.0f} MB/s" if c.transfer_s_per_byte > 0 else "unmeasured transfer"
    text = (
        f"Dask cluster {c.address}: {c.workers} worker(s) x {c.threads_per_worker} thread(s) "
        f"({'a process each' if c.processes else 'threads of one process'}), round trip {format_seconds(c.round_trip_s)}, "
        f"{format_seconds(c.task_overhead_s)} per task, {mb_s}"
    )
    dask = next((x for x in candidates if x.strategy == DASK), None)
    if excluded is not None:
        text += f"; not a candidate: {excluded}"
    elif dask is not None and dask is not chosen and not options.forced:
        text += (
            f"; predicts {format_seconds(dask.predicted_s)} against {format_seconds(chosen.predicted_s)} for {chosen.strategy}: "
            "the cluster runs a call only when more than 10% faster than every local strategy"
        )
    return [text]


def dask_note(parallelism: float, warm: bool) -> str:
    return (
        f"cluster runs {parallelism:.0f} at once; {'warm' if warm else f'first use {format_seconds(DASK_FIRST_USE_S)}'}"
    )


def candidate_note(strategy: str, wl: Workload, m: Measurements, workers: int) -> str:
    if strategy == "serial":
        return "runs in the caller"
    if strategy == "threads":
        return f"{thread_speedup(wl, workers):.2f}x on threads"
    if (strategy, workers) in m.warm_pools:
        return "warm pool"
    start = worker_startup_s(m, strategy) + clean(m.initializer_s)
    with_init = f" (initializer {format_seconds(m.initializer_s)} included)" if m.initializer_s > 0 else ""
    return f"start-up {format_seconds(start)} per worker{with_init}"
