"""What ``report=True`` costs: the same call recorded and not, under serial, threads and a fork pool.

Usage::

    python benchmarks/report_overhead.py [--repeats N] [--items N] [--before PATH]

1. *Recording on a call of 10,000 items of 1 ms* (the issue's budget: under 2%
   of the call's wall time).  Each item is a pure-Python busy loop of 1 ms (it
   holds the GIL, as a real computation does; a sleep would hide any cost that
   competes for it).  Each strategy is forced with its worker count and chunk
   size, so nothing but ``report`` changes between the two timings; recorded and
   unrecorded calls alternate within each repeat, and the pool is warm (started
   by an untimed call first).  Medians over the repeats; the cost is the median
   of the per-repeat differences, over the median unrecorded time.
2. *Recording on tiny items* (100,000 trivial items, chunks of 100), where the
   per-item and per-chunk bookkeeping is as large a share of the call as it
   gets: not a budget, the worst case to know about.  Each timing is the median
   of 7 calls in a row.
3. *Off against another checkout* (``--before PATH``, e.g. an export of the
   main branch): the unrecorded calls of parts 1 and 2, each repeat in a fresh
   child interpreter with ``PATH/src``, then this tree's ``src``, first on its
   path (both in children, so neither inherits the other's heap), so "nothing
   when off" is measured rather than argued.

The load average (``os.getloadavg()``) is read before and after and printed
with the table, which is written to ``benchmarks/results/report_overhead.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import autopar

RESULTS = Path(__file__).resolve().parent / "results"
#: (strategy, workers, chunksize) of part 1; fork's chunks are about 50 ms of work.
CONTENDERS = (("serial", 1, 50), ("threads", 2, 50), ("fork", 2, 50))
ITEM_S = 0.001
TINY_ITEMS = 100_000
TINY_CHUNK = 100
#: Calls of part 2 per timing, whose median is kept.
TINY_CALLS = 7
BUDGET = 0.02
#: Deadlock guard for a child interpreter, not a measurement.
CHILD_TIMEOUT_S = 900


def busy_1ms(x: int) -> int:
    """Keep the CPU busy for 1 ms in pure Python (holding the GIL), then return x."""
    until = time.perf_counter() + ITEM_S
    while time.perf_counter() < until:
        pass
    return x


def tiny(x: int) -> int:
    """Trivial work: the call is all dispatch."""
    return x + 1


def _timed(func: Any, items: range, strategy: str, workers: int, chunksize: int, report: bool) -> float:
    recorded = {"report": True} if report else {}  # an unrecorded call passes nothing: older trees lack the option
    started = time.perf_counter()
    autopar.map(func, items, strategy=strategy, workers=workers, chunksize=chunksize, **recorded)
    return time.perf_counter() - started


def measure(
    func: Any, items: range, contenders: Any, modes: tuple[bool, ...], into: dict[str, Any], calls: int = 1
) -> dict[str, Any]:
    """One repeat: append to ``into[strategy]["off"|"on"]`` a timing per mode, in the order ``modes`` gives.

    Each timing is the median of ``calls`` calls in a row (short calls are noisy: thread hand-offs).
    """
    for strategy, workers, chunksize in contenders:
        autopar.map(func, range(workers * chunksize), strategy=strategy, workers=workers, chunksize=chunksize)  # warm
        per = into.setdefault(strategy, {"off": [], "on": []})
        for report in modes:
            timings = [_timed(func, items, strategy, workers, chunksize, report) for _ in range(calls)]
            per["on" if report else "off"].append(statistics.median(timings))
    autopar.shutdown()
    return into


def _cost(off: list[float], on: list[float]) -> tuple[float, float]:
    """(median on-minus-off difference, over the median off), from paired repeats."""
    diffs = [b - a for a, b in zip(off, on, strict=True)]
    return statistics.median(diffs), statistics.median(diffs) / statistics.median(off)


def _child_off(path: str, repeats: int, items: int) -> dict[str, Any]:
    """Unrecorded timings of parts 1 and 2 under the autopar of ``path``."""
    env = {**os.environ, "PYTHONPATH": os.path.join(path, "src")}
    args = [sys.executable, __file__, "--child-off", "--repeats", str(repeats), "--items", str(items)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=True)
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def _repeat(items: int, modes: tuple[bool, ...], into: dict[str, Any]) -> dict[str, Any]:
    """One repeat of parts 1 and 2, appended to ``into``."""
    measure(busy_1ms, range(items), CONTENDERS, modes, into.setdefault("main", {}))
    tiny_contenders = [(s, w, TINY_CHUNK) for s, w, _ in CONTENDERS]
    measure(tiny, range(TINY_ITEMS), tiny_contenders, modes, into.setdefault("tiny", {}), calls=TINY_CALLS)
    return into


def _merge(into: dict[str, Any], repeat: dict[str, Any]) -> None:
    """Append one child's unrecorded timings to ``into``."""
    for part, per in repeat.items():
        for strategy, times in per.items():
            into.setdefault(part, {}).setdefault(strategy, {"off": [], "on": []})["off"] += times["off"]


