"""Plans that need no calibration, and the facts a plan starts from.

``_run`` asks this module for the platform facts of a call, for the plan of a
forced strategy or of an ``item_timeout`` call (after checking that the
strategy can run here, warning once when it is unsafe), and for the measurements
of a cached function brought up to date with today's pools and Dask cluster.
The choice itself is ``_decide``'s, a pure function; this module holds the
checks and lookups around it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from typing import TYPE_CHECKING, Any

import attrs

from . import _pools
from ._decide import forced_decision
from ._errors import UnsafeStrategyWarning
from ._main_module import called_without_main_guard
from ._model import Decision, Measurements, Options, PlatformFacts, PoolSpec
from ._platform import probe_platform
from ._registry import get_strategy
from ._safety import PROCESS_METHODS, auto_process_methods, require_available
from ._serialize import has_cloudpickle, ship_problem, shipping_error
from ._strategies._process._handle import new_inherit_token

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._shared import SharedHandle

__all__ = [
    "call_facts",
    "dask_cluster",
    "forced_plan",
    "item_timeout_plan",
    "pool_spec",
    "refresh",
    "serial_plan",
    "warn_unsafe",
    "with_cluster",
]

logger = logging.getLogger("autopar")

_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def call_facts() -> PlatformFacts:
    """Platform facts for this call: the call site's main guard, not counting autopar's idle threads."""
    facts = probe_platform()
    own = _pools.idle_threads()
    unguarded = called_without_main_guard()
    if own or unguarded:
        facts = attrs.evolve(
            facts,
            python_threads=max(facts.python_threads - own, 1),
            native_threads=max(facts.native_threads - own, 1),
            main_unguarded=unguarded,
        )
    return facts


def warn_unsafe(method: str, reason: str) -> None:
    with _warned_lock:
        if (method, reason) in _warned:
            return
        _warned.add((method, reason))
    warnings.warn(f"strategy {method!r} is unsafe here: {reason}", UnsafeStrategyWarning, stacklevel=_outside_level())


def _outside_level() -> int:
    """The ``stacklevel`` of the first frame outside autopar: the warning points at the user's call."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame = sys._getframe(1)  # warn_unsafe
    level = 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame = frame.f_back
        level += 1
    return level


def serial_plan(reason: str) -> Decision:
    """Run in the caller, for ``reason``."""
    return Decision(strategy="serial", workers=1, chunksize=1, reasons=(reason,))


def forced_plan(func: Callable[..., Any], n_items: int | None, opts: Options, facts: PlatformFacts) -> Decision:
    """The plan for a strategy the caller forced, once it is known to be able to run here.

    Raises:
        ValueError: the strategy is unknown, the start method does not exist here,
            or ``"dask"`` is forced with no cluster configured.
        SerializationError: spawn or forkserver cannot receive ``func`` (and cloudpickle is not installed).
    """
    name = opts.strategy
    get_strategy(name)  # raises ValueError for an unknown name
    if name in PROCESS_METHODS:
        verdict = require_available(name, facts)
        if not verdict.safe:
            warn_unsafe(name, verdict.reason)
        if name != "fork":
            problem = ship_problem(func, main_importable=facts.main_importable)
            if problem is not None and not has_cloudpickle():
                raise shipping_error(func, problem, name)
    threads = None
    if name == "dask" and opts.workers is None:
        # Every thread of the cluster; with no cluster configured this raises, naming the ways to configure one.
        threads = _dask_threads(dask_cluster(opts, required=True))
    return forced_decision(facts, opts, n_items, cluster_threads=threads)


def item_timeout_plan(func: Callable[..., Any], n_items: int | None, opts: Options, facts: PlatformFacts) -> Decision:
    """``item_timeout`` needs a worker it can stop: a process; no item runs in the caller first.

    Raises:
        ValueError: the forced strategy cannot stop a running item, or no process strategy can run ``func`` here.
    """
    if opts.forced:
        if not get_strategy(opts.strategy).uses_processes:
            msg = (
                f"item_timeout={opts.item_timeout!r} needs a process strategy (fork, forkserver or spawn) "
                f"whose workers can be stopped; strategy {opts.strategy!r} cannot stop a running item"
            )
            raise ValueError(msg)
        return forced_plan(func, n_items, opts, facts)
    shippable = ship_problem(func, main_importable=facts.main_importable) is None or has_cloudpickle()
    methods = [m for m in auto_process_methods(facts) if m == "fork" or shippable]
    if not methods:
        msg = (
            f"item_timeout={opts.item_timeout!r} needs a process strategy, and none can run this function here; "
            "move the function to module level or install cloudpickle"
        )
        raise ValueError(msg)
    plan = forced_decision(facts, attrs.evolve(opts, strategy=methods[0]), n_items)
    reason = f"item_timeout needs workers that can be stopped: {methods[0]}, without calibrating in the caller"
    return attrs.evolve(plan, forced=False, reasons=(reason,))


