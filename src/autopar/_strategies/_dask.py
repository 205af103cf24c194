"""The dask strategy: chunks run as tasks on a Dask cluster, driven by the calling thread.

Data flow::

    caller                                  Dask scheduler and workers
      submit: client.submit(run_chunk_remote, func, Items, start, ...) --> a task: run_chunk on a worker thread
      poll:   distributed.wait(FIRST_COMPLETED), gather the finished <-- ("ok", results) | ("err", exc, results)
              KilledWorker (Dask reran the task after worker deaths, then gave up) -> WorkerCrashedError
      cancel: client.cancel(futures): queued tasks are dropped; a running one ends on its worker, unheard

The cluster is, in order: the ``dask`` option (a ``distributed.Client`` or a
scheduler address), ``AUTOPAR_DASK_SCHEDULER`` (resolved into the option by
``_config``), or the program's default client.  A client autopar opens from an
address is autopar's: it is closed when the last pool using it shuts down, and
at exit; a client of the program is never closed here.

Tasks are never deduplicated (``pure=False``): two equal items are two calls.
Dask pickles with cloudpickle, so lambdas and closures ship; the workers need
autopar (and whatever the function imports) installed.

Warning: like a thread, a running task cannot be stopped.  On timeout, Ctrl-C
or an error the call's futures are cancelled, so the cluster forgets them and
runs nothing queued, but a task already running finishes on its worker.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import statistics
import threading
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import distributed

from .._errors import AutoparError, SerializationError, WorkerCrashedError
from .._model import ClusterFacts
from .._worker import ChunkFailed, ExceptionWithTraceback, capture, run_chunk

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .._model import PlatformFacts, PoolSpec
    from .._types import Outcome

__all__ = [
    "Cluster",
    "DaskPool",
    "DaskStrategy",
    "Items",
    "close_owned",
    "cluster_threads",
    "find_cluster",
    "probe_cluster",
    "require_cluster",
    "run_chunk_remote",
]

#: Seconds to wait for a scheduler to answer when autopar opens a client from an address.
_CONNECT_TIMEOUT_S = 10.0
#: Seconds an address that did not answer is not tried again: calls fail (or auto decides without it) at once.
_RETRY_AFTER_S = 30.0
#: Seconds a probe task may take before the cluster counts as unusable.
_PROBE_TIMEOUT_S = 30.0
#: Seconds to read the outcome of a task Dask reports done before calling its result lost.
_FETCH_TIMEOUT_S = 30.0
_PROBE_TRIPS = 3
_PROBE_BATCH = 20
#: Bytes sent to time transfers: random, so compression does not flatter the link.
_PROBE_BYTES = 1 << 20
#: Transfers never count as faster than this (loopback speed); noise would otherwise make them free.
_MIN_TRANSFER_S_PER_BYTE = 1e-9
#: Tasks in flight per cluster thread: enough to keep every thread busy, few enough to bound read-ahead.
_IN_FLIGHT_PER_THREAD = 2

_lock = threading.Lock()
#: Clients autopar opened, by scheduler address, and how many pools use each.
_owned: dict[str, Any] = {}
_users: Counter[str] = Counter()
_probed: dict[str, ClusterFacts] = {}
#: Addresses that did not answer: when, and the error to raise again until ``_RETRY_AFTER_S`` has passed.
_unreachable: dict[str, tuple[float, str]] = {}


class Cluster:
    """A client of a Dask cluster: what a pool is built from and reused for."""

    __slots__ = ("client", "key", "owned", "reference")

    def __init__(self, client: Any, *, owned: bool, reference: Any) -> None:
        self.client = client
        self.owned = owned
        #: What a ``PoolSpec`` carries: the address for a client autopar owns, else the client itself.
        self.reference = reference
        address = client.scheduler.address
        # Another client of the same scheduler (closed independently) is another pool.
        self.key = address if owned else f"{address} (client {id(client):x})"


def _stop_failed_client(exc: BaseException) -> None:
    """Stop the event-loop thread of a ``Client`` whose constructor raised.

    distributed marks such a client closed but leaves its loop thread running
    (``close()`` then returns at once), so every failed attempt would leak a thread.
    """
    tb = exc.__traceback__
    while tb is not None:
        client = tb.tb_frame.f_locals.get("self")
        if isinstance(client, distributed.Client):
            with contextlib.suppress(Exception):  # best effort: the thread is idle either way
                client._loop_runner.stop()  # type: ignore[no-untyped-call]
            return
        tb = tb.tb_next


def _connect(address: str) -> Cluster:
    """autopar's own client of the scheduler at ``address``, opened on first use.

    Raises:
        ConnectionError: no scheduler answered there within ``_CONNECT_TIMEOUT_S`` (now, or
            less than ``_RETRY_AFTER_S`` ago).
    """
    with _lock:
        client = _owned.get(address)
        failed = _unreachable.get(address)
    if failed is not None and time.monotonic() - failed[0] < _RETRY_AFTER_S:
        raise ConnectionError(failed[1])
    if client is None or client.status != "running":
        try:
            client = distributed.Client(address, set_as_default=False, timeout=_CONNECT_TIMEOUT_S)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as exc:
            _stop_failed_client(exc)
            msg = f"could not connect to the Dask scheduler at {address!r} within {_CONNECT_TIMEOUT_S:g} s: {exc}"
            with _lock:
                _unreachable[address] = (time.monotonic(), msg)
            raise ConnectionError(msg) from exc
        with _lock:
            current = _owned.get(address)
            if current is not None and current.status == "running":
                spare, client = client, current  # another thread connected first
            else:
                spare, _owned[address] = None, client
            _unreachable.pop(address, None)
        if spare is not None:
            spare.close()  # type: ignore[no-untyped-call]
    return Cluster(client, owned=True, reference=address)


def find_cluster(option: Any) -> Cluster | None:
    """The cluster named by the ``dask`` option, else the program's default client, else None.

    Raises:
        ConnectionError: the option is an address and no scheduler answers there.
    """
    if isinstance(option, str):
        return _connect(option)
    if option is not None:
        return Cluster(option, owned=False, reference=option)
    try:
        client = distributed.default_client()  # type: ignore[no-untyped-call]
    except ValueError:  # the program made no client
        return None
    return Cluster(client, owned=False, reference=client)


def require_cluster(option: Any) -> Cluster:
    """The cluster to run on, as ``find_cluster`` finds it.

    Raises:
        ValueError: no cluster is configured, with the three ways to configure one.
        ConnectionError: the option is an address and no scheduler answers there.
    """
    cluster = find_cluster(option)
    if cluster is None:
        msg = (
            "strategy='dask' needs a Dask cluster and none is configured; either pass dask= "
            "(a distributed.Client or a scheduler address such as 'tcp://127.0.0.1:8786') to the call "
            "or to autopar.config(), set AUTOPAR_DASK_SCHEDULER to the scheduler's address, "
            "or create a distributed.Client in the program before the call"
        )
        raise ValueError(msg)
    return cluster


def _hold(address: str) -> None:
    with _lock:
        _users[address] += 1


def _release(address: str) -> None:
    """One pool less uses autopar's client of ``address``: close it when none does."""
    with _lock:
        _users[address] -= 1
        if _users[address] > 0:
            return
        del _users[address]
        client = _owned.pop(address, None)
    if client is not None:
        client.close()


