"""What a call does first: the call plan, and whether its first items run in workers while it measures.

``plan_call`` turns the facts gathered for one call (platform, options, input
length, cached measurements, shippability, the Dask cluster's size) into one of
three plans, which ``_run`` obeys:

* a ``Run``: the decision is known without measuring (empty input, a nested
  call, a re-imported main module, ``item_timeout``, a forced strategy);
* ``Reuse``: decide on cached measurements of the same function;
* ``Calibrate``: run the first items in the caller to measure them, then decide.

``speculation_plan`` says whether a first call starts process workers before
it measures.  Calibration's own rules live in ``_sampling``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from .._errors import SerializationError
from .._model import Decision
from . import _reasons
from ._decide import forced_decision, serial_exit
from ._safety import INTERPRETERS, PROCESS_METHODS, require_available, require_interpreters, usable_process_methods
from ._sampling import MIN_C_SHARE_TO_PROBE
from ._sizing import waiting_processes
from ._workload import workload

if TYPE_CHECKING:
    from .._model import Measurements, Options, PlatformFacts, Shipping

__all__ = [
    "Calibrate",
    "CallPlan",
    "Reuse",
    "SPECULATIVE_MAX_ITEMS",
    "NATIVE_POOL_LIBRARIES",
    "SPECULATIVE_MAX_ITEM_BYTES",
    "Run",
    "Speculate",
    "plan_call",
    "serial_decision",
    "speculation_plan",
    "workers_fed",
]

#: Start methods cheap enough to start in the caller before a call knows whether it needs processes
#: (``start()`` costs about 2 ms per worker, and the children boot in a few ms).
SPECULATIVE_METHODS = ("fork",)
#: Other start methods (a forkserver, spawn) take 50-300 ms to boot their workers: a thread starts
#: them, and only if calibration still runs this long after it began, which short work never does.
BACKGROUND_AFTER_S = 0.02
#: Most items of a call whose first items fork workers at once.  Those workers run one item each
#: while the caller measures, a thousandth of a longer call at most, yet the forks, and the pages the
#: caller then copies on write, cost 5-10 ms: a call of 200,000 items of 1 us lost more than it took.
SPECULATIVE_MAX_ITEMS = 1000
#: Libraries that start native thread pools (BLAS, OpenMP) when imported.  A function that imports one
#: in its body, not loaded yet, gets no workers before measuring: the caller's first item imports it and
#: computes on every CPU, and an early worker importing and computing beside it slowed both (the cold
#: bench's NumPy matmul: 0.25 s against 0.21 s without, serially 0.21 s).
NATIVE_POOL_LIBRARIES = frozenset(
    {"numpy", "scipy", "pandas", "sklearn", "torch", "tensorflow", "jax", "numexpr", "numba", "cv2"}
)
#: Largest item (as it states its size) sent to a worker before the call knows what sending costs:
#: a bigger one could cost more to send than it saves, so it runs in the caller.
SPECULATIVE_MAX_ITEM_BYTES = 64 * 1024


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
class Speculate:
    """Start a ``method`` pool of ``workers`` before measuring, and hand ``items`` first items to it.

    The caller measures the items after them meanwhile, so no core idles during
    calibration; the pool serves the call if the decision is that pool.
    """

    method: str
    workers: int
    items: int
    #: The pool starts in a thread of the caller, ``after_s`` into calibration, and its workers get
    #: their items once booted (until then the caller can take them back); else at once, in the caller.
    in_background: bool = False
    after_s: float = 0.0


@attrs.frozen
class Calibrate:
    """Run the first items in the caller to measure them, then decide."""

    #: A thread probe may run: threads would be workers that never ran the call's initializer.
    thread_probe: bool
    #: Remember the measurements for the function's later calls.
    remember: bool
    #: Run the first items in process workers while the caller measures (None: the caller alone).
    speculate: Speculate | None = None
    #: A thread probe may carry on through the input (``_sampling.carry_plan``): the caller set no worker count
    #: (the probe would run more threads than asked) and no ``retries`` (items run by calibration never retry).
    carry: bool = False


CallPlan = Run | Reuse | Calibrate


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
    imports: frozenset[str] = frozenset(),
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
        imports: Modules the function imports on first use, not loaded yet.

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
    speculate = speculation_plan(facts, opts, n_items, shipping, imports)
    carry = opts.initializer is None and opts.workers is None and not opts.retries
    return Calibrate(thread_probe=opts.initializer is None, remember=True, speculate=speculate, carry=carry)


def speculation_plan(
    facts: PlatformFacts,
    opts: Options,
    n_items: int | None,
    shipping: Shipping,
    imports: frozenset[str] = frozenset(),
) -> Speculate | None:
    """Whether a first call starts process workers while it measures, and how many items they get.

    A pool of the most preferred usable start method, one worker per CPU.  ``fork``
    starts at once in the caller, and every CPU but the caller's gets one first
    item.  Slower methods start in the background once calibration has run
    ``BACKGROUND_AFTER_S``, so that short work, which will not need them, never
    pays for them; their workers boot while the caller computes, so each CPU gets
    an item.  A call with an initializer or a shared object, of fewer than two
    items, of more than ``SPECULATIVE_MAX_ITEMS`` where ``fork`` would start, or
    of a function that ``imports`` a ``NATIVE_POOL_LIBRARIES`` library on first
    use, measures in the caller alone.
    """
    if facts.cpu_count < 2 or opts.initializer is not None or opts.has_shared or opts.max_tasks_per_worker:
        return None
    if imports & NATIVE_POOL_LIBRARIES:
        return None
    if n_items is not None and n_items < 2:
        return None
    usable = usable_process_methods(facts, shippable=shipping.shippable, picklable=True)
    if not usable:
        return None
    workers = facts.cpu_count if opts.workers is None else opts.workers
    at_once = usable[0] in SPECULATIVE_METHODS
    if at_once and n_items is not None and n_items > SPECULATIVE_MAX_ITEMS:
        return None
    # Fork workers run beside the caller from the start: one per CPU but the caller's.  Slower ones
    # boot while the caller computes its first item, and then each takes one more: no worker idles.
    items = min(workers, facts.cpu_count) - (1 if at_once else 0)
    if n_items is not None:
        items = min(items, n_items - 1)
    if items <= 0:
        return None
    if at_once:
        return Speculate(method=usable[0], workers=workers, items=items)
    return Speculate(usable[0], workers, items, in_background=True, after_s=BACKGROUND_AFTER_S)


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


def workers_fed(plan: Speculate, m: Measurements, platform: PlatformFacts, c_share: float | None) -> int:
    """Workers the early pool grows to once the serial sample ``m`` is in, each fed an item; 0: it stays as it is.

    Items that block part of their time, and compute the rest, leave CPUs idle on one worker per
    CPU.  Where the sample's profile shows that their CPU time runs Python bytecode (``c_share``,
    the share in C functions, under ``MIN_C_SHARE_TO_PROBE``), threads cannot run that part in
    parallel and processes are the answer: the pool grows to the count that keeps the CPUs busy
    (``waiting_processes``, no more than the items left), which the cost model prices too, and a
    worker done with its item gets the next.  Without that evidence nothing changes: C code that
    releases the GIL after a wait (hashing, compression) runs best on threads, which the probe
    must then read undisturbed (an item fed beside it halved its reading).  Items that compute,
    or clearly wait, get none either.
    """
    if c_share is None or c_share >= MIN_C_SHARE_TO_PROBE:
        return 0
    wl = workload(m, platform)
    wanted = waiting_processes(wl)
    return max(plan.workers, min(wanted, wl.remaining)) if wanted > wl.cpu_count else 0
