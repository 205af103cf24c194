"""A 300 MB read-only table used by 20,000 small items: ``shared=`` against sending the table some other way.

Usage::

    python benchmarks/shared_table.py [--repeats N] [--items N] [--mb N]

Each item reads 8 entries of one NumPy float64 array of ``--mb`` megabytes.
Contenders, each timed from a cold start (no pool alive), median of ``--repeats``:

* ``serial``: a list comprehension in this process, the baseline;
* ``autopar shared=``: ``autopar.map(read, items, shared=table)``, with ``read(i, table)``;
  spawn workers map the table from one shared-memory segment;
* ``autopar partial``: ``autopar.map(functools.partial(read, table=table), items)``; the
  function, table included, is pickled once and sent to each worker once;
* ``autopar (i, table) items``: ``autopar.map(read_pair, [(i, table) for i in items])``; the
  table is pickled once per chunk (pickle shares the one object within a chunk), so
  the cost depends on how many chunks autopar makes;
* ``autopar (i, table), chunksize=1``: the same with one item per chunk, as a stream
  read by ``imap`` would be: the table is pickled for every item.  Only a few items are
  timed and the figure is extrapolated to the full count (time per item times items);
* ``joblib``: ``Parallel(n_jobs=2)(delayed(read)(i, table) for i in items)``; joblib's
  default backend (loky) starts fresh interpreters, as spawn does, and memory-maps a
  large NumPy argument instead of pickling it.

Two tables: autopar under auto, and autopar forced to ``strategy="spawn"`` with 2
workers (joblib and serial run the same way in both).  Then ``autopar.explain`` of the
``shared=`` call with an initializer that sleeps 0.2 s, to show how the per-worker set-up
cost enters the decision.  Everything is printed and written to
``benchmarks/results/shared_table.md``.

Memory: one table in this process (plus one shared-memory copy during ``shared=``
calls, and a copy per worker for the pickling contenders); items are small tuples
that refer to the one table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from joblib import Parallel, delayed
from joblib.externals.loky import get_reusable_executor

import autopar
import autopar._cache
import autopar._platform

if TYPE_CHECKING:
    from collections.abc import Callable

RESULTS = Path(__file__).resolve().parent / "results"
#: Entries each item reads.
READS = 8
#: Items timed for the one-item-per-chunk contender, whose cost grows with every item.
PER_ITEM_SAMPLE = 6


def read(i: int, table: Any) -> float:
    """The sum of 8 entries of ``table`` spread by ``i``: a small item."""
    n = len(table)
    return float(sum(table[(i * 7_919 + k * 104_729) % n] for k in range(READS)))


def read_pair(pair: tuple[int, Any]) -> float:
    """``read(i, table)`` for an item that carries the table."""
    i, table = pair
    return read(i, table)


def sleep_init(seconds: float) -> None:
    """An initializer standing for a costly per-worker set-up (loading a model, opening a connection)."""
    time.sleep(seconds)


def fresh() -> None:
    """No pool alive (autopar's or joblib's) and no cached decision: every contender starts cold."""
    autopar.shutdown()
    autopar._cache.clear()
    get_reusable_executor().shutdown(wait=True)  # joblib keeps its loky workers between calls
    gc.collect()


def timed(run: Callable[[], list[float]], expected: float, repeats: int) -> float:
    """Median seconds of ``run()`` over ``repeats`` cold starts; checks the results each time."""
    times = []
    for _ in range(repeats):
        fresh()
        started = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - started)
        if not np.isclose(sum(out), expected):
            msg = f"wrong results: {sum(out)} != {expected}"
            raise AssertionError(msg)
    return statistics.median(times)


def contenders(table: np.ndarray, items: list[int], mode: dict[str, Any]) -> dict[str, Callable[[], list[float]]]:
    """The calls to time, by name; ``mode`` holds autopar's strategy options."""
    pairs = [(i, table) for i in items]  # 20,000 references to one array, no copies
    return {
        "autopar shared=": lambda: autopar.map(read, items, shared=table, **mode),
        "autopar partial": lambda: autopar.map(functools.partial(read, table=table), items, **mode),
        "autopar (i, table) items": lambda: autopar.map(read_pair, pairs, **mode),
        "joblib Parallel(n_jobs=2)": lambda: Parallel(n_jobs=2)(delayed(read)(i, table) for i in items),
    }


def decision_of(table: np.ndarray, items: list[int], name: str) -> str:
    """What autopar's auto picks for contender ``name``, in a few words."""
    if name == "autopar shared=":
        d = autopar.explain(read, items, shared=table)
    elif name == "autopar partial":
        d = autopar.explain(functools.partial(read, table=table), items)
    elif name == "autopar (i, table) items":
        d = autopar.explain(read_pair, [(i, table) for i in items])
    else:
        return ""
    return f"{d.strategy}, {d.workers} worker(s), chunksize {d.chunksize}"


