"""Finding the Dask cluster, the clients autopar opens to it, and what sending it work costs.

The cluster is, in order: the ``dask`` option (a ``distributed.Client`` or a
scheduler address), ``AUTOPAR_DASK_SCHEDULER`` (resolved into the option by
``_config``), or the program's default client.  A client autopar opens from an
address is closed when the last pool using it shuts down, and at exit; a client
of the program never is.  An address that does not answer is not tried again for
``_RETRY_AFTER_S``.  ``probe_cluster`` measures the ``ClusterFacts`` the cost
model uses (round trip, task overhead, transfer speed, threads and processes),
once per scheduler address.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import statistics
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import distributed

from .._model import ClusterFacts

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "Cluster",
    "close_owned",
    "cluster_threads",
    "find_cluster",
    "forget_unreachable",
    "hold_owned",
    "probe_cluster",
    "release_owned",
    "require_cluster",
    "wait_futures",
]

#: Seconds to wait for a scheduler to answer when autopar opens a client from an address.
_CONNECT_TIMEOUT_S = 10.0
#: Seconds an address that did not answer is not tried again: calls fail (or auto decides without it) at once.
_RETRY_AFTER_S = 30.0
#: Seconds a probe task may take before the cluster counts as unusable.
_PROBE_TIMEOUT_S = 30.0
_PROBE_TRIPS = 3
_PROBE_BATCH = 20
#: Bytes sent to time transfers: random, so compression does not flatter the link.
_PROBE_BYTES = 1 << 20
#: Transfers never count as faster than this (loopback speed); noise would otherwise make them free.
_MIN_TRANSFER_S_PER_BYTE = 1e-9

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


def _connect(address: str, timeout_s: float) -> Cluster:
    """autopar's own client of the scheduler at ``address``, opened on first use.

    Raises:
        ConnectionError: no scheduler answered there within ``timeout_s`` (now, or
            less than ``_RETRY_AFTER_S`` ago).
    """
    with _lock:
        client = _owned.get(address)
        failed = _unreachable.get(address)
    if failed is not None and time.monotonic() - failed[0] < _RETRY_AFTER_S:
        raise ConnectionError(failed[1])
    if client is None or client.status != "running":
        try:
            client = distributed.Client(address, set_as_default=False, timeout=timeout_s)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as exc:
            _stop_failed_client(exc)
            msg = f"could not connect to the Dask scheduler at {address!r} within {timeout_s:g} s: {exc}"
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


def find_cluster(option: Any, *, connect_timeout_s: float = _CONNECT_TIMEOUT_S) -> Cluster | None:
    """The cluster named by the ``dask`` option, else the program's default client, else None.

    Args:
        option: a ``distributed.Client``, a scheduler address, or None.
        connect_timeout_s: how long a scheduler at an address may take to answer.

    Raises:
        ConnectionError: the option is an address and no scheduler answers there.
    """
    if isinstance(option, str):
        return _connect(option, connect_timeout_s)
    if option is not None:
        return Cluster(option, owned=False, reference=option)
    try:
        client = distributed.default_client()  # type: ignore[no-untyped-call]
    except ValueError:  # the program made no client
        return None
    return Cluster(client, owned=False, reference=client)


def forget_unreachable() -> None:
    """Forget which addresses did not answer, so the next call tries each of them again."""
    with _lock:
        _unreachable.clear()


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


def hold_owned(address: str) -> None:
    with _lock:
        _users[address] += 1


def release_owned(address: str) -> None:
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


def wait_futures(client: Any, futures: list[Any], timeout: float | None, return_when: str = "ALL_COMPLETED") -> None:
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


def _process_per_worker(client: Any) -> bool:
    """Every worker is a process of its own, apart from the caller (whose GIL they would share)."""
    try:
        pids = client.run(os.getpid)
    except Exception:  # a worker that cannot run it: assume a process per worker
        return True
    # A worker running in this very process (an in-process LocalCluster) shares the caller's GIL.
    return not pids or (len(set(pids.values())) == len(pids) and os.getpid() not in pids.values())


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
        zero = {"round_trip_s": 0.0, "task_overhead_s": 0.0, "transfer_s_per_byte": 0.0}
        return ClusterFacts(address=address, total_threads=0, workers=0, threads_per_worker=0, processes=False, **zero)

    def trip(value: Any) -> None:
        future = client.submit(_noop, value, pure=False)
        wait_futures(client, [future], _PROBE_TIMEOUT_S)
        future.result()

    round_trip = statistics.median(_timed(lambda: trip(None)) for _ in range(_PROBE_TRIPS))
    batch = _timed(
        lambda: wait_futures(
            client, [client.submit(_noop, i, pure=False) for i in range(_PROBE_BATCH)], _PROBE_TIMEOUT_S
        )
    )
    payload = os.urandom(_PROBE_BYTES)
    send = statistics.median(_timed(lambda: trip(payload)) for _ in range(_PROBE_TRIPS))
    processes = _process_per_worker(client)
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
