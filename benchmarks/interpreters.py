"""The interpreters strategy against auto, fork, forkserver, spawn and threads: start-up, and pure-Python CPU items.

Usage (Python 3.14 or later; ``scripts/debian-pythons.sh run 3.14 benchmarks/interpreters.py`` runs it there)::

    python benchmarks/interpreters.py [--repeats N] [--items N] [--countdown N] [--check]

Start-up: ``autopar.map(square, [1, 2], strategy=s, workers=2)`` on a cold
pool (``autopar.shutdown()`` before each), so the time covers starting two
workers, two trivial items and the results; forkserver's server is already
running after the first repeat, as in a long-lived program.  CPU: ``items``
countdown loops of ``countdown`` steps each, pure Python, on two workers, as
a speed-up over running them serially in the caller.  The work functions live
in a module written to a temporary directory, since a subinterpreter cannot
run functions of the script's ``__main__`` (cpython#136659).  Medians of
``repeats``; the table is printed and written to ``benchmarks/results/interpreters.md``.
The ``auto`` row lets autopar choose (two workers), and the table says which
strategy it chose for the CPU items.  ``--check`` runs one small repeat and
writes nothing: a quick test that the script works, not a measurement.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import autopar

RESULTS = Path(__file__).resolve().parent / "results"
STRATEGIES = ("auto", "interpreters", "fork", "forkserver", "spawn", "threads")
WORKERS = 2
WORK = textwrap.dedent(
    """
    def square(x):
        return x * x

    def countdown(n):
        while n:
            n -= 1
        return n
    """
)


def _timed(func: object, items: list[int], strategy: str) -> float:
    start = time.perf_counter()
    autopar.map(func, items, strategy=strategy, workers=WORKERS, chunksize=1)  # type: ignore[arg-type]
    return time.perf_counter() - start


def _measure(work: object, repeats: int, items: int, steps: int) -> dict[str, tuple[float, float]]:
    square, countdown = work.square, work.countdown  # type: ignore[attr-defined]
    start = time.perf_counter()
    for _ in range(items):
        countdown(steps)
    serial_s = time.perf_counter() - start
    rows: dict[str, tuple[list[float], list[float]]] = {s: ([], []) for s in STRATEGIES}
    for _ in range(repeats):
        for strategy in STRATEGIES:  # interleaved, so drifts of the machine hit every strategy alike
            autopar.shutdown()
            rows[strategy][0].append(_timed(square, [1, 2], strategy))
            autopar.shutdown()
            rows[strategy][1].append(serial_s / _timed(countdown, [steps] * items, strategy))
    autopar.shutdown()
    return {s: (statistics.median(up), statistics.median(speed)) for s, (up, speed) in rows.items()}


def _table(results: dict[str, tuple[float, float]], args: argparse.Namespace, auto_chose: str) -> str:
    lines = [
        "# The interpreters strategy against process pools and threads",
        "",
        f"{dt.date.today()}, Python {platform.python_version()} ({sys.platform}), {os.cpu_count()} CPUs visible,",
        f"{WORKERS} workers, medians of {args.repeats} repeats; produced by `benchmarks/interpreters.py`.",
        "Start-up: a cold pool, two trivial items, results back.",
        f"CPU: {args.items} pure-Python countdowns of {args.countdown:,} steps, speed-up over serial (at most {WORKERS}x).",
        "",
        f"Auto chose {auto_chose} for the CPU items.",
        "",
        "| strategy | start-up | CPU speed-up |",
        "|---|---:|---:|",
    ]
    lines += [f"| {s} | {up * 1e3:.1f} ms | {speed:.2f}x |" for s, (up, speed) in results.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--countdown", type=int, default=3_000_000)
    parser.add_argument("--check", action="store_true", help="one small repeat, nothing written")
    args = parser.parse_args()
    if args.check:
        args.repeats, args.items, args.countdown = 1, 4, 200_000
    if not autopar.probe_platform().subinterpreters:
        sys.exit(f"the interpreters strategy needs Python 3.14 or later; this is {platform.python_version()}")
    warnings.simplefilter("ignore", autopar.UnsafeStrategyWarning)  # fork after the pools' threads: measured anyway
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "interp_work.py").write_text(WORK, encoding="utf-8")
        sys.path.insert(0, tmp)
        import interp_work  # type: ignore[import-not-found]

        results = _measure(interp_work, args.repeats, args.items, args.countdown)
        chose = autopar.explain(interp_work.countdown, [args.countdown] * args.items, workers=WORKERS).strategy
        autopar.shutdown()
        table = _table(results, args, chose)
    print(table)
    if not args.check:
        (RESULTS / "interpreters.md").write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
