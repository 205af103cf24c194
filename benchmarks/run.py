"""Benchmark autopar's strategies, multiprocessing.Pool and joblib side by side on every workload.

Usage::

    python benchmarks/run.py                      # full run: writes benchmarks/results/results.{md,json} and chart.png
    python benchmarks/run.py --quick              # smaller inputs, 1 repeat: writes partial.{md,json,png}
    python benchmarks/run.py --only countdown,tiny --repeats 5

Two tables per workload (see benchmarks/README.md for the protocol):

* cold: every timed call starts from a fresh state, pool start-up included;
* warm: from a fresh state, one untimed call, then the timed call reuses
  whatever it left (pools, autopar's cached measurements, joblib's executor).

Times are medians over the repeats; ratios are times divided by another
time, so below 1 is better.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import json
import logging
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import warm_pool
from workloads import WORKLOADS, Workload, by_name, countdown

import autopar
import autopar._pools

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

WORKERS = 2
#: autopar strategies forced by name; the best of them on a workload is the "oracle".
FORCED = ("serial", "threads", "fork", "forkserver", "spawn")
CONTENDERS = (*FORCED, "mp.Pool", "joblib", "auto")
#: Targets checked on the cold table.
TARGET_AUTO_OVER_ORACLE = 1.10
TARGET_TINY_OVER_SERIAL = 1.2
TARGET_GEOMEAN_AUTO_OVER_JOBLIB = 0.8
TARGET_COUNTDOWN_SPEEDUP = 1.8


# --- keeping track of autopar's decisions ---------------------------------------------------------------------------


class DecisionLog(logging.Handler):
    """Keeps the Decision objects autopar logs at INFO when it chooses a strategy."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.decisions: list[autopar.Decision] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        self.decisions.extend(a for a in args if isinstance(a, autopar.Decision))


DECISIONS = DecisionLog()


def install_decision_log() -> None:
    """Route the decisions autopar logs at INFO into ``DECISIONS``, and only there."""
    logger = logging.getLogger("autopar")
    logger.setLevel(logging.INFO)
    logger.addHandler(DECISIONS)
    logger.propagate = False


def _short(decision: autopar.Decision | None) -> str:
    if decision is None:
        return "serial (input ran out during calibration)"
    return f"{decision.strategy} x{decision.workers}, chunk {decision.chunksize}"


# --- state resets ---------------------------------------------------------------------------------------------------


def _stop_joblib() -> None:
    if "joblib" not in sys.modules:
        return
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def fresh_state() -> None:
    """Forget every pool, cached measurement and measured start-up time, and joblib's executor, as in a new process."""
    _stop_joblib()
    warm_pool.fresh_autopar()


# --- how much parallelism the machine has to give right now -------------------------------------------------------


def _run_forked(n: int, count: int) -> float:
    """Seconds for ``count`` forked processes, started together, to each count down from ``n``."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=countdown, args=(n,)) for _ in range(count)]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return time.perf_counter() - started


def parallel_headroom(n: int = 3_000_000) -> float:
    """Speedup of ``WORKERS`` forked processes over one on pure-Python work, now (ideally ``WORKERS``).

    Both timings fork, so the cost of forking this process is on both sides.
    On a shared machine other processes take CPUs; no parallel contender can beat this figure.
    """
    one = _run_forked(n, 1)
    return WORKERS * one / _run_forked(n, WORKERS)


# --- contenders -----------------------------------------------------------------------------------------------------


def _autopar_call(strategy: str) -> Callable[[Callable[[Any], Any], list[Any]], list[Any]]:
    if strategy == "auto":
        return lambda func, items: autopar.map(func, items)
    if strategy in ("serial", "threads"):
        # threads keep autopar's default worker count, which exceeds the CPU count for waiting work
        return lambda func, items: autopar.map(func, items, strategy=strategy)
    return lambda func, items: autopar.map(func, items, strategy=strategy, workers=WORKERS)


def _joblib_call(func: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    from joblib import Parallel, delayed

    return list(Parallel(n_jobs=WORKERS)(delayed(func)(x) for x in items))


class _Runner:
    """Runs one contender on one workload, cold or warm."""

    def __init__(self, contender: str, workload: Workload, items: list[Any]) -> None:
        self.contender = contender
        self.func = workload.func
        self.items = items
        self._pool: Any = None

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, *, keep_pool: bool) -> list[Any]:
        """One call; ``keep_pool`` reuses a multiprocessing.Pool across calls (warm protocol)."""
        if self.contender == "mp.Pool":
            if not keep_pool:
                with multiprocessing.Pool(WORKERS) as pool:
                    return pool.map(self.func, self.items)
            if self._pool is None:
                self._pool = multiprocessing.Pool(WORKERS)
            return self._pool.map(self.func, self.items)
        if self.contender == "joblib":
            return _joblib_call(self.func, self.items)
        return _autopar_call(self.contender)(self.func, self.items)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None


class Cell:
    """The repeated timings of one contender on one workload."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.error: str | None = None
        self.decisions: list[str] = []
        #: The full text of each distinct decision, by its short form, in the order first seen.
        self.decision_texts: dict[str, str] = {}
        self.threads_seen: list[tuple[int, int]] = []

    @property
    def median(self) -> float | None:
        if self.error is not None or not self.times:
            return None
        return statistics.median(self.times)

    def to_dict(self) -> dict[str, Any]:
        return {
            "times_s": self.times,
            "median_s": self.median,
            "error": self.error,
            "decisions": self.decisions,
            "decision_texts": self.decision_texts,
            "threads_seen": self.threads_seen,
        }


