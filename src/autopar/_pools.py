"""Pools reused across calls: created lazily, checked out by one call at a time, shut down at exit.

Data flow::

    _run.acquire(name, workers, spec) --> idle pool for that key, or a new one
           ... the call drives the pool ...
    _run.release(pool, healthy)       --> back to the idle list, or shut down

A pool serves one call at a time, so concurrent calls from several threads
each get their own pool (the second one is created on demand and kept idle
afterwards, up to ``_MAX_IDLE_PER_KEY``).  A pool that saw a crash, a timeout
or Ctrl-C is shut down instead of returned, so the next call starts fresh.
Start-up costs are recorded per start method for the cost model.

A child forked from this process starts with an empty registry and a fresh
lock: the parent's pools are the parent's (their threads do not exist in the
child, their processes are not its children), so the child builds its own on
first use and its exit hook has nothing of the parent's to shut down.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import sys
import threading
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from ._core._safety import PROCESS_METHODS
from ._core._sizing import MAX_PROCESSES_PER_CPU
from ._errors import SerializationError, WorkerCrashedError
from ._forksafe import at_fork_in_child, fork_safe_lock
from ._platform import cpu_count
from ._registry import get_strategy

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._model import PlatformFacts, PoolSpec
    from ._types import Pool

__all__ = [
    "MAX_IDLE_THREADS",
    "acquire",
    "add_starter",
    "grow",
    "idle_threads",
    "live_pools",
    "measured_startup_s",
    "release",
    "shutdown_all",
    "stays_healthy",
    "warm_pools",
]

_MAX_IDLE_PER_KEY = 2
#: Most threads that idle thread pools keep in all.  Each count of threads keys a pool of its own, and
#: work that waits runs up to 256 threads, one per item: a program mapping 150, then 170, then 200
#: such items would keep a pool of each.  Releasing a thread pool shuts the longest-idle ones down beyond this.
MAX_IDLE_THREADS = 256
_Key = tuple[str, int, "PoolSpec"]

_lock = fork_safe_lock()
_idle: defaultdict[_Key, list[Pool]] = defaultdict(list)
_busy: dict[int, tuple[_Key, Pool]] = {}
_released = itertools.count()
_released_at: dict[int, int] = {}  # id of an idle pool -> when it was released, in order
_startup_s: dict[str, float] = {}
#: Threads starting a pool off a call's thread (a first call's speculation); exit waits for them.
_starters: set[threading.Thread] = set()
#: Longest wait for such a thread at exit: pool starts are bounded by their own start-up limit.
_STARTER_JOIN_S = 60.0


def acquire(
    name: str, workers: int, spec: PoolSpec, facts: PlatformFacts, create: Callable[[], Pool] | None = None
) -> Pool:
    """A pool of strategy ``name`` with ``workers`` workers, reused when one is idle.

    ``create`` builds a new one instead of the strategy's ``create_pool`` (a pool that does not
    wait for its workers to boot, say).
    """
    key: _Key = (name, workers, spec)
    with _lock:
        idle = _idle.get(key)
        pool = idle.pop() if idle else None
        _released_at.pop(id(pool), None)
    if pool is None:
        pool = create() if create is not None else get_strategy(name).create_pool(workers, facts, spec)
        startup = getattr(pool, "startup_s", None)
        if startup is not None and workers:
            # Workers boot in parallel, one per CPU: the cost model wants one worker's boot time.
            waves = -(-workers // max(facts.cpu_count, 1))
            with _lock:
                _startup_s[name] = startup / waves
    with _lock:
        _busy[id(pool)] = (key, pool)
    return pool


def grow(pool: Pool, workers: int) -> None:
    """Start workers in a busy ``pool`` (one that can ``grow``) up to ``workers``; it is filed under that count."""
    pool.grow(workers)  # type: ignore[attr-defined]
    with _lock:
        (name, _, spec), _ = _busy[id(pool)]
        _busy[id(pool)] = ((name, workers, spec), pool)


def release(pool: Pool, *, healthy: bool) -> None:
    """Return a pool after a call; shut it down unless it is healthy and reusable."""
    threads: list[Pool] = []
    evicted: list[Pool] = []
    with _lock:
        key, _ = _busy.pop(id(pool), (None, None))
        keep = healthy and key is not None and pool.is_reusable() and len(_idle[key]) < _MAX_IDLE_PER_KEY
        if keep and key is not None:
            _idle[key].append(pool)
            _released_at[id(pool)] = next(_released)
            threads = _over_limit(lambda name: name == "threads", MAX_IDLE_THREADS, pool)
            evicted = _over_limit(lambda name: name in PROCESS_METHODS, _idle_processes_limit(), pool)
    for old in threads:
        old.retire()  # type: ignore[attr-defined]  # idle threads exit on their own: no call waits for them
    for old in evicted:
        old.shutdown()
    if not keep:
        pool.shutdown()


@functools.cache
def _idle_processes_limit() -> int:
    """Most workers idle process pools keep in all: ``MAX_PROCESSES_PER_CPU`` per CPU, the most one decision runs.

    Items that wait part of the time run on up to that many, and an idle pool shut at once would be forked
    again by the next call.
    """
    return MAX_PROCESSES_PER_CPU * cpu_count()


def _over_limit(kind: Callable[[str], bool], most: int, released: Pool) -> list[Pool]:
    """Idle pools of a ``kind`` of strategy taken out, longest idle first, until their workers number at most ``most``.

    The pool just ``released`` stays, even alone over the limit (a count the caller set): the next call may want it.
    """
    pools = [(key, p) for key, idle in _idle.items() if kind(key[0]) for p in idle if p is not released]
    pools.sort(key=lambda pair: _released_at.get(id(pair[1]), -1))
    total = sum(key[1] for key, idle in _idle.items() if kind(key[0]) for _ in idle)
    evicted = []
    for key, p in pools:
        if total <= most:
            break
        _idle[key].remove(p)
        _released_at.pop(id(p), None)
        total -= key[1]
        evicted.append(p)
    return evicted


def warm_pools() -> frozenset[tuple[str, int]]:
    """(strategy, workers) pairs with an idle pool ready to use."""
    with _lock:
        return frozenset((name, workers) for (name, workers, _), pools in _idle.items() if pools)


def idle_threads() -> int:
    """Threads of idle autopar thread pools: blocked on a queue, they hold no lock a fork could copy."""
    with _lock:
        return sum(getattr(p, "alive_threads", lambda: 0)() for pools in _idle.values() for p in pools)


def measured_startup_s() -> dict[str, float]:
    """Seconds per worker that starting a pool took, per strategy, as measured in this process."""
    with _lock:
        return dict(_startup_s)


def add_starter(thread: threading.Thread) -> None:
    """Have ``shutdown_all`` wait for ``thread``, which starts a pool it will release here."""
    with _lock:
        _starters.add(thread)
        for done in [t for t in _starters if not t.is_alive() and t is not thread]:
            _starters.discard(done)


def shutdown_all() -> None:
    """Shut down every idle pool (busy ones are shut down by their call), once pools being started are in."""
    with _lock:
        starters = list(_starters)
        _starters.clear()
    for thread in starters:
        if thread is not threading.current_thread() and thread.ident is not None:
            thread.join(_STARTER_JOIN_S)
    with _lock:
        pools = [p for pools in _idle.values() for p in pools]
        _idle.clear()
        _released_at.clear()
    for pool in pools:
        pool.shutdown()
    # The clients the dask strategy opened from an address go too (looked up: never import distributed here).
    dask = sys.modules.get("autopar._strategies._dask_cluster")
    if dask is not None:
        dask.close_owned()


def live_pools() -> list[Any]:
    """Every pool known here, idle or busy (for tests and ``autopar info``)."""
    with _lock:
        return [p for pools in _idle.values() for p in pools] + [p for _, p in _busy.values()]


atexit.register(shutdown_all)


def _forget_after_fork() -> None:
    """In a forked child: drop the parent's pools without touching them (they still serve the parent)."""
    _idle.clear()
    _busy.clear()
    _released_at.clear()
    _starters.clear()


at_fork_in_child(_forget_after_fork)


def stays_healthy(exc: BaseException) -> bool:
    """A user exception leaves a pool sound; a crash, a timeout or a pickling failure do not."""
    return isinstance(exc, Exception) and not isinstance(
        exc, (TimeoutError, OSError, WorkerCrashedError, SerializationError)
    )
