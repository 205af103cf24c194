"""How the pool of a decided call must be built: the ``PoolSpec`` that also keys the pool's reuse."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from ._config import native_threads_override
from ._core._identity import unwrap_function
from ._main_module import preload_in_forkserver
from ._model import PoolSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._model import Decision, Options, PlatformFacts, Shipping
    from ._shared import SharedHandle

__all__ = ["is_single_use", "pool_spec"]

#: Names a function that fork workers inherit: pools built around different functions stay apart
#: (``PoolSpec.inherit`` does not compare), and a token is never reused in a process.
_inherit_tokens = itertools.count(1)


def pool_spec(
    decision: Decision,
    opts: Options,
    facts: PlatformFacts,
    *,
    uses_processes: bool,
    ship: Shipping,
    call_func: Callable[[Any], Any],
    shared: SharedHandle | None,
    cluster: Any,
) -> PoolSpec:
    """What the pool for ``decision`` must be built with.

    ``call_func`` is what workers call (the caller's function, bound to the
    shared object when there is one); ``cluster`` the call's Dask cluster.
    """
    if decision.strategy == "forkserver":  # its server imports the function's module once for every worker
        module = getattr(unwrap_function(call_func), "__module__", None)
        preload_in_forkserver((module,) if isinstance(module, str) else ())
    native = None
    if uses_processes and decision.limit_native_threads:
        native = native_threads_override() or max(1, facts.cpu_count // max(decision.workers, 1))
    inherit = token = None
    if decision.strategy == "fork" and ship.fork_problem is not None:
        # A lambda or closure: fork workers inherit it instead of receiving it pickled.
        inherit, token = call_func, next(_inherit_tokens)
    shared_key = shared_payload = None
    if shared is not None and uses_processes:
        shared_key = shared.key
        if decision.strategy != "fork":
            shared_payload = shared.payload()
    dask = cluster if decision.strategy == "dask" else None
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
        cluster=dask.reference if dask is not None else None,
        cluster_key=dask.key if dask is not None else None,
    )


def is_single_use(spec: PoolSpec) -> bool:
    """A pool built around one call's shared object, inherited function or unhashable initargs serves that call only."""
    return spec.shared_key is not None or spec.inherit is not None or spec.initargs_key is not spec.initargs


def _hashable_or_unique(value: Any) -> Any:
    """``value`` when it can key a pool; else a fresh object, so the pool serves this call only."""
    try:
        hash(value)
    except TypeError:
        return object()
    return value
