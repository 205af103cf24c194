"""How chunks share workers and cores: rounds, the tail of the last one, and waiting items in lockstep.

Pure arithmetic for the cost model (``_costs``): no clock, no OS calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._workload import Workload

__all__ = ["SIMULATED_CHUNKS", "UNEVEN_SHARE", "lockstep", "rounds_s", "skew_tail_s", "tail_s", "uneven_tail_s"]


def tail_s(wl: Workload, workers: int, chunk_s: float) -> float:
    """The last chunks finish unevenly: about half a chunk, plus half the slowest item's excess."""
    return 0.0 if workers <= 1 else chunk_s / 2 + skew_tail_s(wl, workers)


def skew_tail_s(wl: Workload, workers: int) -> float:
    """Half the slowest item's excess over the mean: it may be the last to start."""
    return 0.0 if workers <= 1 else (wl.item_max_s - wl.item_s) / 2


#: How much of a chunk the last round of a pool leaves a core idle, on average, when items measured
#: alike run unalike: on a shared machine one core runs slower than the other for seconds at a time.
#: 8 alike items of 180 ms on 2 fork workers (4 rounds): the worker that ran its items at 150-170 ms
#: idled 30, 50 and 126 ms at the end of three calls; 8 workers time-sliced, the slower core's share
#: spread over every item, were faster than 2 in 5 of 6 cold calls.
UNEVEN_SHARE = 0.25


def uneven_tail_s(chunks: int, chunk_s: float, workers: int) -> float:
    """What unequal cores leave idle at the end of ``chunks`` chunks on ``workers`` workers.

    With a worker per chunk, every chunk runs from the start, time-sliced over every core to
    the end, so no core idles while another finishes; with fewer, the last round runs on
    the cores' unequal speeds: ``UNEVEN_SHARE`` of a chunk.
    """
    return 0.0 if workers <= 1 or workers >= chunks else UNEVEN_SHARE * chunk_s


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


def lockstep(workers: int, cpu_share: float, cpu_count: int) -> float:
    """Items running at once, on average, on ``workers`` process workers whose items wait part of the time.

    A pool's workers start together and its items take about as long each: they
    wait together, then compute together, sharing the cores.  ``n`` items of
    wall time ``t`` then take ``n * t * ((1 - cpu_share) / workers + cpu_share / min(workers, cpu_count))``:
    the waits divide among the workers, the computing among the cores, one after the other.
    Measured on 2 cores for 40 items that sleep 20 ms, then hash for 10 ms: 2, 4, 8 and 16 fork
    workers took 618, 406, 295 and 255 ms, against 600, 400, 300 and 250 priced; a model
    where waits and computing overlap out of step priced 8 workers at 233 ms.  Items that
    compute in bytecode drift out of step a little: 4 workers ran 40 items of 20 ms of sleep
    and 26 ms of countdown in 0.64 s (priced 0.72 s), 8 in 0.61 s (priced 0.62 s).
    """
    share = min(max(cpu_share, 0.0), 1.0)
    return 1 / ((1 - share) / max(workers, 1) + share / max(min(workers, cpu_count), 1))
