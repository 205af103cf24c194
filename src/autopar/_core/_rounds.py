"""How chunks share workers and cores: rounds, the tail of the last one, and the overlap of waiting items.

Pure arithmetic for the cost model (``_costs``): no clock, no OS calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._workload import Workload

__all__ = ["SIMULATED_CHUNKS", "overlap", "rounds_s", "skew_tail_s", "tail_s"]


def tail_s(wl: Workload, workers: int, chunk_s: float) -> float:
    """The last chunks finish unevenly: about half a chunk, plus half the slowest item's excess."""
    return 0.0 if workers <= 1 else chunk_s / 2 + skew_tail_s(wl, workers)


def skew_tail_s(wl: Workload, workers: int) -> float:
    """Half the slowest item's excess over the mean: it may be the last to start."""
    return 0.0 if workers <= 1 else (wl.item_max_s - wl.item_s) / 2


#: Chunks beyond which ``rounds_s`` stops simulating: the last round is then a small share of the call.
SIMULATED_CHUNKS = 256


def rounds_s(chunks: int, chunk_s: float, workers: int, cores: float, busy: Sequence[float] = ()) -> float:
    """Seconds until the last of ``chunks`` equal chunks ends on ``workers`` workers that share ``cores``.

    Running chunks share the cores equally, so ``k`` of them run at ``min(1, cores / k)``
    each: 5 chunks on 2 workers and 2 cores take 3 chunks' time (the last alone), on
    3 workers 1.5 + 1 = 2.5, the most the cores allow.  ``busy`` holds the seconds of
    work left in items some workers already run (a pool started before measuring):
    those workers take chunks only once done.  Past ``SIMULATED_CHUNKS`` the rounds are
    counted, ``busy`` spread over the cores.
    """
    workers = max(workers, 1)
    if chunks > SIMULATED_CHUNKS:
        full, last = divmod(chunks, workers)
        per_round = chunk_s * max(workers / cores, 1.0)
        return full * per_round + (chunk_s * max(last / cores, 1.0) if last else 0.0) + sum(busy) / cores
    running = sorted(b for b in busy if b > 0)[:workers]
    queued = chunks
    while len(running) < workers and queued:
        running.append(chunk_s)
        queued -= 1
    elapsed = 0.0
    while running:
        rate = min(1.0, cores / len(running))
        step = min(running)
        elapsed += step / rate
        left = [r - step for r in running]
        running = [r for r in left if r > _DONE_S]
        freed = min(len(left) - len(running), queued)
        running += [chunk_s] * freed
        queued -= freed
    return elapsed


#: Work left below this is done (float noise in ``rounds_s``).
_DONE_S = 1e-12


#: How sharply process workers of blocking work approach their bound (larger: sooner).
_OVERLAP_SHARPNESS = 3


def overlap(workers: int, cap: float) -> float:
    """Items running at once on ``workers`` process workers whose items wait part of the time.

    ``cap`` (``cpu_count / cpu_share``) is what the cores allow.  Items wait and
    compute out of step, so at ``workers == cap`` some cores still idle while
    others queue (as in a closed queueing network): a smooth minimum of the two,
    about 0.8 of the bound there, 0.92 at 1.5 times and 0.96 at twice as many
    workers.  For the cold bench's ``mixed`` items (CPU 30% of wall, 2 cores) it
    prices 4 fork workers 1.4x slower than 8, as measured (0.45 s against 0.33 s).
    """
    k = _OVERLAP_SHARPNESS
    return float((workers**-k + cap**-k) ** (-1 / k))
