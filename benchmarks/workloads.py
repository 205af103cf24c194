"""Workloads for the benchmarks: module-level functions, so every start method can ship them by reference.

Each workload pairs a function of one item with a builder of its items.
``scale`` shrinks the input for a quick sanity run (1.0 is the full size);
the full sizes aim at about 0.5 to 1.5 s of serial work on a 2-core machine,
except ``tiny``, whose work is small on purpose.

The buffers that ``hashlib`` and ``zlib`` read are built when this module is
imported, in the caller and again in every spawned or forkserver worker (about
10 ms), so items stay small integers and only the work crosses the GIL.
"""

from __future__ import annotations

import hashlib
import random
import time
import zlib

from catalog import Workload, find

__all__ = ["WORKLOADS", "Workload", "by_name"]

_MB = 1 << 20


def _make_buffer() -> bytes:
    """8 MB of partly compressible bytes (about 70% after zlib), deterministic and cheap to build."""
    rng = random.Random(1234)
    # Map random bytes onto a skewed alphabet: mostly 16 symbols, sometimes 64.
    table = bytes((b % 16) + 97 if b < 200 else (b % 64) + 48 for b in range(256))
    block = rng.randbytes(_MB).translate(table)
    # zlib's window is 32 KB, so repeating a 1 MB block does not make it easier to compress.
    return block * 8


_BUF = _make_buffer()
_VIEW = memoryview(_BUF)


# --- functions (one argument each) ---------------------------------------------------------------------------------


def countdown(n: int) -> int:
    """Pure-Python loop: holds the GIL all the time."""
    k = n
    while k:
        k -= 1
    return n


_SOLAR_MASS = 4 * 3.141592653589793**2
_DAYS_PER_YEAR = 365.24
_BODIES = (
    # sun, jupiter, saturn, uranus, neptune: position, velocity (per year), mass
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), _SOLAR_MASS),
    (
        (4.84143144246472090e00, -1.16032004402742839e00, -1.03622044471123109e-01),
        (1.66007664274403694e-03, 7.69901118419740425e-03, -6.90460016972063023e-05),
        9.54791938424326609e-04,
    ),
    (
        (8.34336671824457987e00, 4.12479856412430479e00, -4.03523417114321381e-01),
        (-2.76742510726862411e-03, 4.99852801234917238e-03, 2.30417297573763929e-05),
        2.85885980666130812e-04,
    ),
    (
        (1.28943695621391310e01, -1.51111514016986312e01, -2.23307578892655734e-01),
        (2.96460137564761618e-03, 2.37847173959480950e-03, -2.96589568540237556e-05),
        4.36624404335156298e-05,
    ),
    (
        (1.53796971148509165e01, -2.59193146099879641e01, 1.79258772950371181e-01),
        (2.68067772490389322e-03, 1.62824170038242295e-03, -9.51592254519715870e-05),
        5.15138902046611451e-05,
    ),
)


def nbody(steps: int) -> float:
    """A small pure-Python n-body simulation (the outer planets) for ``steps`` steps; returns the energy."""
    pos = [list(p) for p, _, _ in _BODIES]
    vel = [[v * _DAYS_PER_YEAR for v in vv] for _, vv, _ in _BODIES]
    mass = [m * _SOLAR_MASS if i else m for i, (_, _, m) in enumerate(_BODIES)]
    n = len(pos)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    dt = 0.01
    for _ in range(steps):
        for i, j in pairs:
            pi, pj = pos[i], pos[j]
            dx, dy, dz = pi[0] - pj[0], pi[1] - pj[1], pi[2] - pj[2]
            d2 = dx * dx + dy * dy + dz * dz
            mag = dt / (d2 * d2**0.5)
            mi, mj = mass[i] * mag, mass[j] * mag
            vi, vj = vel[i], vel[j]
            vi[0] -= dx * mj
            vi[1] -= dy * mj
            vi[2] -= dz * mj
            vj[0] += dx * mi
            vj[1] += dy * mi
            vj[2] += dz * mi
        for p, v in zip(pos, vel, strict=True):
            p[0] += dt * v[0]
            p[1] += dt * v[1]
            p[2] += dt * v[2]
    energy = 0.0
    for i in range(n):
        v = vel[i]
        energy += 0.5 * mass[i] * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
        for j in range(i + 1, n):
            d = [pos[i][k] - pos[j][k] for k in range(3)]
            energy -= mass[i] * mass[j] / (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]) ** 0.5
    return energy