def close_owned(*, in_use: bool = False) -> None:
    """Close the clients autopar opened that no pool uses (``autopar.shutdown()``); all of them with ``in_use``.

    The program's own clients are never closed here.
    """
    with _lock:
        addresses = [a for a in _owned if in_use or _users[a] <= 0]
        clients = [_owned.pop(a) for a in addresses]
        for address in addresses:
            _users.pop(address, None)
    for client in clients:
        with contextlib.suppress(Exception):  # closing is best effort: the scheduler drops a vanished client anyway
            client.close(timeout=_CONNECT_TIMEOUT_S)


def _close_all_owned() -> None:
    close_owned(in_use=True)


atexit.register(_close_all_owned)


def cluster_threads(client: Any) -> int:
    """Worker threads over the whole cluster, now."""
    return sum(client.nthreads().values())


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


def _wait(client: Any, futures: list[Any], timeout: float | None, return_when: str = "ALL_COMPLETED") -> None:
    """``distributed.wait`` on ``client``'s futures (it looks for the program's default client otherwise).

    Raises:
        TimeoutError: ``timeout`` seconds passed first.
    """
    with client.as_current():
        try:
            distributed.wait(futures, timeout=timeout, return_when=return_when)  # type: ignore[no-untyped-call]
        except asyncio.TimeoutError as exc:  # not the builtin TimeoutError before Python 3.11
            raise TimeoutError(str(exc)) from exc