def _rows(times: dict[str, Any], budget: float | None) -> list[str]:
    rows = []
    for strategy, per in times.items():
        off, on = statistics.median(per["off"]), statistics.median(per["on"])
        diff, share = _cost(per["off"], per["on"])
        verdict = "" if budget is None else (" | met" if share < budget else " | MISSED")
        rows.append(
            f"| {strategy} | {off:.3f} | {on:.3f} | {on / off:.4f} | {diff * 1e3:+.1f} | {share:+.2%}{verdict} |"
        )
    return rows


def _before_rows(after: dict[str, Any], before: dict[str, Any]) -> list[str]:
    rows = []
    for part in ("main", "tiny"):
        for strategy, per in after[part].items():
            a, b = statistics.median(before[part][strategy]["off"]), statistics.median(per["off"])
            rows.append(f"| {part} | {strategy} | {a:.4f} | {b:.4f} | {b / a:.4f} |")
    return rows


def render(args: argparse.Namespace, mine: Any, before: Any, after: Any, loads: tuple[Any, Any]) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = " / ".join(" ".join(f"{x:.2f}" for x in la) for la in loads)
    lines = [
        "# What report=True costs",
        "",
        f"{stamp}; CPython {platform.python_version()}; {os.cpu_count()} CPUs; "
        f"load average (1, 5, 15 min) before / after: {load}; median of {args.repeats} repeats.",
        "",
        "Produced by `benchmarks/report_overhead.py`; its docstring describes the protocol.",
        "",
        f"## {args.items:,} items of 1 ms (budget: recording under {BUDGET:.0%} of the wall time)",
        "",
        "| strategy | off s | on s | on / off | cost ms | cost / off | budget |",
        "|---|---|---|---|---|---|---|",
        *_rows(mine["main"], BUDGET),
        "",
        f"## {TINY_ITEMS:,} trivial items, chunks of {TINY_CHUNK} (the worst case: no budget)",
        "",
        "| strategy | off s | on s | on / off | cost ms | cost / off |",
        "|---|---|---|---|---|---|",
        *_rows(mine["tiny"], None),
    ]
    if before is not None:
        lines += [
            "",
            f"## Off: this tree against `{args.before}`, each repeat in a fresh interpreter",
            "",
            "| workload | strategy | before s | this tree s | this / before |",
            "|---|---|---|---|---|",
            *_before_rows(after, before),
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--before", help="a checkout whose unrecorded calls to compare with")
    parser.add_argument("--child-off", action="store_true", help=argparse.SUPPRESS)  # one repeat, unrecorded only
    args = parser.parse_args()
    if args.child_off:
        print(json.dumps(_repeat(args.items, (False,), {})))
        return
    load_before = os.getloadavg()
    mine: dict[str, Any] = {}
    before: dict[str, Any] | None = {} if args.before else None
    after: dict[str, Any] = {}
    for i in range(args.repeats):
        if before is not None:
            _merge(before, _child_off(args.before, 1, args.items))
            _merge(after, _child_off(str(Path(__file__).resolve().parents[1]), 1, args.items))
        _repeat(args.items, (False, True) if i % 2 == 0 else (True, False), mine)
    text = render(args, mine, before, after, (load_before, os.getloadavg()))
    print(text)
    if args.items == 10_000:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "report_overhead.md").write_text(text)


if __name__ == "__main__":
    main()
