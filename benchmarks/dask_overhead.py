"""The dask strategy's overhead, and its break-even against local fork processes, on LocalClusters.

Usage::

    python benchmarks/dask_overhead.py [--repeats N] [--items N]

Needs the ``dask`` extra (``pip install -e ".[dask]"``).  Three parts:

1. Overhead: a trivial task's round trip through a ``distributed.Client``
   (median of 20), the time per task of 100 tasks submitted at once, and
   ``autopar.map`` over one item with ``strategy="dask"`` against
   ``strategy="fork"``, both on warm pools; plus what ``probe_cluster`` measures.
2. Same cores: ``--items`` items of pure-Python work (``countdown``) at
   per-item costs from 0.05 ms to 20 ms, by 2 fork workers and by a
   ``LocalCluster`` of 2 single-threaded worker processes on this machine.
   The cluster cannot win on the same cores: this is its cost over fork.
3. More slots: ``--items`` items that wait (``sleep_for``) from 0.05 ms to
   20 ms, by 2 fork workers and by a ``LocalCluster`` of 8 single-threaded
   worker processes: a cluster with four times the slots.  Waiting takes no
   CPU, so two cores can stand in for the bigger cluster.  The break-even is
   the per-item time from which the cluster is faster than fork.

Beside each dask time, the cost model's prediction from the probe's facts.
The fork runs happen in a spawned helper process started before any cluster
(forking in a process where Dask's threads run would be unsafe), one fork
run then one dask run, so both see the same machine load.  Medians over the
repeats.  The tables are printed and written to ``benchmarks/results/dask.md``
(overwritten).
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import platform
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import distributed
from autopar._costs import predict
from workloads import countdown, sleep_for

import autopar
from autopar._model import ClusterFacts, Measurements, Options
from autopar._strategies._dask import probe_cluster

RESULTS = Path(__file__).resolve().parent / "results"
PER_ITEM_MS = (0.05, 0.1, 0.3, 1.0, 3.0, 10.0, 20.0)
LOCAL_WORKERS = 2
MORE_SLOTS = 8
FUNCTIONS = {"countdown": countdown, "sleep_for": sleep_for}


def _noop(x: Any) -> Any:
    return x


def _timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


# -- fork, in a process without Dask threads -----------------------------------------


def _fork_server(conn: Any) -> None:
    """Time ``strategy="fork"`` calls on request; ``"serial"`` times a plain loop over the items."""
    functions = {**FUNCTIONS, "noop": _noop}
    while True:
        request = conn.recv()
        if request is None:
            autopar.shutdown()
            return
        how, name, items = request
        func = functions[name]
        started = time.perf_counter()
        if how == "serial":
            for item in items:
                func(item)
        else:
            autopar.map(func, items, strategy="fork", workers=LOCAL_WORKERS)
        conn.send(time.perf_counter() - started)


class ForkTimer:
    """A spawned process that runs and times fork calls, its pool kept warm between them."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_fork_server, args=(child,))
        self.process.start()
        child.close()

    def time(self, name: str, items: list[Any], how: str = "fork") -> float:
        self.conn.send((how, name, items))
        seconds: float = self.conn.recv()
        return seconds

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(60)


# -- dask ----------------------------------------------------------------------------


def _cluster(workers: int) -> Any:
    return distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )


def _predicted(name: str, n_items: int, item_s: float, workers: int, facts: ClusterFacts) -> float:
    """The cost model's seconds for a warm dask run with the probe's facts, chunked as the forced run is."""
    cpu_s = item_s if name == "countdown" else item_s * 0.01
    m = Measurements(
        n_items=n_items,
        item_wall_s=item_s,
        item_cpu_s=cpu_s,
        item_process_cpu_s=cpu_s,
        item_wall_max_s=item_s,
        item_pickle_bytes=20,
        result_pickle_bytes=20,
        func_pickle_bytes=40,
        warm_pools=frozenset({("dask", workers)}),
        cluster=facts,
    )
    chunksize = -(-n_items // (workers * 4))
    return predict("dask", workers, chunksize, m, autopar.probe_platform(), Options(workers=workers))


def overhead(fork: ForkTimer, client: Any) -> dict[str, Any]:
    """Raw round trip, time per task in a batch, one-item calls on warm pools, and the probe's facts."""
    client.submit(_noop, 0, pure=False).result()
    trips = [_timed(lambda: client.submit(_noop, 0, pure=False).result()) for _ in range(20)]
    started = time.perf_counter()
    client.gather([client.submit(_noop, i, pure=False) for i in range(100)])
    batch = (time.perf_counter() - started) / 100

    def one_item() -> float:
        return _timed(lambda: autopar.map(_noop, [1], strategy="dask", workers=LOCAL_WORKERS, dask=client))

    fork.time("noop", [1])
    one_item()
    return {
        "round_trip_s": statistics.median(trips),
        "batch_per_task_s": batch,
        "one_item_dask_s": statistics.median(one_item() for _ in range(20)),
        "one_item_fork_s": statistics.median(fork.time("noop", [1]) for _ in range(20)),
        "facts": probe_cluster(client),
    }


def sweep(fork: ForkTimer, client: Any, name: str, sizes: list[list[Any]], repeats: int) -> list[dict[str, Any]]:
    """Serial, fork and dask seconds per workload size (fork and dask interleaved), with dask's prediction."""
    facts = probe_cluster(client)
    workers = facts.total_threads
    rows = []
    for items in sizes:
        serial = fork.time(name, items, "serial")
        fork.time(name, items)  # warm-up, both
        autopar.map(FUNCTIONS[name], items, strategy="dask", workers=workers, dask=client)
        pairs = [
            (
                fork.time(name, items),
                _timed(lambda: autopar.map(FUNCTIONS[name], items, strategy="dask", workers=workers, dask=client)),  # noqa: B023 - called at once
            )
            for _ in range(repeats)
        ]
        rows.append(
            {
                "serial_s": serial,
                "fork_s": statistics.median(f for f, _ in pairs),
                "dask_s": statistics.median(d for _, d in pairs),
                "predicted_s": _predicted(name, len(items), serial / len(items), workers, facts),
            }
        )
    return rows


def measure(items: int, repeats: int) -> dict[str, Any]:
    """Every figure of the report."""
    per_ms = 200_000 / (min(_timed(lambda: countdown(200_000)) for _ in range(20)) * 1e3)
    cpu_sizes = [[max(1, round(ms * per_ms))] * items for ms in PER_ITEM_MS]
    wait_sizes = [[ms / 1e3] * items for ms in PER_ITEM_MS]
    fork = ForkTimer()  # started before any Dask thread runs here
    try:
        with _cluster(LOCAL_WORKERS) as cluster, distributed.Client(cluster, set_as_default=False) as client:
            costs = overhead(fork, client)
            same = sweep(fork, client, "countdown", cpu_sizes, repeats)
            autopar.shutdown()
        with _cluster(MORE_SLOTS) as cluster, distributed.Client(cluster, set_as_default=False) as client:
            client.wait_for_workers(MORE_SLOTS)
            more = sweep(fork, client, "sleep_for", wait_sizes, repeats)
            more_facts = probe_cluster(client)
            autopar.shutdown()
    finally:
        fork.close()
    return {"overhead": costs, "same": same, "more": more, "more_facts": more_facts}


# -- the report ----------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def _facts_line(facts: ClusterFacts) -> str:
    return (
        f"`probe_cluster` measured: round trip {_ms(facts.round_trip_s)} ms, {_ms(facts.task_overhead_s)} ms per task, "
        f"{facts.transfer_s_per_byte * 1e9:.2f} ns per byte ({1e-6 / facts.transfer_s_per_byte:,.0f} MB/s), "
        f"{facts.workers} workers x {facts.threads_per_worker} thread(s), processes={facts.processes}."
    )


def _table(rows: list[dict[str, Any]], items: int) -> list[str]:
    lines = [
        "| per item ms | serial s | fork s | dask s | dask - fork s | dask / fork | dask predicted s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r, ms in zip(rows, PER_ITEM_MS, strict=True):
        lines.append(
            f"| {r['serial_s'] / items * 1e3:.2g} ({ms:g}) | {r['serial_s']:.3f} | {r['fork_s']:.3f} | "
            f"{r['dask_s']:.3f} | {r['dask_s'] - r['fork_s']:+.3f} | {r['dask_s'] / r['fork_s']:.2f} | "
            f"{r['predicted_s']:.3f} |"
        )
    return lines


def _break_even(rows: list[dict[str, Any]], items: int) -> str:
    """The first size from which dask is faster than fork, in words."""
    for i, row in enumerate(rows):
        if all(r["dask_s"] < r["fork_s"] for r in rows[i:]):
            return (
                f"Break-even: from {row['serial_s'] / items * 1e3:.2g} ms per item "
                f"({row['serial_s']:.2f} s of serial work), the cluster is faster than fork "
                f"({row['dask_s']:.3f} s against {row['fork_s']:.3f} s)."
            )
    return "The cluster was never faster than fork over these sizes."


def report(items: int, repeats: int) -> str:
    runs = measure(items, repeats)
    costs = runs["overhead"]
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# The dask strategy: overhead and break-even",
        "",
        f"Written by `python benchmarks/dask_overhead.py` on {date}.",
        f"Python {platform.python_version()}, {platform.platform()}, os.cpu_count()={os.cpu_count()}, "
        f"distributed {version('distributed')}; LocalClusters of single-threaded worker processes on this machine "
        f"against {LOCAL_WORKERS} fork workers; {items} items per run, medians of {repeats} repeats; "
        f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        "",
        "## Overhead",
        "",
        f"A LocalCluster of {LOCAL_WORKERS} worker processes.",
        "",
        "| figure | ms |",
        "|---|---|",
        f"| round trip of one trivial task (`client.submit(...).result()`, median of 20) | {_ms(costs['round_trip_s'])} |",
        f"| per task, 100 trivial tasks submitted at once | {_ms(costs['batch_per_task_s'])} |",
        f'| `autopar.map` of one item, `strategy="dask"`, warm pool | {_ms(costs["one_item_dask_s"])} |',
        f'| `autopar.map` of one item, `strategy="fork"`, warm pool | {_ms(costs["one_item_fork_s"])} |',
        "",
        _facts_line(costs["facts"]),
        "",
        "## Same cores: pure Python on 2 fork workers against 2 Dask worker processes",
        "",
        "Per item: measured serially (nominal in brackets).",
        "",
        *_table(runs["same"], items),
        "",
        f"## More slots: waiting items on 2 fork workers against {MORE_SLOTS} Dask worker processes",
        "",
        *_table(runs["more"], items),
        "",
        _facts_line(runs["more_facts"]),
        "",
        _break_even(runs["more"], items),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size (default 5)")
    parser.add_argument("--items", type=int, default=200, help="items per run (default 200)")
    args = parser.parse_args(argv)
    text = report(args.items, args.repeats)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "dask.md"
    path.write_text(text)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