def pool_spec(
    decision: Decision,
    opts: Options,
    facts: PlatformFacts,
    func: Callable[..., Any],
    call_func: Callable[[Any], Any],
    shared: SharedHandle | None,
) -> PoolSpec:
    """What the pool for ``decision`` must be built with: it keys the pool's reuse across calls.

    ``func`` is the caller's function; ``call_func`` what workers call (``func`` bound to
    the shared object, when there is one).
    """
    uses_processes = get_strategy(decision.strategy).uses_processes
    native = None
    if uses_processes and decision.limit_native_threads:
        native = _native_threads_override() or max(1, facts.cpu_count // max(decision.workers, 1))
    inherit = token = None
    if decision.strategy == "fork" and ship_problem(func, main_importable=True) is not None:
        # A lambda or closure: fork workers inherit it instead of receiving it pickled.
        inherit, token = call_func, new_inherit_token()
    shared_key = shared_payload = None
    if shared is not None and uses_processes:
        shared_key = shared.key
        if decision.strategy != "fork":
            shared_payload = shared.payload()
    cluster = dask_cluster(opts, required=True) if decision.strategy == "dask" else None
    return PoolSpec(
        initializer=opts.initializer,
        initargs=opts.initargs,
        initargs_key=_hashable_or_unique(opts.initargs),
        max_tasks_per_worker=opts.max_tasks_per_worker,
        native_threads=native,
        inherit=inherit,
        inherit_token=token,
        stream=uses_processes and (opts.errors == "return" or opts.retries > 0 or opts.item_timeout is not None),
        item_timeout=opts.item_timeout if uses_processes else None,
        shared_key=shared_key,
        shared_payload=shared_payload,
        cluster=cluster.reference if cluster is not None else None,
        cluster_key=cluster.key if cluster is not None else None,
    )


def _hashable_or_unique(value: Any) -> Any:
    """``value`` when it can key a pool; else a fresh object, so the pool serves this call only."""
    try:
        hash(value)
    except TypeError:
        return object()
    return value


def _native_threads_override() -> int | None:
    """``AUTOPAR_NATIVE_THREADS``: native threads per process worker, instead of CPUs // workers."""
    raw = os.environ.get("AUTOPAR_NATIVE_THREADS", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        msg = f"AUTOPAR_NATIVE_THREADS={raw!r} is not accepted; use a positive integer"
        raise ValueError(msg)
    return int(raw)


def dask_cluster(opts: Options, *, required: bool = False) -> Any:
    """The Dask cluster the call may use, or None; ``distributed`` is imported only when one may be configured.

    Raises:
        ValueError: ``required`` and no cluster is configured.
    """
    if not required and opts.dask is None and "distributed" not in sys.modules:
        return None
    from ._strategies import _dask

    return _dask.require_cluster(opts.dask) if required else _dask.find_cluster(opts.dask)


def _dask_threads(cluster: Any) -> int:
    from ._strategies import _dask

    return _dask.cluster_threads(cluster.client)


def with_cluster(measurements: Measurements, opts: Options) -> Measurements:
    """The measurements with the facts of the configured Dask cluster, probed once per cluster, if there is one."""
    try:
        cluster = dask_cluster(opts)
        if cluster is None:
            return measurements
        from ._strategies import _dask

        facts = _dask.probe_cluster(cluster.client)
    except (OSError, TimeoutError) as exc:
        logger.warning("autopar: the Dask cluster is unreachable, deciding without it: %s", exc)
        return measurements
    return attrs.evolve(measurements, cluster=facts)


def refresh(cached: Measurements, n_items: int | None) -> Measurements:
    """Cached measurements for a new call: its length, no sampled items, today's warm pools and start-up costs."""
    return attrs.evolve(
        cached,
        n_items=n_items,
        sampled=0,
        warm_pools=_pools.warm_pools(),
        worker_startup_s={**cached.worker_startup_s, **_pools.measured_startup_s()},
    )