def _timed(runner: _Runner, cell: Cell, expected: list[Any], *, keep_pool: bool, record: bool = True) -> None:
    """Time one call into ``cell`` (or only run it, for a warm-up); a wrong result or an exception becomes the error."""
    if cell.error is not None:
        return
    gc.collect()
    before = len(DECISIONS.decisions)
    # What fork's safety rule sees: threads of this process, less the idle ones of autopar's own pools.
    facts = autopar.probe_platform()
    own = autopar._pools.idle_threads()
    threads = (facts.python_threads - own, facts.native_threads - own)
    try:
        started = time.perf_counter()
        out = runner.call(keep_pool=keep_pool)
        elapsed = time.perf_counter() - started
    except Exception as exc:
        cell.error = f"{type(exc).__name__}: {exc}"[:200]
        return
    if out != expected:
        cell.error = "wrong results"
        return
    del out
    if runner.contender != "auto":
        if record:
            cell.times.append(elapsed)
        return
    new = DECISIONS.decisions[before:]
    decision = new[-1] if new else None
    short = _short(decision)
    if short not in cell.decision_texts:
        # The warm table's untimed call is the one that calibrates: its decision text shows the measurements.
        cell.decision_texts[short] = str(decision) if decision is not None else short
    if record:
        cell.times.append(elapsed)
        cell.threads_seen.append(threads)
        cell.decisions.append(short)


def import_everything() -> None:
    """Pay one-time costs (lazy imports of autopar's strategies, joblib and NumPy) before anything is timed."""
    for contender in CONTENDERS:
        with _Runner(contender, by_name("tiny"), [1, 2, 3, 4]) as runner:
            runner.call(keep_pool=False)
    fresh_state()


def bench(
    workload: Workload, items: list[Any], expected: list[Any], repeats: int, *, warm: bool, headroom: list[float]
) -> dict[str, Cell]:
    """Time every contender ``repeats`` times, interleaved, in an order rotated at each repeat.

    Each measurement starts from a fresh state.  Cold: the timed call is the first
    one.  Warm: an untimed call comes first and the timed call reuses what it left.
    Each repeat first measures the parallel headroom into ``headroom``.
    """
    cells = {c: Cell() for c in CONTENDERS}
    for r in range(repeats):
        headroom.append(parallel_headroom())
        order = CONTENDERS[r % len(CONTENDERS) :] + CONTENDERS[: r % len(CONTENDERS)]
        for contender in order:
            fresh_state()
            with _Runner(contender, workload, items) as runner:
                if warm:
                    _timed(runner, cells[contender], expected, keep_pool=True, record=False)
                _timed(runner, cells[contender], expected, keep_pool=warm)
        _progress(workload.name, "warm" if warm else "cold", r + 1, repeats)
    fresh_state()
    return cells


