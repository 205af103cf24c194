"""The GIL demo: a pure-Python countdown, serially, on 4 threads, on 4 processes, then by autopar.

Runs with ``python -m autopar demo`` (and ``make demo``); uses the public API only.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import time
from typing import TYPE_CHECKING

import autopar

if TYPE_CHECKING:
    from collections.abc import Callable

#: Chunks of work: 48 countdowns of 2.5 million steps, about 3 s serially on one core.
CHUNKS = [2_500_000] * 48


def countdown(n: int) -> int:
    """Count down from ``n`` in pure Python: holds the GIL the whole time."""
    while n > 0:
        n -= 1
    return n


def _serial(chunks: list[int]) -> list[int]:
    return [countdown(n) for n in chunks]


def _threads(chunks: list[int]) -> list[int]:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return list(pool.map(countdown, chunks))


def _processes(chunks: list[int]) -> list[int]:
    # The platform's default start method, as a user would get it.
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=multiprocessing.get_context()) as pool:
        return list(pool.map(countdown, chunks))


def _autopar(chunks: list[int]) -> list[int]:
    return autopar.map(countdown, chunks)


def _timed(run: Callable[[list[int]], list[int]], chunks: list[int]) -> float:
    started = time.perf_counter()
    results = run(chunks)
    elapsed = time.perf_counter() - started
    assert results == [0] * len(chunks), "wrong results"
    return elapsed


def main(scale: float = 1.0) -> int:
    """Run the demo and print the table; ``scale`` shrinks the work (tests use a small one)."""
    chunks = [max(1, int(n * scale)) for n in CHUNKS]
    print(f"autopar {autopar.__version__} demo: a pure-Python countdown in {len(chunks)} chunks")
    print(f"usable CPUs: {autopar.cpu_count()}\n")
    rows = [
        ("serial (one core)", _serial),
        ("4 threads", _threads),
        ("4 processes", _processes),
        ("autopar.map", _autopar),
    ]
    times = {}
    for name, run in rows:
        times[name] = _timed(run, chunks)
        print(f"  {name:<20} {times[name]:7.2f} s   {times['serial (one core)'] / times[name]:5.2f}x")
    decision = autopar.explain(countdown, chunks)
    print("\nThreads gain nothing: the GIL lets one thread run Python bytecode at a time.")
    print("Processes each have their own GIL; autopar measured the function and chose:\n")
    print(decision)
    return 0
