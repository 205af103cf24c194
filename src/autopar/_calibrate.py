"""Calibration: measure a workload on its own first items, processing each item exactly once.

Two phases, both on real items whose results are kept for the output:

1. *Serial sample* (``_sample``): batches of doubling size run in the calling
   thread until ``sample_done`` says it is long enough.  A few items and
   results are pickled to price what a process pool would pay.
2. *Thread probe* (``_thread_probe``), when ``probe_plan`` says its reading
   could change the decision: a few further items run at once on short-lived
   threads.

Calibration only measures: when to stop and whether to probe are the core's
rules.  Every clock it reads is an argument (``Clocks``), so tests script time
instead of waiting for it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import attrs

from ._bytecode import c_cpu_share, sample_meter
from ._carry_watch import caller_cpu_clock, early_carrying, watch_first
from ._core._sampling import (
    PROFILE_EVENTS,
    PROFILE_S,
    ProbePlan,
    probe_after_profile,
    probe_plan,
    profile_items,
    profiles_sample,
)
from ._core._workload import probe_speedup
from ._model import Measurements
from ._os_readings import peak_bytes, thread_queued, thread_waits
from ._platform import with_memory
from ._sample import sample_serially
from ._serialize import shipping
from ._thread_carry import finish_carry, start_carry
from ._thread_probe import probe_threads
from ._transfer import PickleCost, measure_pickling

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._model import PlatformFacts, SerialSample, Shipping
    from ._thread_carry import Carrying
    from ._thread_probe import ProbeReading
    from ._types import EarlyWorkers

__all__ = ["Calibration", "Clocks", "calibrate", "sample_measurements"]

logger = logging.getLogger("autopar")

#: How many items and results to pickle to price process pools.
_PICKLE_SAMPLES = 3


@attrs.frozen
class Clocks:
    """The clocks calibration reads (wall, this thread's CPU and the process's, its waits, its time queued, peak memory)."""

    wall: Callable[[], float] = time.perf_counter
    thread: Callable[[], float] = time.thread_time
    process: Callable[[], float] = time.process_time
    waits: Callable[[], int | None] = thread_waits
    queued: Callable[[], float | None] = thread_queued
    peak: Callable[[], int] = peak_bytes
    sleep: Callable[[float], None] = time.sleep
    #: A reader of the calling thread's CPU clock that works from other threads (None: there is none).
    caller_cpu: Callable[[], Callable[[], float] | None] = caller_cpu_clock


@attrs.define
class Calibration:
    """What calibration measured, and where it left the input."""

    measurements: Measurements
    #: Results of the first ``len(results)`` items, in input order.
    results: list[Any]
    #: The input ran out during calibration: nothing is left to run.
    exhausted: bool
    #: The thread probe carried on through the rest of the input (``judge`` kept threads): it ran on threads.
    carried: bool = False
    #: (thread, position in ``results``, began, ended) of each item the probe's threads ran, on ``clocks.wall``.
    thread_spans: list[tuple[int, int, float, float]] = attrs.Factory(list)


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
    ship: Shipping | None = None,
    early_workers: EarlyWorkers | None = None,
    judge: Callable[[Measurements], bool] | None = None,
) -> Calibration:
    """Run the first items of ``source`` to measure the workload; keep their results, in order.

    Every item read runs exactly once; the rest of ``source`` is left unread.  ``thread_probe=False`` rules the probe out
    (its threads never ran the initializer).  ``check_deadline`` runs between batches and raises ``TimeoutError``.
    ``func``'s exception propagates unless ``capture_errors`` (then it takes the item's slot).  ``early_workers.sampled``
    gets the serial sample's measurements and C share (None: not profiled) and returns them updated (``early_pool``);
    their ``blocked`` runs once the first item blocks (``_carry_watch``).  A probe planned to carry on goes on through
    the input while ``judge`` (None: never) chooses threads: calibration ends with its first round."""
    clocks = clocks or Clocks()
    begun, results, head, peak = clocks.wall(), list[Any](), list[Any](), clocks.peak()
    stream = _recording(source, head)
    serially = (func, stream, n_items, capture_errors, results, check_deadline, clocks, facts)
    blocked = None if early_workers is None else early_workers.blocked
    sample, exhausted, share, early, gil = _sample_first(*serially, thread_probe, judge is not None, blocked)
    peak = max((clocks.peak() if early is None else early.peak) - peak, 0)  # before probe threads ran items
    cost = measure_pickling(func, head[:_PICKLE_SAMPLES], results[:_PICKLE_SAMPLES], clocks.wall)
    measured = attrs.evolve(sample_measurements(sample, cost, ship or shipping(func), n_items), warm_pools=warm_pools)
    measured = attrs.evolve(measured, initializer_s=initializer_s, shared_bytes=shared_bytes, sampled=len(results))
    measured = attrs.evolve(measured, worker_startup_s=dict(worker_startup_s or {}), peak_growth_bytes=peak)
    facts = with_memory(facts, measured)  # a wide probe runs no more items at once than the memory holds
    measured = early_workers.sampled(measured, share) if early_workers and not early else measured  # no fork by threads
    allowed = thread_probe and not exhausted
    plan = _plan(early, sample, measured, facts, allowed=allowed, carry=judge is not None, gil=gil)
    carried, spans = False, list[tuple[int, int, float, float]]()
    if plan is not None:
        probing = (sample, share, measured, facts, capture_errors, results, clocks, judge, check_deadline, spans)
        measured, exhausted = _probe(func, stream, plan, *probing, early)
        carried = exhausted and plan.carry and measured.thread_probe_workers == plan.threads
    ended = sorted(span[3] for span in spans)[measured.thread_probe_workers - 1] if carried else clocks.wall()
    count = measured.sampled if carried else len(results)  # carried on: the threads ran the call past the first round
    measured = attrs.evolve(measured, sampled=count, calibration_s=ended - begun)
    return Calibration(measured, results, exhausted, carried, spans)


def _sample_first(
    func: Callable[[Any], Any],
    stream: Iterator[Any],
    n_items: int | None,
    capture_errors: bool,
    results: list[Any],
    check_deadline: Callable[[], object],
    clocks: Clocks,
    facts: PlatformFacts,
    probe: bool,
    carry: bool,
    blocked: Callable[[], object] | None,
) -> tuple[SerialSample, bool, float | None, Carrying | None, bool | None]:
    """The serial sample, profiled where a ``probe`` may follow, its first item watched where a ``carry`` may
    (``blocked`` runs once that item blocks).

    Returns it, whether the input ran out, its share of CPU time in C (None: not profiled), the carry
    started during its first item (see ``_carry_watch``), and whether that item's computing released the GIL.
    """
    profiled = profiles_sample(facts, allowed=probe)
    meter = sample_meter(PROFILE_EVENTS, PROFILE_S, clocks.thread, clocks.wall) if profiled else None
    watch = watch_first(func, stream, n_items, capture_errors, clocks, facts, allowed=probe and carry, blocked=blocked)
    sample, exhausted = sample_serially(
        func, stream, n_items, clocks, capture_errors, results, check_deadline, meter, watch
    )
    gil = None if watch is None else watch.gil
    return sample, exhausted, None if meter is None else meter.share, early_carrying(watch, exhausted, clocks), gil


def _plan(
    early: Carrying | None,
    sample: SerialSample,
    m: Measurements,
    facts: PlatformFacts,
    *,
    allowed: bool,
    carry: bool,
    gil: bool | None,
) -> ProbePlan | None:
    """The thread probe to run: the carry started ``early``, if one did, else ``probe_plan``'s."""
    if early:
        return ProbePlan(early.threads, 1, carry=True)
    return probe_plan(sample, m, facts, allowed=allowed, carry=carry, gil_released=gil)