def _noop(value: Any) -> Any:
    return value


# -- probing ----------------------------------------------------------------------


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def probe_cluster(client: Any) -> ClusterFacts:
    """Measure what sending work to the cluster costs; cached per scheduler address for the process.

    A trivial task's round trip (median of 3), the time per task of a batch
    submitted at once, the time to send 1 MiB, and the workers' threads and processes.
    """
    address = client.scheduler.address
    with _lock:
        cached = _probed.get(address)
    if cached is not None:
        return cached
    nthreads = client.nthreads()
    total = sum(nthreads.values())
    if total < 1:  # no workers yet: nothing to measure, and not cached
        return ClusterFacts(
            address=address,
            round_trip_s=0.0,
            task_overhead_s=0.0,
            total_threads=0,
            workers=0,
            threads_per_worker=0,
            processes=False,
            transfer_s_per_byte=0.0,
        )

    def trip(value: Any) -> None:
        future = client.submit(_noop, value, pure=False)
        _wait(client, [future], _PROBE_TIMEOUT_S)
        future.result()

    round_trip = statistics.median(_timed(lambda: trip(None)) for _ in range(_PROBE_TRIPS))
    batch = _timed(
        lambda: _wait(client, [client.submit(_noop, i, pure=False) for i in range(_PROBE_BATCH)], _PROBE_TIMEOUT_S)
    )
    payload = os.urandom(_PROBE_BYTES)
    send = statistics.median(_timed(lambda: trip(payload)) for _ in range(_PROBE_TRIPS))
    try:
        pids = client.run(os.getpid)
    except Exception:  # a worker that cannot run it: assume a process per worker
        pids = {}
    # A worker running in this very process (an in-process LocalCluster) shares the caller's GIL.
    processes = not pids or (len(set(pids.values())) == len(pids) and os.getpid() not in pids.values())
    facts = ClusterFacts(
        address=address,
        round_trip_s=round_trip,
        task_overhead_s=max(batch - round_trip, 0.0) / _PROBE_BATCH,
        total_threads=total,
        workers=len(nthreads),
        threads_per_worker=max(1, round(total / len(nthreads))),
        processes=processes,
        transfer_s_per_byte=max((send - round_trip) / _PROBE_BYTES, _MIN_TRANSFER_S_PER_BYTE),
    )
    with _lock:
        _probed[address] = facts
    return facts


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
            _hold(self._owned_address)
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
            _wait(self._client, list(self._futures), timeout, "FIRST_COMPLETED")
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

    def is_reusable(self) -> bool:
        return self._broken is None and not self._closed and self._client.status == "running"

    def shutdown(self) -> None:
        if self._closed:
            return
        self.cancel()
        self._closed = True
        if self._owned_address is not None:
            _release(self._owned_address)


class DaskStrategy:
    """Run chunks as tasks on a Dask cluster."""

    name = "dask"
    uses_processes = True

    def create_pool(self, workers: int, facts: PlatformFacts, spec: PoolSpec) -> DaskPool:
        return DaskPool(workers, spec)
