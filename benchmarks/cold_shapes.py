"""Workload shapes for the cold-call benchmark: module-level functions, so every start method ships them by reference.

Each shape is sized for about 0.5 to 2 s of serial work on a 2-core machine
(``tiny``, ``big_args`` and ``big_lists`` are small on purpose).  ``scale`` shrinks the work
per item for a quick run.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from typing import TYPE_CHECKING

from catalog import Workload, find

if TYPE_CHECKING:
    from collections.abc import Sized

__all__ = ["SHAPES", "by_name"]

#: Countdown steps per second of pure Python on this machine, as ``steps_per_s`` measured it in the
#: benchmark's parent process (every child then builds the same items); roughly, without it.
STEPS_ENV = "AUTOPAR_BENCH_STEPS_PER_S"
_STEPS_PER_S = int(os.environ.get(STEPS_ENV, "20000000"))


def countdown(n: int) -> int:
    """Pure-Python loop: holds the GIL all the time."""
    k = n
    while k:
        k -= 1
    return n


def spectral_norm(n: int) -> float:
    """The pyperformance spectral-norm kernel on an ``n`` x ``n`` matrix, pure Python."""

    def a(i: int, j: int) -> float:
        return 1.0 / ((i + j) * (i + j + 1) // 2 + i + 1)

    u = [1.0] * n
    v = [0.0] * n
    for _ in range(3):
        v = [sum(a(i, j) * u[j] for j in range(n)) for i in range(n)]
        u = [sum(a(j, i) * v[j] for j in range(n)) for i in range(n)]
    return sum(u) / n


def fannkuch(n: int) -> int:
    """The pyperformance fannkuch kernel: the most flips over the permutations of ``range(n)``, pure Python."""
    count = list(range(1, n + 1))
    max_flips = 0
    m = n - 1
    r = n
    perm1 = list(range(n))
    perm1_ins = perm1.insert
    perm1_pop = perm1.pop
    while True:
        while r != 1:
            count[r - 1] = r
            r -= 1
        if perm1[0] != 0 and perm1[m] != m:
            perm = perm1[:]
            flips = 0
            k = perm[0]
            while k:
                perm[: k + 1] = perm[k::-1]
                flips += 1
                k = perm[0]
            max_flips = max(max_flips, flips)
        while r != n:
            perm1_ins(r, perm1_pop(0))
            count[r] -= 1
            if count[r] > 0:
                break
            r += 1
        else:
            return max_flips


_DOC = json.dumps(
    {"items": [{"id": i, "name": f"item {i}", "tags": ["a", "b", "c"], "score": i / 7} for i in range(200)]}
)


def json_loads(rounds: int) -> int:
    """The pyperformance json_loads kernel: parse a 20 KB document ``rounds`` times."""
    total = 0
    for _ in range(rounds):
        total += len(json.loads(_DOC)["items"])
    return total


def wait_then_compute(spec: tuple[float, int]) -> int:
    """Sleep ``spec[0]`` seconds, then count down ``spec[1]`` steps: half waiting, half computing."""
    time.sleep(spec[0])
    return countdown(spec[1])


_BLOCK = bytes(1024 * 1024)


def wait_then_hash(spec: tuple[float, int]) -> str:
    """Sleep ``spec[0]`` seconds, then hash ``spec[1]`` MB in C, which releases the GIL: threads run it in parallel."""
    time.sleep(spec[0])
    return hash_mb(spec[1])


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def length(data: Sized) -> int:
    """Trivial work on a big argument: what matters is what sending it costs."""
    return len(data)


def hash_mb(mb: int) -> str:
    """Hash ``mb`` MB in C, which releases the GIL: threads run it in parallel, without waiting first."""
    digest = hashlib.sha256()
    for _ in range(mb):
        digest.update(_BLOCK)
    return digest.hexdigest()


def big_result(size: int) -> bytes:
    """Trivial work with a big result: what matters is what sending it back costs."""
    return bytes(size)


def square(x: int) -> int:
    return x * x


def matmul(seed: int) -> float:
    """A NumPy matrix product that uses every core through a multithreaded BLAS."""
    import numpy

    rng = numpy.random.default_rng(seed)
    m = rng.standard_normal((700, 700))
    return round(float((m @ m).trace()), 6)  # BLAS thread counts change the last bits


def steps_per_s() -> int:
    """Countdown steps per second of pure Python here: the median of 5 runs of about 20 ms each."""
    rates = []
    for _ in range(5):
        began = time.perf_counter()
        countdown(1_000_000)
        rates.append(1_000_000 / (time.perf_counter() - began))
    return int(statistics.median(rates))


def _steps(seconds: float, scale: float) -> int:
    return max(1000, int(_STEPS_PER_S * seconds * scale))


_BIG = 20 * 1024 * 1024

SHAPES: tuple[Workload, ...] = (
    Workload("coarse", countdown, lambda s: [_steps(0.2, s)] * 8, "8 items of ~0.2 s pure-Python countdown"),
    Workload(
        "fannkuch",
        fannkuch,
        lambda s: [9 if s >= 0.5 else 8] * 6,
        "6 items of the fannkuch kernel, ~0.35 s each",
    ),
    Workload(
        "spectral_norm",
        spectral_norm,
        lambda s: [max(20, int(420 * s**0.5))] * 6,
        "6 items of the spectral-norm kernel, ~0.17 s each",
    ),
    Workload(
        "spectral_short",
        spectral_norm,
        lambda s: [max(20, int(130 * s**0.5))] * 6,
        "6 items of the spectral-norm kernel, ~15 ms each",
    ),
    Workload(
        "json_loads",
        json_loads,
        lambda s: [max(10, int(1000 * s))] * 8,
        "8 items of the json_loads kernel, ~0.19 s each",
    ),
    Workload("fine", countdown, lambda s: [700] * max(1000, int(40_000 * s)), "40,000 items of ~35 us pure Python"),
    Workload(
        "mixed",
        wait_then_compute,
        lambda s: [(0.025 * s, _steps(0.025, s))] * 40,
        "40 items: sleep 25 ms, then compute ~25 ms",
    ),
    Workload(
        "wait_hash",
        wait_then_hash,
        lambda s: [(0.02 * s, max(1, round(16 * s)))] * 40,
        "40 items: sleep 20 ms, then hash 16 MB in C (GIL released)",
    ),
    Workload("io_wait", sleep_for, lambda s: [0.02 * s] * 200, "200 items that sleep 20 ms"),
    Workload("big_args", length, lambda s: [bytes(int(_BIG * s))] * 16, "16 arguments of 20 MB bytes, trivial work"),
    Workload(
        "big_lists",
        length,
        lambda s: [list(range(max(1000, int(1_000_000 * s)))) for _ in range(8)],
        "8 lists of a million ints, trivial work",
    ),
    Workload(
        "ascending",
        countdown,
        lambda s: [_steps(0.002, s) * (1 + 49 * i // 31) for i in range(32)],
        "32 items whose cost grows 1x to 50x",
    ),
    Workload(
        "medium", countdown, lambda s: [_steps(0.001, s)] * max(100, int(2000 * s)), "2,000 items of ~1 ms pure Python"
    ),
    Workload("hash", hash_mb, lambda s: [max(1, round(16 * s))] * 40, "40 items that hash 16 MB in C (GIL released)"),
    Workload("big_results", big_result, lambda s: [int(_BIG * s)] * 16, "16 results of 20 MB bytes, trivial work"),
    Workload("tiny", square, lambda s: list(range(max(2000, int(200_000 * s)))), "200,000 items of x * x"),
    Workload("matmul", matmul, lambda s: list(range(max(2, int(12 * s)))), "NumPy 700x700 matmul, multithreaded BLAS"),
)


def by_name(name: str) -> Workload:
    """The shape called ``name``.

    Raises:
        KeyError: no shape has that name.
    """
    return find(name, SHAPES)
