"""The dask strategy: chunks run as tasks on a Dask cluster, driven by the calling thread.

Data flow::

    caller                                  Dask scheduler and workers
      submit: client.submit(run_chunk_remote, func, Items, start, ...) --> a task: run_chunk on a worker thread
      poll:   distributed.wait(FIRST_COMPLETED), gather the finished <-- ("ok", results) | ("err", exc, results)
              KilledWorker (Dask reran the task after worker deaths, then gave up) -> WorkerCrashedError
      cancel: client.cancel(futures): queued tasks are dropped; a running one ends on its worker, unheard

Which cluster, the clients autopar opens to it and their closing, and the
probe of what it costs live in ``_dask_cluster``, which ``_gather`` asks.

Tasks are never deduplicated (``pure=False``): two equal items are two calls.
Dask pickles with cloudpickle, so lambdas and closures ship; the workers need
autopar (and whatever the function imports) installed.

Warning: like a thread, a running task cannot be stopped.  On timeout, Ctrl-C
or an error the call's futures are cancelled, so the cluster forgets them and
runs nothing queued, but a task already running finishes on its worker.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from typing import TYPE_CHECKING, Any

import distributed

from .._errors import AutoparError, ExceptionWithTraceback, SerializationError, WorkerCrashedError, capture
from .._worker import ChunkFailed, run_chunk
from ._dask_cluster import (
    Cluster,
    cluster_threads,
    hold_owned,
    release_owned,
    require_cluster,
    wait_futures,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .._model import PlatformFacts, PoolSpec
    from .._types import Outcome

__all__ = [
    "Cluster",
    "DaskPool",
    "DaskStrategy",
    "Items",
    "run_chunk_remote",
]

#: Seconds to read the outcome of a task Dask reports done before calling its result lost.
_FETCH_TIMEOUT_S = 30.0
#: Tasks in flight per cluster thread: enough to keep every thread busy, few enough to bound read-ahead.
_IN_FLIGHT_PER_THREAD = 2


# -- the worker side ------------------------------------------------------------


class Items:
    """A chunk's items, opaque to Dask: it would read a tuple that starts with a callable as a task."""

    __slots__ = ("items",)

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = items

    def __reduce__(self) -> tuple[Any, ...]:
        return Items, (self.items,)


_init_lock = threading.Lock()
#: Per worker process: initializers already run, by pool token, with the error each raised.
_initialized: dict[str, ExceptionWithTraceback | None] = {}


def _initialize(init: tuple[str, Callable[..., Any], tuple[Any, ...]]) -> ExceptionWithTraceback | None:
    token, initializer, initargs = init
    with _init_lock:
        if token not in _initialized:
            try:
                initializer(*initargs)
            except Exception as exc:
                _initialized[token] = capture(exc, check_pickle=True)
            else:
                _initialized[token] = None
        return _initialized[token]


def run_chunk_remote(
    func: Callable[[Any], Any],
    items: Items,
    start: int,
    capture_errors: bool,
    init: tuple[str, Callable[..., Any], tuple[Any, ...]] | None = None,
) -> tuple[Any, ...]:
    """Run one chunk on a Dask worker; a user exception comes back as a value, with its traceback text."""
    if init is not None:
        error = _initialize(init)
        if error is not None:
            return ("init", error)
    try:
        results = run_chunk(func, items.items, start, capture_errors=capture_errors, in_process=True)
    except ChunkFailed as failed:
        return ("err", failed.wrapped, failed.results)
    return ("ok", results)


# -- the pool ---------------------------------------------------------------------