def _progress(name: str, table: str, done: int, total: int) -> None:
    print(f"  [{name}] {table} repeat {done}/{total} done", file=sys.stderr, flush=True)


# --- analysis -------------------------------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def _geomean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None and v > 0]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def _oracle(cells: dict[str, Cell]) -> tuple[str | None, float | None]:
    timed = [(cells[s].median, s) for s in FORCED if cells[s].median is not None]
    if not timed:
        return None, None
    best_s, best = min(timed)
    return best, best_s


def _auto_choice(cell: Cell) -> str:
    if cell.error is not None or not cell.decisions:
        return "-"
    counts: dict[str, int] = {}
    for d in cell.decisions:
        counts[d] = counts.get(d, 0) + 1
    if len(counts) == 1:
        return cell.decisions[0]
    return "; ".join(f"{d} ({n}/{len(cell.decisions)})" for d, n in counts.items())


def summarize(name: str, cells: dict[str, Cell], headroom: float | None = None) -> dict[str, Any]:
    serial = cells["serial"].median
    oracle, oracle_s = _oracle(cells)
    auto = cells["auto"].median
    joblib_s = cells["joblib"].median
    fork_unsafe = any(native > 1 or py > 1 for py, native in cells["auto"].threads_seen)
    return {
        "workload": name,
        "headroom": headroom,
        "serial_s": serial,
        "oracle": oracle,
        "oracle_s": oracle_s,
        "auto_s": auto,
        "auto_choice": _auto_choice(cells["auto"]),
        "auto_over_oracle": _ratio(auto, oracle_s),
        "joblib_s": joblib_s,
        "auto_over_joblib": _ratio(auto, joblib_s),
        "mp_pool_s": cells["mp.Pool"].median,
        "auto_over_serial": _ratio(auto, serial),
        "threads_at_auto": sorted(set(cells["auto"].threads_seen)),
        "fork_unsafe_at_auto": fork_unsafe,
    }


def check_targets(summaries: list[dict[str, Any]]) -> list[tuple[str, bool | None, str]]:
    """(target, met or None when not measured, detail) for each target."""
    checks: list[tuple[str, bool | None, str]] = []
    ratios = [(s["workload"], s["auto_over_oracle"]) for s in summaries]
    measured = [(n, r) for n, r in ratios if r is not None]
    misses = [f"{n} {r:.2f}x" for n, r in measured if r > TARGET_AUTO_OVER_ORACLE]
    detail = ("misses: " + ", ".join(misses)) if misses else f"all {len(measured)} workloads within"
    met = None if not measured else not misses
    checks.append((f"auto within {TARGET_AUTO_OVER_ORACLE:.2f}x of the oracle on every workload", met, detail))
    tiny = next((s for s in summaries if s["workload"] == "tiny"), None)
    if tiny is not None and tiny["auto_over_serial"] is not None:
        r = tiny["auto_over_serial"]
        checks.append(
            (f"tiny: auto at most {TARGET_TINY_OVER_SERIAL}x serial", r <= TARGET_TINY_OVER_SERIAL, f"{r:.2f}x")
        )
    else:
        checks.append((f"tiny: auto at most {TARGET_TINY_OVER_SERIAL}x serial", None, "not measured"))
    g = _geomean(s["auto_over_joblib"] for s in summaries)
    checks.append(
        (
            f"geometric mean of auto/joblib at most {TARGET_GEOMEAN_AUTO_OVER_JOBLIB}",
            None if g is None else g <= TARGET_GEOMEAN_AUTO_OVER_JOBLIB,
            "not measured" if g is None else f"{g:.2f}",
        )
    )
    cd = next((s for s in summaries if s["workload"] == "countdown"), None)
    if cd is not None and cd["auto_over_serial"]:
        speedup = 1 / cd["auto_over_serial"]
        checks.append(
            (
                f"countdown: auto at least {TARGET_COUNTDOWN_SPEEDUP}x faster than serial",
                speedup >= TARGET_COUNTDOWN_SPEEDUP,
                f"{speedup:.2f}x",
            )
        )
    else:
        checks.append(
            (f"countdown: auto at least {TARGET_COUNTDOWN_SPEEDUP}x faster than serial", None, "not measured")
        )
    return checks