_HASH_ROUNDS = 3


def sha256_buffer(n: int) -> bytes:
    """SHA-256 of the first ``n`` bytes of the module buffer, a few times: hashlib releases the GIL."""
    digest = b""
    for _ in range(_HASH_ROUNDS):
        digest = hashlib.sha256(_VIEW[:n]).digest()
    return digest


def zlib_slice(offset: int) -> int:
    """Compress 1 MB of the module buffer from ``offset``: zlib releases the GIL; returns the compressed size."""
    return len(zlib.compress(_VIEW[offset : offset + _MB], 6))


def sleep_for(seconds: float) -> float:
    """Wait without computing (I/O stand-in)."""
    time.sleep(seconds)
    return seconds


def square(x: int) -> int:
    """Almost no work: dispatch overhead is everything."""
    return x * x


def sample_bytes(data: bytes) -> bytes:
    """SHA-256 of a 1 MB argument, a few rounds: releases the GIL, but a process pool must pickle the argument."""
    digest = b""
    for _ in range(_HASH_ROUNDS):
        digest = hashlib.sha256(data).digest()
    return digest


_PACKED = zlib.compress(_BUF[:_MB], 6)


def make_bytes(i: int) -> bytes:
    """A 1 MB result decompressed from a small blob: zlib releases the GIL; a process pool must pickle the result."""
    return zlib.decompress(_PACKED)[:-1] + bytes((i % 256,))


# --- inputs --------------------------------------------------------------------------------------------------------


def _count(full: int, scale: float, least: int) -> int:
    return max(least, round(full * scale))


def _countdown_items(scale: float) -> list[int]:
    return [_count(1_300_000, scale, 1000)] * 32


def _nbody_items(scale: float) -> list[int]:
    return [_count(3_000, scale, 30)] * 40


def _hashlib_items(scale: float) -> list[int]:
    return [len(_BUF)] * _count(56, scale, 8)


def _zlib_items(scale: float) -> list[int]:
    count = _count(24, scale, 4)
    return [(i * 997 * 1024) % (len(_BUF) - _MB) for i in range(count)]


def _io_items(scale: float) -> list[float]:
    return [0.02] * _count(60, scale, 12)


def _tiny_items(scale: float) -> list[int]:
    return list(range(_count(200_000, scale, 2000)))


def _large_arg_items(scale: float) -> list[bytes]:
    count = _count(450, scale, 8)
    blocks = [bytes((i,)) * _MB for i in range(8)]
    return [blocks[i % 8] for i in range(count)]


def _large_result_items(scale: float) -> list[int]:
    return list(range(_count(150, scale, 8)))


#: Which items of ``skewed`` are slow: two at the very end (the worst place for static chunks), one mid-way.
_SKEW_FACTOR = 20


def _skewed_items(scale: float) -> list[int]:
    base = _count(450_000, scale, 500)
    items = [base] * 40
    for i in (len(items) // 2, len(items) - 2, len(items) - 1):
        items[i] = base * _SKEW_FACTOR
    return items


WORKLOADS: tuple[Workload, ...] = (
    Workload("countdown", countdown, _countdown_items, "pure-Python `while n: n -= 1`, 32 items (GIL-bound)"),
    Workload("nbody", nbody, _nbody_items, "pure-Python n-body steps of the outer planets, 40 items (GIL-bound)"),
    Workload(
        "hashlib", sha256_buffer, _hashlib_items, "SHA-256 of an 8 MB module buffer x3, 56 items (releases the GIL)"
    ),
    Workload("zlib", zlib_slice, _zlib_items, "zlib level 6 of a 1 MB buffer slice, 24 items (releases the GIL)"),
    Workload("io_wait", sleep_for, _io_items, "time.sleep(0.02), 60 items (waits)"),
    Workload("tiny", square, _tiny_items, "x * x, 200,000 items (dispatch overhead only)"),
    Workload("large_args", sample_bytes, _large_arg_items, "SHA-256 of a 1 MB argument, 450 items (pickling costs)"),
    Workload("large_results", make_bytes, _large_result_items, "zlib to a 1 MB result, 150 items (pickling costs)"),
    Workload(
        "skewed",
        countdown,
        _skewed_items,
        "countdown, 40 items, 3 of them 20x longer, 2 at the end (load balance)",
    ),
)


def by_name(name: str) -> Workload:
    """The workload called ``name``.

    Raises:
        KeyError: no workload has that name.
    """
    return find(name, WORKLOADS)
