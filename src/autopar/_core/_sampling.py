"""Calibration's rules: how long the serial sample runs, and whether a thread probe can change the choice.

Calibration asks ``sample_done`` after each batch of its serial sample and
``probe_plan`` once the sample is in; it only measures.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import attrs

from ._costs import DEFAULT_WORKER_STARTUP_S
from ._safety import usable_process_methods
from ._sizing import MAX_THREADS
from ._workload import (
    ASSUMED_ITEMS_UNKNOWN,
    NO_MEMORY_LIMIT,
    is_clearly_waiting,
    is_computing,
    memory_workers,
    waits_part,
)

if TYPE_CHECKING:
    from .._model import Measurements, PlatformFacts, SerialSample

__all__ = [
    "CARRY_MAX_WORK_S",
    "MAX_SAMPLE_ITEMS",
    "CHEAP_PROFILER_SINCE",
    "MIN_C_SHARE_TO_PROBE",
    "PROFILE_EVENTS",
    "PROFILE_S",
    "MAX_WARMUP_ITEMS",
    "SERIAL_SAMPLE_S",
    "SERIAL_SAMPLE_SHARE",
    "ProbePlan",
    "next_batch_size",
    "probe_after_profile",
    "probe_plan",
    "profile_items",
    "profiles_sample",
    "sample_batch_size",
    "sample_done",
    "warmup_batch",
]

#: Seconds of serial work to sample before deciding (less when the whole run is small).
SERIAL_SAMPLE_S = 0.015
#: Share of the estimated whole run the serial sample may take.
SERIAL_SAMPLE_SHARE = 0.02
#: At most this many items in the serial sample (tiny items are timed in batches).
MAX_SAMPLE_ITEMS = 50_000
#: First items that import third-party modules are run but not timed, at most this many.  An import
#: (NumPy's, in a function that imports it on first use) is paid once; the cold bench's matmul item
#: took 150 ms with it against 15 ms after, and priced at 150 ms the rest went to processes.
MAX_WARMUP_ITEMS = 1
#: Seconds each probe thread should work for: longer on bigger runs, where a steadier reading pays.
PROBE_MIN_S = 0.015
PROBE_MAX_S = 0.04
#: Share of the estimated remaining serial work the probe may use.
PROBE_SHARE = 0.01
#: Skip the thread probe when the remaining work is estimated below this many seconds.
PROBE_MIN_WORK_S = 0.08
#: The rest of the run must be at least this many times the probe's own work.
PROBE_WORK_FACTOR = 10
#: Most threads the probe runs (more adds noise, not information, on a few cores).
PROBE_MAX_THREADS = 4
#: Seconds of items run under a profiler before a thread probe, to read how much of their CPU time is
#: spent in C functions (only C code may release the GIL): when that is a small share of the probe.
PROFILE_S = 0.002
#: The serial sample runs under the profiler for at most this many of its events (calls and returns,
#: about 0.3 us each), so call-heavy items pay at most about 0.3 ms for it in all.
PROFILE_EVENTS = 1000
#: From this Python on, a profile function hooks calls alone (PEP 669's instrumentation); before it,
#: every bytecode instruction pays for it, and the sample's meter also traces lines to leave a loop
#: that calls nothing (``_bytecode.TracedShare``): traced bytecode runs about 18 times slower, so the
#: call pays about ``PROFILE_S`` for it (taken out of the sample's timings), on the first batch alone.
CHEAP_PROFILER_SINCE = (3, 12)
#: A probe costs at least this many times the profiled items' time, or they are not profiled first.
PROFILE_SAVING_FACTOR = 5
#: A probe of items that wait part of their time runs one item on each of up to ``MAX_THREADS`` threads
#: and, where all the rest is at most this many seconds of serial work, carries on through it while
#: threads keep winning: the waits of its first round and of the threads' last items then overlap the
#: rest instead of leaving the CPUs idle between the probe and the run (40 items that sleep 20 ms and
#: hash in C for 10 ms took 1.22 times 32 threads' time after a 2-thread probe).
CARRY_MAX_WORK_S = 4.0
#: Items shorter than this are not carried one at a time (the usual probe, then chunks, serve them better).
CARRY_MIN_ITEM_S = 0.001
#: Below this share of their CPU time in C functions, items run Python bytecode, which holds the GIL:
#: threads cannot run them in parallel, and no probe is needed to say so.
MIN_C_SHARE_TO_PROBE = 0.1


@attrs.frozen
class ProbePlan:
    """Run ``threads`` batches of ``per_thread`` items at once to read how threads scale."""

    threads: int
    per_thread: int
    #: Go on feeding the threads, after the timed first round, through the rest of the input while they keep winning.
    carry: bool = False


def sample_done(sample: SerialSample, n_items: int | None) -> bool:
    """The serial sample is long enough: about ``SERIAL_SAMPLE_S`` of work, or 2% of a small run."""
    if sample.count >= MAX_SAMPLE_ITEMS:
        return True
    return sample.count > 0 and sample.wall_s >= _target_s(sample, n_items)


def _target_s(sample: SerialSample, n_items: int | None) -> float:
    """Seconds the serial sample should run: ``SERIAL_SAMPLE_S``, at most ~2% of the estimated whole."""
    if n_items is None:
        return SERIAL_SAMPLE_S
    return min(SERIAL_SAMPLE_S, SERIAL_SAMPLE_SHARE * sample.per_item_s * n_items)


def warmup_batch(sample: SerialSample, imported: int) -> bool:
    """A first batch that imported ``imported`` third-party modules is warm-up, kept out of the timings."""
    return imported > 0 and sample.count == 0 and sample.warmup_items < MAX_WARMUP_ITEMS


def next_batch_size(sample: SerialSample, last: int) -> int:
    """Items in the next batch the caller runs: doubling, so tiny items are timed in batches."""
    if sample.count == 0:
        return 1
    return min(last * 2, max(1, MAX_SAMPLE_ITEMS - sample.count))


def sample_batch_size(sample: SerialSample, last: int, n_items: int | None) -> int:
    """Items in the serial sample's next batch: ``next_batch_size``, but not past the sample's target.

    A last doubling would run up to twice the target: the batch stops at about the items the target still
    needs, at the per-item time so far.
    """
    size = next_batch_size(sample, last)
    if sample.count == 0 or sample.per_item_s <= 0:
        return size
    return min(size, max(1, math.ceil((_target_s(sample, n_items) - sample.wall_s) / sample.per_item_s)))


def probe_plan(
    sample: SerialSample,
    m: Measurements,
    facts: PlatformFacts,
    *,
    allowed: bool,
    carry: bool = False,
    gil_released: bool | None = None,
) -> ProbePlan | None:
    """Whether to run a thread probe after the serial sample, and how big; None to skip it.

    Probe only when the rest of the work dwarfs the probe, which may run at
    serial speed, and when its answer matters: computing work that a cheap
    process pool runs at full speed goes there whether or not threads would
    scale, and work that clearly waits goes to threads whatever the probe reads.

    Args:
        sample: The serial sample.
        m: What calibration measured so far (pickling, shippability, start-up costs, warm pools).
        facts: The machine.
        allowed: A probe may run at all (no initializer; input left).
        carry: The probe may carry on through the rest of the input (``carry_plan``).
        gil_released: What the first item's watcher saw of the GIL while the item computed (``gil_seen``):
            where it came promptly, threads may run computing items as fast as a pool, and are probed.
    """
    per_item = sample.per_item_s
    if not allowed or facts.cpu_count <= 1 or per_item <= 0:
        return None
    remaining = None if m.n_items is None else m.n_items - sample.count
    wide = carry_plan(sample, remaining, memory_workers(m, facts)) if carry else None
    if wide is not None:
        return wide  # it costs no more than the run itself while threads win
    threads = min(max(facts.cpu_count, 2), PROBE_MAX_THREADS)
    estimate_s = (ASSUMED_ITEMS_UNKNOWN if remaining is None else remaining) * per_item
    probe_s = min(max(PROBE_SHARE * estimate_s, PROBE_MIN_S), PROBE_MAX_S)
    per_thread = max(1, math.ceil(probe_s / per_item))
    probe_work_s = threads * per_thread * per_item
    # Where the GIL came promptly, the probe's threads run its items in parallel: it costs little more than them.
    least_s = PROBE_MIN_WORK_S if gil_released else max(PROBE_MIN_WORK_S, PROBE_WORK_FACTOR * probe_work_s)
    worth_it = remaining is None or remaining * per_item >= least_s
    if not worth_it or is_clearly_waiting(sample):
        return None
    if (
        is_computing(sample)
        and not gil_released
        and _cheapest_process_s(m, facts, estimate_s / per_item) <= probe_work_s * (threads - 1) / threads
    ):
        return None
    return ProbePlan(threads=threads, per_thread=per_thread)


def carry_plan(sample: SerialSample, remaining: int | None, most: int = NO_MEMORY_LIMIT) -> ProbePlan | None:
    """A wide probe that carries on through the rest, for items that wait part of their time; None for others.

    One item on each of up to ``MAX_THREADS`` threads (no more than the ``remaining``
    items), for items of at least ``CARRY_MIN_ITEM_S``, where the rest is known and at
    most ``CARRY_MAX_WORK_S`` of serial work, and no more threads than the memory holds items (``most``):
    their waits overlap at once, and the threads go on with the next items unless
    the first round's reading says another strategy wins.  Longer runs, whose
    probe phase is a small share, get the usual short probe.
    """
    if remaining is None or not waits_part(sample) or sample.per_item_s < CARRY_MIN_ITEM_S:
        return None
    if remaining * sample.per_item_s > CARRY_MAX_WORK_S:
        return None
    threads = min(remaining, MAX_THREADS, most)
    return ProbePlan(threads=threads, per_thread=1, carry=True) if threads >= 2 else None


def _cheapest_process_s(m: Measurements, facts: PlatformFacts, items: float) -> float:
    """Start-up plus pickling of the cheapest process pool auto may use here (infinite if none)."""
    methods = usable_process_methods(facts, shippable=m.shippable, picklable=m.data_picklable)
    if not methods:
        return math.inf
    method = methods[0]
    warm = any(name == method for name, _ in m.warm_pools)
    start = 0.0 if warm else m.worker_startup_s.get(method, DEFAULT_WORKER_STARTUP_S[method])
    return start + items * m.pickle_s


def profiles_sample(facts: PlatformFacts, *, allowed: bool) -> bool:
    """The serial sample's first items run under the profiler for ``PROFILE_S``: where a probe may follow, under a GIL."""
    return allowed and facts.gil_enabled and facts.cpu_count > 1


def profile_items(sample: SerialSample, plan: ProbePlan, facts: PlatformFacts) -> int:
    """Items to run under a profiler before ``plan``'s probe (0: none), about ``PROFILE_S`` of them.

    For a sample that read nothing (a profiler of the caller's was set, or its
    timed items ran no profiled code); only where the interpreter has a GIL and the probe would take far longer
    (``PROFILE_SAVING_FACTOR``): a probe of computing items keeps the other
    cores idle for its whole length.
    """
    per_item = sample.per_item_s
    most_s = plan.threads * plan.per_thread * per_item / PROFILE_SAVING_FACTOR
    if not facts.gil_enabled or per_item <= 0 or per_item > most_s:
        return 0
    return max(1, int(min(PROFILE_S, most_s) / per_item))


def probe_after_profile(plan: ProbePlan, c_share: float | None) -> ProbePlan | None:
    """``plan``, unless the profiled items ran Python bytecode nearly all their CPU time (then None)."""
    return None if c_share is not None and c_share < MIN_C_SHARE_TO_PROBE else plan
