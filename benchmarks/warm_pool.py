"""Pool start-up: autopar's first call (pool started inside it) against its second call (pool reused).

Usage::

    python benchmarks/warm_pool.py [--repeats N]

For each of fork, forkserver, spawn and threads, with 2 workers, over 100
tiny items: reset autopar to a fresh state, time a first call, then time a
second call on the pool the first one left.  Medians over the repeats, the
strategies interleaved within each repeat.  The table is printed and appended
to ``benchmarks/results/warm_pool.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from workloads import square

import autopar
import autopar._cache
import autopar._pools

RESULTS = Path(__file__).resolve().parent / "results"
STRATEGIES = ("fork", "forkserver", "spawn", "threads")
WORKERS = 2
ITEMS = 100
HEAD = ["strategy", "first call s", "second call s", "first - second s", "first / second"]


def _stop_forkserver() -> None:
    """Stop multiprocessing's fork server, so the next forkserver pool starts it again as in a fresh process."""
    from multiprocessing import forkserver

    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if stop is not None:
        stop()


def fresh_autopar() -> None:
    """Forget autopar's pools, cached measurements and measured start-up times, and stop the fork server."""
    autopar.shutdown()
    autopar._cache.clear()
    autopar._pools._startup_s.clear()
    _stop_forkserver()
    gc.collect()


def _time(strategy: str, items: list[int]) -> float:
    started = time.perf_counter()
    autopar.map(square, items, strategy=strategy, workers=WORKERS)
    return time.perf_counter() - started


def measure(repeats: int = 5) -> list[dict[str, Any]]:
    """Median first-call and second-call seconds per strategy."""
    items = list(range(ITEMS))
    first: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    second: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    for _ in range(repeats):
        for strategy in STRATEGIES:
            fresh_autopar()
            first[strategy].append(_time(strategy, items))
            second[strategy].append(_time(strategy, items))
    fresh_autopar()
    return [
        {
            "strategy": s,
            "first_s": statistics.median(first[s]),
            "second_s": statistics.median(second[s]),
            "first_all_s": first[s],
            "second_all_s": second[s],
        }
        for s in STRATEGIES
    ]


def rows(results: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in results:
        ratio = r["first_s"] / r["second_s"] if r["second_s"] > 0 else float("nan")
        out.append(
            [
                r["strategy"],
                f"{r['first_s']:.4f}",
                f"{r['second_s']:.4f}",
                f"{r['first_s'] - r['second_s']:.4f}",
                f"{ratio:.0f}x",
            ]
        )
    return out


def _text(results: list[dict[str, Any]]) -> str:
    table = [HEAD, *rows(results)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEAD))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown(results: list[dict[str, Any]], repeats: int) -> str:
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {date}",
        "",
        f"Python {platform.python_version()}, {platform.platform()}, os.cpu_count()={os.cpu_count()}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        f"{ITEMS} items of `x * x`, {WORKERS} workers, medians of {repeats} repeats.",
        "",
        "| " + " | ".join(HEAD) + " |",
        "|" + "|".join("---" for _ in HEAD) + "|",
    ]
    lines.extend("| " + " | ".join(r) + " |" for r in rows(results))
    return "\n".join(lines) + "\n\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="repeats per strategy (default 5)")
    args = parser.parse_args(argv)
    results = measure(args.repeats)
    print(_text(results))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "warm_pool.md"
    if not path.exists():
        path.write_text(
            "# Pool start-up: first call against second call\n\n"
            "Appended by `python benchmarks/warm_pool.py`, newest last.\n"
            "The first call starts the pool; the second reuses it.\n\n"
        )
    with path.open("a") as fh:
        fh.write(_markdown(results, args.repeats))
    print(f"appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
