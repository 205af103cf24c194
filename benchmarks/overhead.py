"""What choosing costs: calibration and the decision on a first call, the cached decision on a second.

Usage::

    python benchmarks/overhead.py [--repeats N] [--only NAME[,NAME]]

1. *Budget of a first call.*  Each workload of ``workloads.py`` is scaled until
   its plain serial loop takes at least ``MIN_SERIAL_S`` (1 s).  From a fresh
   state, autopar auto runs it; then, from a fresh state, the strategy, worker
   count and chunk size auto chose run it forced, which skips calibration and the
   decision.  The difference of the medians is what calibration and the decision
   cost that call.  The items calibration ran are not lost (their results are
   kept); their cost is running alone, in the caller, before any pool starts.
   The wall time calibration took (``Measurements.calibration_s``, useful work
   included) is shown as an upper bound.
2. *Decision overhead of a second call.*  For a calibrated function, the time
   ``map`` spends before running anything (cache lookup, platform facts, the
   decision) is timed on its own, and end to end: auto against forced serial on
   work auto runs serially, many calls interleaved, the median of the differences.

Times are medians over repeats; each repeat runs auto, then its choice forced.
The tables are printed and written to ``benchmarks/results/overhead.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import warm_pool
from run import DECISIONS, install_decision_log
from workloads import WORKLOADS, Workload, by_name, square

import autopar
from autopar import _run
from autopar._config import resolve

RESULTS = Path(__file__).resolve().parent / "results"
#: The budget applies to workloads whose serial time is at least this.
MIN_SERIAL_S = 1.0
#: Largest scale tried: a workload still below ``MIN_SERIAL_S`` at this scale is left out.
MAX_SCALE = 8.0
TARGET_BUDGET = 0.05
TARGET_SECOND_CALL_S = 1e-3
SECOND_CALL_ITEMS = 200_000
SECOND_CALL_PAIRS = 60


def _loop_s(workload: Workload, items: list[Any]) -> float:
    started = time.perf_counter()
    for x in items:
        workload.func(x)
    return time.perf_counter() - started


def scaled(workload: Workload) -> tuple[float, list[Any], float] | None:
    """(scale, items, serial seconds) with a serial loop of at least ``MIN_SERIAL_S``, or None past ``MAX_SCALE``."""
    scale = 1.0
    while scale <= MAX_SCALE:
        items = workload.build(scale)
        loop = _loop_s(workload, items)
        if loop >= MIN_SERIAL_S:
            return scale, items, loop
        scale = min(MAX_SCALE + 1, math.ceil(scale * MIN_SERIAL_S * 1.2 / max(loop, 1e-3) * 2) / 2)
    return None


def _timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _forced(workload: Workload, items: list[Any], strategy: str, workers: int, chunksize: int | None) -> Any:
    return autopar.map(workload.func, items, strategy=strategy, workers=workers, chunksize=chunksize)


def budget(workload: Workload, repeats: int) -> dict[str, Any] | None:
    """Auto against the same choice forced, both cold, on the workload scaled past ``MIN_SERIAL_S``."""
    found = scaled(workload)
    if found is None:
        return None
    scale, items, loop = found
    auto_s: list[float] = []
    forced_s: list[float] = []
    calibration_s: list[float] = []
    choices: list[str] = []
    for _ in range(repeats):
        warm_pool.fresh_autopar()
        before = len(DECISIONS.decisions)
        auto_s.append(_timed(lambda: autopar.map(workload.func, items)))
        decision = DECISIONS.decisions[-1] if len(DECISIONS.decisions) > before else None
        if decision is None:  # the input ran out during calibration
            strategy, workers, chunksize = "serial", 1, None
        else:
            strategy, workers, chunksize = decision.strategy, decision.workers, decision.chunksize
            if decision.measurements is not None:
                calibration_s.append(decision.measurements.calibration_s)
        choices.append(f"{strategy} x{workers}, chunk {chunksize}")
        warm_pool.fresh_autopar()
        forced_s.append(_timed(lambda s=strategy, w=workers, c=chunksize: _forced(workload, items, s, w, c)))
    warm_pool.fresh_autopar()
    auto = statistics.median(auto_s)
    forced = statistics.median(forced_s)
    return {
        "workload": workload.name,
        "scale": scale,
        "serial_s": loop,
        "choices": sorted(set(choices)),
        "auto_s": auto,
        "forced_s": forced,
        "cost_s": auto - forced,
        "cost_share": (auto - forced) / auto,
        "calibration_s": statistics.median(calibration_s) if calibration_s else 0.0,
        "auto_all_s": auto_s,
        "forced_all_s": forced_s,
    }


def second_call(pairs: int = SECOND_CALL_PAIRS) -> dict[str, float]:
    """The planning time of a cached call, alone and end to end (auto against forced serial)."""
    warm_pool.fresh_autopar()
    items = list(range(SECOND_CALL_ITEMS))
    autopar.map(square, items)  # calibrates; the decision is cached
    plans = []
    for _ in range(200):
        started = time.perf_counter()
        call = _run._Call(square, items, resolve({}))
        call.plan()
        plans.append(time.perf_counter() - started)
        call.close()
    diffs = []
    for i in range(pairs):
        order = ("auto", "serial") if i % 2 == 0 else ("serial", "auto")
        times = {}
        for side in order:
            if side == "auto":
                times[side] = _timed(lambda: autopar.map(square, items))
            else:
                times[side] = _timed(lambda: autopar.map(square, items, strategy="serial"))
        diffs.append(times["auto"] - times["serial"])
    warm_pool.fresh_autopar()
    return {"plan_s": statistics.median(plans), "end_to_end_s": statistics.median(diffs)}


# --- output -----------------------------------------------------------------------------------------------------------

BUDGET_HEAD = [
    "workload",
    "scale",
    "serial s",
    "auto chose",
    "auto s",
    "same choice forced s",
    "cost s",
    "cost / auto",
    "calibration wall s",
]


def budget_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            r["workload"],
            f"{r['scale']:g}",
            f"{r['serial_s']:.2f}",
            "; ".join(r["choices"]),
            f"{r['auto_s']:.3f}",
            f"{r['forced_s']:.3f}",
            f"{r['cost_s']:+.3f}",
            f"{r['cost_share']:+.1%}",
            f"{r['calibration_s']:.3f}",
        ]
        for r in rows
    ]


def checks(rows: list[dict[str, Any]], second: dict[str, float]) -> list[tuple[str, bool, str]]:
    over = [f"{r['workload']} {r['cost_share']:.1%}" for r in rows if r["cost_share"] > TARGET_BUDGET]
    return [
        (
            f"calibration and decision cost at most {TARGET_BUDGET:.0%} of every run of 1 s or more",
            not over,
            ("over: " + ", ".join(over)) if over else f"all {len(rows)} workloads within",
        ),
        (
            "a second call adds under 1 ms of decision overhead",
            second["plan_s"] < TARGET_SECOND_CALL_S and second["end_to_end_s"] < TARGET_SECOND_CALL_S,
            f"planning {second['plan_s'] * 1e6:.0f} us; end to end {second['end_to_end_s'] * 1e6:+.0f} us",
        ),
    ]


def _table(head: list[str], rows: list[list[str]], md: bool) -> str:
    if md:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def render(rows: list[dict[str, Any]], second: dict[str, float], repeats: int, md: bool) -> str:
    out = []
    if md:
        out.append("# What choosing costs\n")
        out.append(
            f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; CPython {platform.python_version()}; "
            f"{os.cpu_count()} CPUs; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
            f"median of {repeats} repeats.\n"
        )
        out.append("Produced by `benchmarks/overhead.py`; its docstring describes the protocol.\n")
        out.append("## First call: calibration and decision, on workloads of 1 s or more serially\n")
    else:
        out.append("first call: calibration and decision (cold; auto against the same choice forced)")
    out.append(_table(BUDGET_HEAD, budget_rows(rows), md))
    out.append("")
    if md:
        out.append("## Second call: the cached decision\n")
    line = (
        f"planning a cached call (cache lookup, platform facts, decision): median {second['plan_s'] * 1e6:.0f} us; "
        f"end to end, auto minus forced serial on {SECOND_CALL_ITEMS:,} tiny items: median {second['end_to_end_s'] * 1e6:+.0f} us"
    )
    out.append(line + "\n")
    out.append("## Targets\n" if md else "targets:")
    for name, met, detail in checks(rows, second):
        out.append(f"{'- ' if md else '  '}[{'met' if met else 'MISSED'}] {name}: {detail}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per side and workload (default 3)")
    parser.add_argument("--only", metavar="NAME[,NAME]", help="run only these workloads")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    install_decision_log()
    workloads = [by_name(n.strip()) for n in args.only.split(",")] if args.only else list(WORKLOADS)
    autopar.map(square, range(8), strategy="fork", workers=2)  # lazy imports paid before timing
    rows = []
    for workload in workloads:
        row = budget(workload, args.repeats)
        if row is None:
            print(
                f"  [{workload.name}] below {MIN_SERIAL_S} s serially even at scale {MAX_SCALE:g}: left out",
                file=sys.stderr,
            )
            continue
        rows.append(row)
        print(
            f"  [{workload.name}] cost {row['cost_share']:+.1%} of {row['auto_s']:.3f} s", file=sys.stderr, flush=True
        )
    second = second_call()
    print(render(rows, second, args.repeats, md=False))
    if not args.only:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "overhead.md").write_text(render(rows, second, args.repeats, md=True))
        print(f"wrote {RESULTS / 'overhead.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
