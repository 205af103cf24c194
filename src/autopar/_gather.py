"""The facts one call's plan starts from, each looked up once: platform, cached measurements, Dask cluster.

``_run`` gathers these before asking the core's ``plan_call`` what to do; the
lookups touch the OS, the pool registry and the network, so they live here,
outside the pure core.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

import attrs

from . import _pools
from ._platform import probe_platform

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._model import ClusterFacts, Measurements, Options, PlatformFacts

__all__ = [
    "call_facts",
    "cluster_facts",
    "cluster_threads",
    "find_cluster",
    "forced_cluster_threads",
    "refresh",
    "threads_now",
    "with_cluster",
]

logger = logging.getLogger("autopar")


def call_facts() -> PlatformFacts:
    """Platform facts for this call, not counting autopar's idle threads."""
    facts = probe_platform(memory=False)
    own = _pools.idle_threads()
    if own:
        facts = attrs.evolve(
            facts,
            python_threads=max(facts.python_threads - own, 1),
            native_threads=max(facts.native_threads - own, 1),
        )
    return facts


def threads_now(facts: PlatformFacts, m: Measurements) -> PlatformFacts:
    """``facts`` with today's thread counts when calibration's first item imported modules (they may start threads:
    OpenBLAS does at import); else ``facts``."""
    if not m.warmup_items:
        return facts
    now = call_facts()
    return attrs.evolve(facts, python_threads=now.python_threads, native_threads=now.native_threads)


def refresh(cached: Measurements, n_items: int | None) -> Measurements:
    """Cached measurements for a new call: its length, no sampled items, today's warm pools and start-up costs."""
    return attrs.evolve(
        cached,
        n_items=n_items,
        sampled=0,
        warm_pools=_pools.warm_pools(),
        worker_startup_s={**cached.worker_startup_s, **_pools.measured_startup_s()},
    )


def find_cluster(opts: Options) -> Any:
    """The Dask cluster this call may use, or None; ``distributed`` is imported only when one may be configured.

    A forced ``"dask"`` requires one; under auto an unreachable cluster is logged and left out.

    Raises:
        ValueError: ``"dask"`` is forced and no cluster is configured.
    """
    if opts.strategy == "dask":
        from ._strategies import _dask_cluster

        return _dask_cluster.require_cluster(opts.dask)
    if opts.strategy != "auto" or (opts.dask is None and "distributed" not in sys.modules):
        return None
    from ._strategies import _dask_cluster

    try:
        return _dask_cluster.find_cluster(opts.dask)
    except (OSError, TimeoutError) as exc:
        logger.warning("autopar: the Dask cluster is unreachable, deciding without it: %s", exc)
        return None


def cluster_threads(cluster: Any) -> int:
    """Worker threads of the whole cluster."""
    from ._strategies import _dask_cluster

    return _dask_cluster.cluster_threads(cluster.client)


def cluster_facts(cluster: Any) -> ClusterFacts | None:
    """What a probe of ``cluster`` measures (probed once per cluster), or None when it is unreachable."""
    from ._strategies import _dask_cluster

    try:
        return _dask_cluster.probe_cluster(cluster.client)
    except (OSError, TimeoutError) as exc:
        logger.warning("autopar: the Dask cluster is unreachable, deciding without it: %s", exc)
        return None


def forced_cluster_threads(opts: Options, cluster: Callable[[], Any]) -> int | None:
    """Threads of the cluster a forced ``"dask"`` with no worker count runs on; None for any other call.

    ``cluster`` looks the cluster up (it raises, naming the ways to configure one, when there is none).
    """
    if opts.strategy != "dask" or opts.workers is not None:
        return None
    return cluster_threads(cluster())


def with_cluster(cluster: Any, measurements: Measurements) -> Measurements:
    """The measurements with the facts of ``cluster`` (probed once per cluster), if there is one and it answers."""
    facts = None if cluster is None else cluster_facts(cluster)
    return measurements if facts is None else attrs.evolve(measurements, cluster=facts)