def _probe(
    func: Callable[[Any], Any],
    stream: Iterator[Any],
    plan: ProbePlan,
    sample: SerialSample,
    share: float | None,
    measured: Measurements,
    facts: PlatformFacts,
    capture_errors: bool,
    results: list[Any],
    clocks: Clocks,
    judge: Callable[[Measurements], bool] | None,
    check_deadline: Callable[[], object],
    spans: list[tuple[int, int, float, float]],
    early: Carrying | None = None,
) -> tuple[Measurements, bool]:
    """Probe threads unless the items ran Python bytecode (``share`` of their CPU in C, None: profile a few first).

    A probe that carries on (``plan.carry``) goes on through the input while ``judge`` keeps threads; ``early``:
    its threads, started during the first item.  Returns the reading, and whether the input ended.
    """
    profiled = 0 if share is not None or early is not None else profile_items(sample, plan, facts)
    if profiled:
        share, ended = c_cpu_share(func, stream, profiled, capture_errors, results, clocks.thread)
        if ended:
            return measured, ended
    if share is not None:
        logger.debug("autopar profile: the items spent a share of %.3f of their CPU in C", share)
    if early is None and probe_after_profile(plan, share) is None:
        return measured, False

    before = len(results)  # the items before the probe's

    def read(reading: ProbeReading) -> Measurements:
        speedup = probe_speedup(sample, reading.wall_s, reading.items, reading.cpu_s)
        done = before + reading.items
        return attrs.evolve(measured, thread_probe_workers=plan.threads, thread_speedup=speedup, sampled=done)

    if plan.carry and judge is not None:
        keep = lambda r: judge(read(r))  # noqa: E731
        early = early or start_carry(func, stream, plan.threads, len(results), capture_errors, clocks)
        if early is None:  # a thread would not start
            return measured, False
        carried, ended = finish_carry(early, results, clocks, keep, check_deadline, spans)
        return (measured if carried is None else read(carried)), ended
    reading = probe_threads(func, stream, plan, capture_errors, results, clocks)
    return (measured if reading is None else read(reading)), False


def _recording(source: Iterator[Any], head: list[Any]) -> Iterator[Any]:
    """``source``, keeping its first items in ``head`` to price their pickling."""
    for item in source:
        if len(head) < _PICKLE_SAMPLES:
            head.append(item)
        yield item


def sample_measurements(sample: SerialSample, cost: PickleCost, ship: Shipping, n_items: int | None) -> Measurements:
    """The per-item measurements of a serial sample and a pickling price."""
    count = max(sample.count, 1)
    return Measurements(
        n_items=n_items,
        item_wall_s=sample.wall_s / count,
        item_cpu_s=sample.cpu_s / count,
        item_process_cpu_s=sample.process_s / count,
        item_wall_max_s=sample.max_item_s,
        item_waits=None if sample.waits is None else sample.waits / count,
        item_queued_s=None if sample.queued_s is None else sample.queued_s / count,
        warmup_items=sample.warmup_items,
        warmup_s=max(sample.warmup_s - sample.warmup_items * sample.per_item_s, 0.0),
        func_pickle_bytes=cost.func_bytes,
        item_pickle_bytes=cost.item_bytes,
        result_pickle_bytes=cost.result_bytes,
        pickle_s=cost.seconds,
        shippable=ship.shippable,
        ship_reason=ship.problem or "",
        data_picklable=cost.picklable,
        interpreters_problem=ship.interpreters_problem,
    )