class DaskPool:
    """Chunks as Dask futures: at most two per cluster thread in flight."""

    def __init__(self, workers: int, spec: PoolSpec) -> None:
        if spec.item_timeout is not None:
            msg = f"item_timeout={spec.item_timeout!r} is not supported by the dask strategy: a running Dask task cannot be stopped"
            raise ValueError(msg)
        if spec.shared_key is not None:
            msg = "shared= is not supported by the dask strategy; capture the object in the function (functools.partial) instead"
            raise ValueError(msg)
        self.workers = workers
        cluster = require_cluster(spec.cluster)
        self._client = cluster.client
        self._owned_address = cluster.reference if cluster.owned else None
        if self._owned_address is not None:
            hold_owned(self._owned_address)
        self._limit = max(_IN_FLIGHT_PER_THREAD * cluster_threads(self._client), 2)
        self._init = None if spec.initializer is None else (uuid.uuid4().hex, spec.initializer, spec.initargs)
        #: future -> (task id, input position of its first item, item count)
        self._futures: dict[Any, tuple[int, int, int]] = {}
        self._broken: BaseException | None = None
        self._closed = False

    def capacity(self) -> int:
        if self._broken is not None:
            return 0
        return max(self._limit - len(self._futures), 0)

    def submit(
        self, task_id: int, func: Callable[[Any], Any], items: Sequence[Any], start: int, capture_errors: bool
    ) -> None:
        try:
            future = self._client.submit(
                run_chunk_remote, func, Items(list(items)), start, capture_errors, self._init, pure=False
            )
        except (TypeError, AttributeError, ValueError) as exc:  # what pickling raises
            last = start + len(items) - 1
            msg = f"the function or an item of input positions {start}..{last} could not be pickled to send to the Dask cluster: {exc!r}"
            raise SerializationError(msg) from exc
        self._futures[future] = (task_id, start, len(items))

    def poll(self, timeout: float | None) -> list[Outcome]:
        if not self._futures:
            return []
        try:
            wait_futures(self._client, list(self._futures), timeout, "FIRST_COMPLETED")
        except TimeoutError:
            return []
        done = [f for f in self._futures if f.done()]
        finished = [f for f in done if f.status == "finished"]
        try:
            # One request for every finished result: fetching them one by one costs a round trip each.
            values = self._client.gather(finished) if finished else []
        except Exception:  # a result lost since: each future is read on its own below
            finished, values = [], []
        outcomes = [self._outcome(self._futures.pop(f)[0], value) for f, value in zip(finished, values, strict=True)]
        outcomes += [self._failed(f) for f in done if f in self._futures]
        return outcomes

    def _outcome(self, task_id: int, value: tuple[Any, ...]) -> Outcome:
        kind = value[0]
        if kind == "ok":
            return (task_id, value[1], None)
        if kind == "err":
            # The wrapper unpickled as the rebuilt exception, with its traceback text as __cause__.
            return (task_id, value[2], value[1])
        # The initializer raised: fail the call with its exception, and retire the pool.
        self._broken = value[1]
        return (task_id, None, self._broken)

    def _failed(self, future: Any) -> Outcome:
        task_id, start, size = self._futures.pop(future)
        where = f"item {start}" if size == 1 else f"items {start}..{start + size - 1}"
        if future.status == "cancelled":
            msg = f"the Dask task running {where} was cancelled on the cluster"
            return (task_id, None, AutoparError(msg))
        try:
            value = future.result(timeout=_FETCH_TIMEOUT_S)
        except distributed.KilledWorker as exc:
            msg = (
                f"Dask workers died running {where} (starting at item {start}), and Dask gave up after "
                f"rerunning the task elsewhere: {exc}; likely a crash (segmentation fault, os._exit) or the "
                "out-of-memory killer; see the workers' logs"
            )
            return (task_id, None, WorkerCrashedError(msg, start if size == 1 else None))
        except Exception as exc:  # raised outside the chunk's items (unpickling on the worker), or lost on the way
            return (task_id, None, exc)
        return self._outcome(task_id, value)

    def cancel(self) -> None:
        futures = list(self._futures)
        self._futures.clear()
        if futures:
            # Cleanup after a timeout or an error: a closed client must not hide the exception that brought us here.
            with contextlib.suppress(Exception):
                self._client.cancel(futures)

    def record(self, recorder: Any) -> None:
        """Dask's own dashboard shows its task stream; a report holds the decision and the wall time."""

    def is_reusable(self) -> bool:
        return self._broken is None and not self._closed and self._client.status == "running"

    def shutdown(self) -> None:
        if self._closed:
            return
        self.cancel()
        self._closed = True
        if self._owned_address is not None:
            release_owned(self._owned_address)


class DaskStrategy:
    """Run chunks as tasks on a Dask cluster."""

    name = "dask"
    uses_processes = True

    def create_pool(self, workers: int, facts: PlatformFacts, spec: PoolSpec) -> DaskPool:
        return DaskPool(workers, spec)