# --- rendering ------------------------------------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _note(contender: str, cell: Cell, oracle: str | None) -> str:
    if cell.error is not None:
        return f"ERROR {cell.error}"
    notes = []
    if contender == oracle:
        notes.append("oracle")
    if contender == "auto":
        notes.append(f"chose {_auto_choice(cell)}")
    if len(cell.times) > 1:
        notes.append(f"range {min(cell.times):.3f}-{max(cell.times):.3f}")
    return "; ".join(notes)


def workload_rows(cells: dict[str, Cell]) -> list[list[str]]:
    serial = cells["serial"].median
    oracle, _ = _oracle(cells)
    return [
        [c, _s(cells[c].median), _x(_ratio(cells[c].median, serial)), _note(c, cells[c], oracle)] for c in CONTENDERS
    ]


WORKLOAD_HEAD = ["contender", "median s", "x serial", "notes"]
SUMMARY_HEAD = [
    "workload",
    "headroom",
    "serial s",
    "oracle",
    "oracle s",
    "auto chose",
    "auto s",
    "auto/oracle",
    "joblib s",
    "auto/joblib",
    "mp.Pool s",
    "auto x serial",
]


def summary_rows(summaries: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for s in summaries:
        choice = s["auto_choice"]
        if s["fork_unsafe_at_auto"]:
            choice += f" [fork unsafe: (Python, native) threads {s['threads_at_auto']}]"
        rows.append(
            [
                s["workload"],
                _x(s["headroom"]),
                _s(s["serial_s"]),
                s["oracle"] or "-",
                _s(s["oracle_s"]),
                choice,
                _s(s["auto_s"]),
                _x(s["auto_over_oracle"]),
                _s(s["joblib_s"]),
                _x(s["auto_over_joblib"]),
                _s(s["mp_pool_s"]),
                _x(s["auto_over_serial"]),
            ]
        )
    g = _geomean(s["auto_over_joblib"] for s in summaries)
    go = _geomean(s["auto_over_oracle"] for s in summaries)
    rows.append(["geomean", "", "", "", "", "", "", _x(go), "", _x(g), "", ""])
    return rows


def text_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join(lines)


def md_table(head: list[str], rows: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return str(cell).replace("|", "\\|")

    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines.extend("| " + " | ".join(esc(c) for c in r) + " |" for r in rows)
    return "\n".join(lines)


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _source_digest() -> str:
    """A short hash of the autopar sources this run imported, to tell runs of different working trees apart."""
    root = Path(autopar.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine_info() -> dict[str, Any]:
    facts = autopar.probe_platform()
    modified = _git("status", "--porcelain", "--", "../src")
    commit = _git("rev-parse", "--short", "HEAD")
    try:
        import joblib

        joblib_version = joblib.__version__
    except ImportError:
        joblib_version = "not installed"
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "cpu_count": f"os.cpu_count()={os.cpu_count()}, autopar.cpu_count()={autopar.cpu_count()}",
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "default_start_method": facts.default_start_method,
        "autopar": f"{autopar.__version__} (commit {commit or '?'}{', src/ modified in the working tree' if modified else ''}; "
        f"sources sha256 {_source_digest()}, imported from {Path(autopar.__file__).parent})",
        "joblib": joblib_version,
    }


def checks_md(checks: list[tuple[str, bool | None, str]]) -> str:
    mark = {True: "met", False: "MISSED", None: "not measured"}
    return md_table(["target", "result", "detail"], [[t, mark[m], d] for t, m, d in checks])


def checks_text(checks: list[tuple[str, bool | None, str]]) -> str:
    mark = {True: "met   ", False: "MISSED", None: "n/a   "}
    return "\n".join(f"  [{mark[m]}] {t}: {d}" for t, m, d in checks)


def write_chart(path: Path, tables: dict[str, dict[str, dict[str, Cell]]]) -> None:
    """Grouped bars of time / serial time per workload and contender, one panel per table, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(name, cells) for name, cells in tables.items() if cells]
    fig, axes = plt.subplots(len(panels), 1, figsize=(13, 4.5 * len(panels)), squeeze=False)
    width = 0.8 / len(CONTENDERS)
    for ax, (title, by_workload) in zip(axes[:, 0], panels, strict=True):
        names = list(by_workload)
        for k, contender in enumerate(CONTENDERS):
            xs, ys = [], []
            for i, name in enumerate(names):
                cells = by_workload[name]
                r = _ratio(cells[contender].median, cells["serial"].median)
                if r is not None:
                    xs.append(i - 0.4 + (k + 0.5) * width)
                    ys.append(r)
            style = {"edgecolor": "black", "linewidth": 1.2} if contender == "auto" else {}
            ax.bar(xs, ys, width, label=contender, **style)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names)
        ax.set_ylabel("time / serial time (log, lower is better)")
        ax.set_title(f"{title}: {WORKERS} workers (threads: autopar default), median of repeats")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0, 0].legend(ncol=len(CONTENDERS), fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main -----------------------------------------------------------------------------------------------------------


def _select(only: str | None) -> list[Workload]:
    if not only:
        return list(WORKLOADS)
    return [by_name(n.strip()) for n in only.split(",") if n.strip()]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed calls per contender (default 3, 1 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="inputs at a tenth of their size, 1 repeat")
    parser.add_argument("--only", metavar="NAME[,NAME]", help="run only these workloads")
    parser.add_argument("--no-warm", action="store_true", help="skip the warm table")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    # joblib imports NumPy, whose OpenBLAS would start an idle native thread in this process;
    # autopar counts native threads and leaves fork out of auto when there are any.  No workload
    # uses BLAS, so the harness keeps that thread from existing rather than let it sway the choice.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    install_decision_log()
    workloads = _select(args.only)
    scale = 0.1 if args.quick else 1.0
    partial = args.quick or bool(args.only)
    stem = "partial" if partial else "results"
    info = machine_info()
    digest_start = _source_digest()
    print("machine: " + "; ".join(f"{k} {v}" for k, v in info.items()))
    print(f"protocol: {WORKERS} workers, median of {args.repeats} repeat(s), scale {scale}\n")

    tables: dict[str, dict[str, dict[str, Cell]]] = {"cold": {}, "warm": {}}
    descriptions: dict[str, str] = {}
    loop_s: dict[str, float] = {}
    headroom: dict[str, float] = {}
    headroom_samples: dict[str, list[float]] = {}
    started = time.perf_counter()
    import_everything()
    for workload in workloads:
        items = workload.build(scale)
        descriptions[workload.name] = workload.description
        t0 = time.perf_counter()
        expected = [workload.func(x) for x in items]
        loop_s[workload.name] = time.perf_counter() - t0
        print(
            f"== {workload.name}: {workload.description} ({len(items)} items; plain loop {loop_s[workload.name]:.3f} s)"
        )
        samples = headroom_samples[workload.name] = []
        tables["cold"][workload.name] = bench(workload, items, expected, args.repeats, warm=False, headroom=samples)
        print("cold (every call from a fresh state, start-up included)")
        print(text_table(WORKLOAD_HEAD, workload_rows(tables["cold"][workload.name])))
        if not args.no_warm:
            tables["warm"][workload.name] = bench(workload, items, expected, args.repeats, warm=True, headroom=samples)
            print("warm (the second call from a fresh state: the first one is untimed)")
            print(text_table(WORKLOAD_HEAD, workload_rows(tables["warm"][workload.name])))
        headroom[workload.name] = statistics.median(samples)
        print(f"parallel headroom: median {headroom[workload.name]:.2f}x of {', '.join(f'{h:.2f}' for h in samples)}")
        print(flush=True)
        del items, expected
        gc.collect()

    try:
        pool_rows = warm_pool.measure(repeats=5)
    except Exception as exc:
        print(f"pool start-up measurement failed: {type(exc).__name__}: {exc}")
        pool_rows = []
    digest_end = _source_digest()
    if digest_end != digest_start:
        info["autopar"] += f"; SOURCES CHANGED DURING THE RUN (now sha256 {digest_end}): the results mix versions"
    info["load_average_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["wall_time"] = f"{time.perf_counter() - started:.0f} s"

    summaries = {
        t: [summarize(n, c, headroom.get(n)) for n, c in cells.items()] for t, cells in tables.items() if cells
    }
    checks = {t: check_targets(s) for t, s in summaries.items()}
    for table, rows in summaries.items():
        print(f"== summary, {table}")
        print(text_table(SUMMARY_HEAD, summary_rows(rows)))
        print(f"targets ({table}):")
        print(checks_text(checks[table]))
        print()
    print("== pool start-up: first call (cold) against second call (warm)")
    print(text_table(warm_pool.HEAD, warm_pool.rows(pool_rows)))

    RESULTS.mkdir(parents=True, exist_ok=True)
    write_markdown(
        RESULTS / f"{stem}.md", args, scale, info, descriptions, loop_s, headroom, tables, summaries, checks, pool_rows
    )
    dump = {
        "info": info,
        "repeats": args.repeats,
        "scale": scale,
        "plain_loop_s": loop_s,
        "parallel_headroom": headroom_samples,
        "tables": {
            t: {n: {c: cell.to_dict() for c, cell in cells.items()} for n, cells in by.items()}
            for t, by in tables.items()
        },
        "summaries": summaries,
        "checks": {t: [{"target": a, "met": b, "detail": c} for a, b, c in v] for t, v in checks.items()},
        "warm_pool": pool_rows,
    }
    (RESULTS / f"{stem}.json").write_text(json.dumps(dump, indent=1) + "\n")
    try:
        write_chart(RESULTS / ("chart.png" if not partial else "partial.png"), tables)
    except ImportError as exc:
        print(f"no chart: {exc}")
    print(f"\nwrote {RESULTS / stem}.md")
    return 0


def write_markdown(
    path: Path,
    args: argparse.Namespace,
    scale: float,
    info: dict[str, Any],
    descriptions: dict[str, str],
    loop_s: dict[str, float],
    headroom: dict[str, float],
    tables: dict[str, dict[str, dict[str, Cell]]],
    summaries: dict[str, list[dict[str, Any]]],
    checks: dict[str, list[tuple[str, bool | None, str]]],
    pool_rows: list[dict[str, Any]],
) -> None:
    out = ["# autopar benchmark results", ""]
    if scale != 1.0 or args.only:
        out += [f"Partial run (scale {scale}, workloads: {', '.join(descriptions)}).", ""]
    out += [
        f"{WORKERS} workers for every contender (autopar `threads` keeps its default worker count; `auto` chooses its own).",
        f"Times are medians of {args.repeats} timed call(s); `x serial` is time / autopar serial time, lower is better.",
        f"`headroom` is the speedup of {WORKERS} processes over one on pure-Python work, measured before each repeat "
        f"(ideally {WORKERS:.2f}x; lower means other processes were using the CPUs).",
        "See `benchmarks/README.md` for the protocol.",
        "",
        "## Machine",
        "",
        md_table(["", ""], [[k, str(v)] for k, v in info.items()]),
        "",
    ]
    for table, rows in summaries.items():
        title = "cold: every call from a fresh state" if table == "cold" else "warm: the second call from a fresh state"
        out += [f"## Summary, {title}", "", md_table(SUMMARY_HEAD, summary_rows(rows)), ""]
        out += [f"Targets ({table}):", "", checks_md(checks[table]), ""]
    out += [
        "## Pool start-up: first call against second call",
        "",
        md_table(warm_pool.HEAD, warm_pool.rows(pool_rows)),
        "",
    ]
    out += ["![time / serial time per workload and contender](chart.png)", ""] if path.stem == "results" else []
    out += ["## Per workload", ""]
    for name, description in descriptions.items():
        out += [
            f"### {name}",
            "",
            f"{description}; plain `[f(x) for x in items]` loop: {loop_s[name]:.3f} s; "
            f"parallel headroom (median, one sample before each repeat): {headroom[name]:.2f}x.",
            "",
        ]
        for table, by_workload in tables.items():
            if name in by_workload:
                out += [f"{table}:", "", md_table(WORKLOAD_HEAD, workload_rows(by_workload[name])), ""]
        for table, by_workload in tables.items():
            cell = by_workload.get(name, {}).get("auto")
            if cell is not None and cell.decision_texts:
                out += [f"autopar's decisions ({table} table), each distinct one once:", "", "```"]
                out += ["\n\n".join(cell.decision_texts.values()), "```", ""]
    path.write_text("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
