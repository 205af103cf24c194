"""What a call does first, and what calibration runs: the call plan and the probe plan.

``plan_call`` turns the facts gathered for one call (platform, options, input
length, cached measurements, shippability, the Dask cluster's size) into one of
three plans, which ``_run`` obeys:

* a ``Run``: the decision is known without measuring (empty input, a nested
  call, a re-imported main module, ``item_timeout``, a forced strategy);
* ``Reuse``: decide on cached measurements of the same function;
* ``Calibrate``: run the first items in the caller to measure them, then decide.

Calibration asks ``sample_done`` when its serial sample is long enough and
``probe_plan`` whether a thread probe would change the decision.  Both are
pure: calibration only measures.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import attrs

from .._errors import SerializationError
from .._model import Decision
from . import _reasons
from ._costs import DEFAULT_WORKER_STARTUP_S
from ._decide import forced_decision, serial_exit
from ._safety import INTERPRETERS, PROCESS_METHODS, require_available, require_interpreters, usable_process_methods
from ._workload import ASSUMED_ITEMS_UNKNOWN, is_clearly_waiting, is_computing

if TYPE_CHECKING:
    from .._model import Measurements, Options, PlatformFacts, SerialSample, Shipping

__all__ = [
    "MAX_SAMPLE_ITEMS",
    "Calibrate",
    "CallPlan",
    "ProbePlan",
    "Reuse",
    "Run",
    "plan_call",
    "probe_plan",
    "sample_done",
    "serial_decision",
]

#: Seconds of serial work to sample before deciding (less when the whole run is small).
SERIAL_SAMPLE_S = 0.015
#: Share of the estimated whole run the serial sample may take.
SERIAL_SAMPLE_SHARE = 0.02
#: At most this many items in the serial sample (tiny items are timed in batches).
MAX_SAMPLE_ITEMS = 50_000
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


@attrs.frozen
class Run:
    """Run ``decision`` without measuring first."""

    decision: Decision
    #: The forced start method is unsafe here, for this reason (an ``UnsafeStrategyWarning``).
    unsafe: str | None = None
    #: A warning for the ``autopar`` logger.
    log_warning: str | None = None


@attrs.frozen
class Reuse:
    """Decide on these cached measurements of the same function (no calibration)."""

    measurements: Measurements


@attrs.frozen
class Calibrate:
    """Run the first items in the caller to measure them, then decide."""

    #: A thread probe may run: threads would be workers that never ran the call's initializer.
    thread_probe: bool
    #: Remember the measurements for the function's later calls.
    remember: bool


CallPlan = Run | Reuse | Calibrate


@attrs.frozen
class ProbePlan:
    """Run ``threads`` batches of ``per_thread`` items at once to read how threads scale."""

    threads: int
    per_thread: int


def serial_decision(reason: str) -> Decision:
    """Run in the caller, for ``reason``."""
    return Decision(strategy="serial", workers=1, chunksize=1, reasons=(reason,))


def plan_call(
    facts: PlatformFacts,
    opts: Options,
    n_items: int | None,
    *,
    shipping: Shipping,
    cached: Measurements | None = None,
    uses_processes: bool = False,
    cluster_threads: int | None = None,
) -> CallPlan:
    """What one call does first, from the facts gathered for it.

    Args:
        facts: The machine and interpreter at the call.
        opts: The call's resolved options.
        n_items: Items in the input, or None for a stream.
        shipping: Whether process workers can receive the function.
        cached: Measurements of an earlier call of the same function, or None (``explain`` passes None).
        uses_processes: The forced strategy runs process workers (for ``item_timeout``).
        cluster_threads: Threads of the Dask cluster, for a forced ``"dask"``.

    Raises:
        ValueError: a forced start method that does not exist here, or ``item_timeout``
            with no strategy that can stop a running item.
        SerializationError: a forced spawn or forkserver cannot receive the function.
    """
    if n_items == 0:
        return Run(serial_decision(_reasons.EMPTY_INPUT))
    exit_reason = serial_exit(facts)
    if exit_reason is not None:
        warning = _reasons.BOOTSTRAP_WARNING if facts.in_main_bootstrap else None
        return Run(serial_decision(exit_reason), log_warning=warning)
    if opts.item_timeout is not None:
        return _item_timeout_plan(facts, opts, n_items, shipping, uses_processes, cluster_threads)
    if opts.forced:
        return _forced_plan(facts, opts, n_items, shipping, cluster_threads)
    if cached is not None:
        return Reuse(cached)
    return Calibrate(thread_probe=opts.initializer is None, remember=True)


def _forced_plan(
    facts: PlatformFacts, opts: Options, n_items: int | None, shipping: Shipping, cluster_threads: int | None
) -> Run:
    name = opts.strategy
    unsafe = None
    if name in PROCESS_METHODS:
        verdict = require_available(name, facts)
        unsafe = None if verdict.safe else verdict.reason
        if name != "fork" and not shipping.shippable:
            raise _shipping_error(opts, shipping)
    elif name == INTERPRETERS:
        require_interpreters(facts)
    return Run(forced_decision(facts, opts, n_items, cluster_threads=cluster_threads), unsafe=unsafe)


def _shipping_error(opts: Options, shipping: Shipping) -> SerializationError:
    return SerializationError(_reasons.shipping_message(shipping.name, shipping.problem or "", opts.strategy))


def _item_timeout_plan(
    facts: PlatformFacts,
    opts: Options,
    n_items: int | None,
    shipping: Shipping,
    uses_processes: bool,
    cluster_threads: int | None,
) -> Run:
    """``item_timeout`` needs a worker it can stop: a process; no item runs in the caller first."""
    if opts.forced:
        if not uses_processes:
            raise ValueError(_reasons.item_timeout_forced_message(opts.item_timeout, opts.strategy))
        return _forced_plan(facts, opts, n_items, shipping, cluster_threads)
    methods = usable_process_methods(facts, shippable=shipping.shippable, picklable=True)
    if not methods:
        raise ValueError(_reasons.item_timeout_none_message(opts.item_timeout))
    plan = forced_decision(facts, attrs.evolve(opts, strategy=methods[0]), n_items)
    return Run(attrs.evolve(plan, forced=False, reasons=(_reasons.item_timeout_reason(methods[0]),)))


def sample_done(sample: SerialSample, n_items: int | None) -> bool:
    """The serial sample is long enough: about ``SERIAL_SAMPLE_S`` of work, or 2% of a small run."""
    if sample.count >= MAX_SAMPLE_ITEMS:
        return True
    target = SERIAL_SAMPLE_S
    if n_items is not None:
        # Sample at most ~2% of the estimated whole (but always one item).
        target = min(target, SERIAL_SAMPLE_SHARE * sample.per_item_s * n_items)
    return sample.count > 0 and sample.wall_s >= target


def next_batch_size(sample: SerialSample, last: int) -> int:
    """Items in the next serial batch: doubling, so tiny items are timed in batches."""
    if sample.count == 0:
        return 1
    return min(last * 2, max(1, MAX_SAMPLE_ITEMS - sample.count))


def probe_plan(sample: SerialSample, m: Measurements, facts: PlatformFacts, *, allowed: bool) -> ProbePlan | None:
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
    """
    per_item = sample.per_item_s
    if not allowed or facts.cpu_count <= 1 or per_item <= 0:
        return None
    threads = min(max(facts.cpu_count, 2), PROBE_MAX_THREADS)
    remaining = None if m.n_items is None else m.n_items - sample.count
    estimate_s = (ASSUMED_ITEMS_UNKNOWN if remaining is None else remaining) * per_item
    probe_s = min(max(PROBE_SHARE * estimate_s, PROBE_MIN_S), PROBE_MAX_S)
    per_thread = max(1, math.ceil(probe_s / per_item))
    probe_work_s = threads * per_thread * per_item
    worth_it = remaining is None or remaining * per_item >= max(PROBE_MIN_WORK_S, PROBE_WORK_FACTOR * probe_work_s)
    if not worth_it or is_clearly_waiting(sample):
        return None
    if (
        is_computing(sample)
        and _cheapest_process_s(m, facts, estimate_s / per_item) <= probe_work_s * (threads - 1) / threads
    ):
        return None
    return ProbePlan(threads=threads, per_thread=per_thread)


def _cheapest_process_s(m: Measurements, facts: PlatformFacts, items: float) -> float:
    """Start-up plus pickling of the cheapest process pool auto may use here (infinite if none)."""
    methods = usable_process_methods(facts, shippable=m.shippable, picklable=m.data_picklable)
    if not methods:
        return math.inf
    method = methods[0]
    warm = any(name == method for name, _ in m.warm_pools)
    start = 0.0 if warm else m.worker_startup_s.get(method, DEFAULT_WORKER_STARTUP_S[method])
    return start + items * m.pickle_s