def per_item_stream(table: np.ndarray, mode: dict[str, Any], repeats: int) -> float:
    """Seconds per item with the table in every item and one item per chunk, on ``PER_ITEM_SAMPLE`` items.

    Pool start-up is excluded: a first call starts the pool, then the timed calls reuse it.
    """
    pairs = [(i, table) for i in range(PER_ITEM_SAMPLE)]
    times = []
    for _ in range(repeats):
        fresh()
        autopar.map(read_pair, pairs[:2], chunksize=1, **mode)  # start the pool
        started = time.perf_counter()
        autopar.map(read_pair, pairs, chunksize=1, **mode)
        times.append((time.perf_counter() - started) / PER_ITEM_SAMPLE)
    return statistics.median(times)


def table_rows(results: dict[str, float], baseline: str, notes: dict[str, str]) -> list[str]:
    """Markdown rows: contender, seconds, ratio to ``baseline``, note."""
    rows = [
        "| contender | seconds | time / autopar shared= | note |",
        "|---|---:|---:|---|",
    ]
    for name, seconds in results.items():
        rows.append(f"| {name} | {seconds:.3f} | {seconds / results[baseline]:.2f}x | {notes.get(name, '')} |")
    return rows


def run_mode(
    title: str,
    table: np.ndarray,
    items: list[int],
    mode: dict[str, Any],
    repeats: int,
    serial_s: float,
    expected: float,
) -> list[str]:
    """Time every contender under ``mode``; return the section's Markdown lines."""
    results: dict[str, float] = {"serial (list comprehension)": serial_s}
    notes: dict[str, str] = {}
    for name, run in contenders(table, items, mode).items():
        print(f"  {title}: {name} ...", flush=True)
        results[name] = timed(run, expected, repeats)
        if "strategy" not in mode:
            notes[name] = decision_of(table, items, name)
    if mode.get("strategy") == "spawn":
        per_item = per_item_stream(table, mode, repeats)
        name = "autopar (i, table), chunksize=1"
        results[name] = per_item * len(items)
        notes[name] = (
            f"extrapolated: {per_item * 1e3:.1f} ms per item measured on {PER_ITEM_SAMPLE} items "
            f"(warm pool) x {len(items):,} items"
        )
    notes["joblib Parallel(n_jobs=2)"] = "loky backend (fresh interpreters), table memory-mapped"
    lines = [f"## {title}", "", *table_rows(results, "autopar shared=", notes), ""]
    print("\n".join(lines))
    return lines


def explain_with_initializer(table: np.ndarray, items: list[int]) -> list[str]:
    """``autopar.explain`` of the ``shared=`` call, without and with a 0.2 s initializer."""
    lines = ["## explain() with a per-worker initializer", ""]
    for label, options in (
        ("without an initializer", {}),
        ("with an initializer that sleeps 0.2 s", {"initializer": sleep_init, "initargs": (0.2,)}),
    ):
        fresh()
        decision = autopar.explain(read, items, shared=table, **options)
        lines += [f"{label}:", "", "```", str(decision), "```", ""]
    print("\n".join(lines))
    return lines


def machine() -> list[str]:
    return [
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs (autopar sees {autopar._platform.probe_platform().cpu_count})",
        f"- NumPy {np.__version__}, autopar from {Path(autopar.__file__).parent}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--mb", type=int, default=300)
    args = parser.parse_args()

    entries = args.mb * 1_000_000 // 8
    table = np.random.default_rng(0).random(entries)
    items = list(range(args.items))
    print(f"table: {table.nbytes / 1e6:.0f} MB ({entries:,} float64); {len(items):,} items of {READS} reads")

    serial_times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        expected = sum(read(i, table) for i in items)
        serial_times.append(time.perf_counter() - started)
    serial_s = statistics.median(serial_times)

    lines = [
        "# A 300 MB read-only table shared by 20,000 small items",
        "",
        f"Produced by `python benchmarks/shared_table.py --repeats {args.repeats} --items {args.items} --mb {args.mb}`.",
        f"Table: {table.nbytes / 1e6:.0f} MB of float64; {len(items):,} items, each reading {READS} entries.",
        f"Each figure is the median of {args.repeats} calls, each from a cold start (no pool alive), "
        "start-up included unless the note says otherwise.",
        "",
        *machine(),
        "",
    ]
    # Auto first: joblib leaves threads behind in this process, which autopar would count.
    lines += run_mode("autopar under auto", table, items, {}, args.repeats, serial_s, expected)
    lines += run_mode(
        "autopar forced to spawn, 2 workers",
        table,
        items,
        {"strategy": "spawn", "workers": 2},
        args.repeats,
        serial_s,
        expected,
    )
    lines += explain_with_initializer(table, items)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    lines += [f"Peak resident memory: this process {peak_mb:.0f} MB; largest child {children_mb:.0f} MB.", ""]
    print(lines[-2])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "shared_table.md").write_text("\n".join(lines))
    print(f"written to {RESULTS / 'shared_table.md'}")


if __name__ == "__main__":
    sys.exit(main())
