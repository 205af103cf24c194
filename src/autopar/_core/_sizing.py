"""Worker counts and chunk sizes: every sizing rule and its numbers, defined once.

The cost model sizes its candidates here, a forced strategy gets its default
workers and chunk size here, dispatch shrinks its tail chunks and adapts the
chunk size of a stream here, and ``Executor`` sizes its pools here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ._workload import CLEARLY_WAITING_CPU_SHARE, MIN_CPU_SHARE

if TYPE_CHECKING:
    from .._model import Options, PlatformFacts
    from ._workload import Workload

__all__ = [
    "CHUNKS_PER_WORKER",
    "MAX_ADAPTIVE_CHUNK",
    "MAX_THREADS",
    "MAX_WAITING_THREADS",
    "PLANNED_CHUNK_S",
    "QUEUE_HEADROOM",
    "SERIAL_BATCH_S",
    "TARGET_CHUNK_S",
    "WINDOW_PER_WORKER",
    "adapted_chunksize",
    "ceil_div",
    "chunksize_for",
    "default_workers",
    "forced_chunksize",
    "guided_size",
    "serial_batch_size",
    "waiting_processes",
    "worker_options",
    "workers_for",
]

#: Most threads for waiting work, and for a forced thread pool by default:
#: as ``concurrent.futures.ThreadPoolExecutor`` (``min(32, cpu_count + 4)``).
MAX_THREADS = 32
#: Most threads for work that clearly waits (``CLEARLY_WAITING_CPU_SHARE``): a sleeping thread costs a
#: stack and about 0.1 ms to start, and 200 waits of 20 ms take 7 rounds on 32 threads, 4 on 64 and one
#: on 200 (measured on 2 CPUs: 71-95 ms for the call on 198 threads, 124 ms on 64, 142 ms on 32).
#: The cost model picks the count; ``workers=`` caps it for a service that takes fewer connections.
MAX_WAITING_THREADS = 256
#: Most process workers per CPU for waiting work: each one overlaps its waits with the others'
#: computing, but every one is a whole interpreter in memory.  Measured on 2 CPUs, 40 items that
#: sleep 25 ms, then count down for 25 ms: 8 fork workers 0.544 s, 12 0.533 s, 16 0.518 s, 24 0.525 s.
MAX_PROCESSES_PER_CPU = 8
#: Most items per CPU for which computing items get a process worker each (``_round_fillers``).
FILLER_ITEMS_PER_CPU = 4
#: Process workers for work that mixes waiting and computing are also priced at this many times
#: ``cpu_count / cpu_share``: a pool's items wait together, then compute together, so at exactly
#: that count the cores still sit idle while they all wait (the cost model prices how much, ``_rounds.lockstep``).
QUEUE_HEADROOM = 2.0
#: Chunks per worker when items are even: enough to balance the last round, few enough to
#: keep dispatch cheap.  A forced strategy with a known input length uses the same count.
CHUNKS_PER_WORKER = 4
#: Chunks per worker when item times are skewed: a slow item then delays less work behind it.
SKEWED_CHUNKS_PER_WORKER = 16
#: Chunks in flight or waiting to be consumed, per worker: one balanced round read ahead.
WINDOW_PER_WORKER = CHUNKS_PER_WORKER
#: Seconds of work per chunk aimed at when items are many (joblib aims at tens to hundreds of
#: milliseconds; shorter chunks keep the tail short on a few cores).
TARGET_CHUNK_S = 0.02
#: Seconds of work per chunk of a process pool whose items were measured (``chunksize_for``), at most a
#: ``CHUNKS_PER_WORKER``-th of each worker's share.  A process worker holds one chunk at a time, and
#: waits a round trip through the caller for the next: 2,000 items of 1 ms on 2 fork workers took
#: 0.80 s in chunks of 20 ms, 0.78 s in chunks of 100 ms (paired 0.96x, 9 cold calls each); 40,000
#: items of 35 us 0.97x.  Threads and subinterpreters, whose round trip stays in the process, and adaptive
#: chunks (a stream) keep ``TARGET_CHUNK_S``: results come sooner.
PLANNED_CHUNK_S = 0.1
#: Largest share of a chunk's time its dispatch overhead may take.
CHUNK_OVERHEAD_SHARE = 0.05
#: Largest chunk an adaptive chunk size (a stream of unknown length) grows to.  The caller's serial batches
#: keep it too: their lists then stay in the CPU's cache (200,000 items of 35 ns ran in 9.3-9.7 ms in batches
#: of 8,192 items, 10.9 ms in batches of 10 ms of work).
MAX_ADAPTIVE_CHUNK = 8192
#: Growth of an adaptive chunk size per observed chunk, at most.
ADAPTIVE_GROWTH = 4
#: Near the end of an input of known length, chunks shrink so that about this many per worker remain.
TAIL_CHUNKS_PER_WORKER = 2
#: Seconds of work per batch when running serially in the caller (the deadline is checked between batches).
SERIAL_BATCH_S = 0.01


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for integers, with ``b`` at least 1."""
    return -(-a // max(b, 1))


def default_workers(strategy: str, platform: PlatformFacts) -> int:
    """Workers of a forced strategy when the caller named no count: one per CPU, more threads for waiting."""
    if strategy == "serial":
        return 1
    if strategy == "threads":
        # Forced threads are often used for waiting work, which needs more threads than CPUs.
        return min(MAX_THREADS, platform.cpu_count + 4)
    return max(platform.cpu_count, 1)


def workers_for(strategy: str, wl: Workload, options: Options) -> int:
    """Workers of a candidate: the caller's count, else one per CPU (more threads for waiting work)."""
    if strategy == "serial":
        return 1
    if options.workers is not None:
        wanted = max(options.workers, 1)
    elif strategy == "threads" and wl.waiting:
        # Waiting threads need little CPU: about cpu_count / cpu_share of them keep every CPU busy.
        by_share = int(wl.cpu_count / max(wl.cpu_share, MIN_CPU_SHARE))
        wanted = max(wl.cpu_count, min(by_share, _most_threads(wl)))
    else:
        wanted = wl.cpu_count
    return min(wanted, max(wl.remaining, 1))


def _most_threads(wl: Workload) -> int:
    """Most threads worth pricing: more for work that clearly waits, whose threads mostly sleep."""
    return MAX_WAITING_THREADS if wl.cpu_share <= CLEARLY_WAITING_CPU_SHARE else MAX_THREADS


def worker_options(strategy: str, wl: Workload, options: Options) -> tuple[int, ...]:
    """The worker counts the cost model prices for a strategy: the caller's count, else a few candidates.

    Computing work needs one worker per CPU.  Work that waits overlaps its waits
    with other items' computing: threads up to about ``cpu_count / cpu_share``
    and up to ``MAX_THREADS`` (the waits overlap, the computing under the GIL
    does not).  Work that mixes waiting and computing also gets process workers
    above the CPU count, at ``cpu_count / cpu_share``, ``QUEUE_HEADROOM``
    times that and ``MAX_PROCESSES_PER_CPU`` per CPU (the most), so the waits of some
    overlap the computing of others on every core; work that clearly waits
    stays on threads, whose near-total overlap needs no more processes.
    A few computing items also get process workers above the CPU count
    (``_round_fillers``).  No count above the CPUs runs more items at once than
    the available memory holds (``Workload.max_in_flight``).
    """
    base = workers_for(strategy, wl, options)
    if options.workers is not None or strategy == "serial":
        return (base,)
    return tuple(sorted({min(count, wl.max_in_flight) for count in _counts(strategy, wl, base)}))


def _counts(strategy: str, wl: Workload, base: int) -> tuple[int, ...]:
    """``worker_options``' candidates before the memory limit."""
    if not wl.blocks:
        return (base, *_round_fillers(strategy, wl, base))
    if strategy == "threads":
        extra: tuple[int, ...] = (MAX_THREADS, _most_threads(wl))
    elif wl.cpu_share > CLEARLY_WAITING_CPU_SHARE:
        by_share = wl.cpu_count / max(wl.cpu_share, MIN_CPU_SHARE)
        cap = MAX_PROCESSES_PER_CPU * wl.cpu_count
        extra = (waiting_processes(wl), min(math.ceil(by_share * QUEUE_HEADROOM), cap), cap)
    else:
        return (base,)
    return tuple(sorted({base, *(min(max(count, base), max(wl.remaining, 1)) for count in extra)}))


def waiting_processes(wl: Workload) -> int:
    """Process workers that keep every CPU busy on items that block part of their time.

    About ``cpu_count / cpu_share``, at most ``MAX_PROCESSES_PER_CPU`` per CPU; one per CPU for
    items that do not block, and for items that clearly wait, which stay on threads.
    """
    if not wl.blocks or wl.native or wl.cpu_share <= CLEARLY_WAITING_CPU_SHARE:
        return wl.cpu_count
    by_share = int(wl.cpu_count / max(wl.cpu_share, MIN_CPU_SHARE))
    return max(wl.cpu_count, min(by_share, MAX_PROCESSES_PER_CPU * wl.cpu_count, wl.max_in_flight))


def _round_fillers(strategy: str, wl: Workload, base: int) -> tuple[int, ...]:
    """Process worker counts above ``base`` for a few computing items, up to one per item.

    5 equal items on 2 workers take 3 rounds, the last with one core idle; on
    3 workers sharing 2 cores they take 2.5, and on 5 the cores' unequal speeds
    leave none idle at the end (``_costs`` prices the rounds).  Only for calls of at
    most ``FILLER_ITEMS_PER_CPU`` items per CPU, where a round is a large share of
    the call; threads never share cores usefully for such work.
    """
    most = min(wl.remaining, FILLER_ITEMS_PER_CPU * wl.cpu_count)
    if strategy == "threads" or wl.remaining > most:
        return ()
    return tuple(range(base + 1, most + 1))


def chunksize_for(
    wl: Workload, workers: int, item_s: float, overhead_s: float, target_s: float = TARGET_CHUNK_S
) -> int:
    """Chunks long enough to hide dispatch, about ``target_s`` of work, yet several per worker for balance.

    Skewed items get more, shorter chunks: a slow item then delays less work behind it.
    """
    per_worker = SKEWED_CHUNKS_PER_WORKER if wl.skewed else CHUNKS_PER_WORKER
    balance = max(wl.remaining // (workers * per_worker), 1)
    if item_s <= 0:
        return balance
    target_s = target_s / wl.skew if wl.skewed else target_s
    wanted = max(overhead_s / CHUNK_OVERHEAD_SHARE / item_s, target_s / item_s)
    return balance if wanted >= balance else max(math.ceil(wanted), 1)


def forced_chunksize(options: Options, workers: int, n_items: int | None) -> int:
    """A forced strategy's chunk size: the caller's, else a few chunks per worker, else 0 (adaptive)."""
    if options.chunksize is not None:
        return max(options.chunksize, 1)
    if n_items:
        return ceil_div(n_items, workers * CHUNKS_PER_WORKER)
    return 0


def guided_size(size: int, left: int, workers: int) -> int:
    """The next chunk's size near the end of an input of known length (``left`` items remain).

    At most ``1 / (TAIL_CHUNKS_PER_WORKER * workers)`` of what is left, down to
    one item, so the last chunks finish together instead of one worker running
    a full chunk while the others idle.
    """
    share = ceil_div(left, TAIL_CHUNKS_PER_WORKER * workers)
    return max(1, min(size, share))


def serial_batch_size(item_s: float) -> int:
    """Items per batch when the rest runs in the caller: about ``SERIAL_BATCH_S`` of measured work."""
    if item_s <= 0:
        return 1
    return max(1, min(int(SERIAL_BATCH_S / item_s), MAX_ADAPTIVE_CHUNK))


def adapted_chunksize(current: int, per_item_s: float, target_s: float) -> int:
    """An adaptive chunk size after a chunk ran at ``per_item_s``: towards ``target_s`` of work per chunk."""
    target = max(1, min(int(target_s / per_item_s), MAX_ADAPTIVE_CHUNK))
    return min(target, current * ADAPTIVE_GROWTH)
