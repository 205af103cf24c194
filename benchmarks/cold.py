"""First calls, cold: autopar against every fixed strategy and joblib, a fresh interpreter per measurement.

Usage::

    python benchmarks/cold.py [--repeats N] [--only coarse,mixed] [--scale S]

Each measurement is a new interpreter that imports what it needs, builds the
items, then times one call (pool start-up included, shutdown not), so every
``auto`` time includes calibration and the first pool start, as a script run
once pays them.  The contenders are the fixed strategies a user could pick in
hindsight, at several worker counts: serial, ``ThreadPoolExecutor`` with 2, 8
and 32 threads, ``multiprocessing.Pool`` (fork) with 2, 4, 8 and 16 processes and
with forkserver, ``ProcessPoolExecutor`` and joblib (loky), against
``autopar.map``.  Contenders run interleaved within each repeat, in an order
rotated at each repeat.  Times are medians; each row gives autopar over the
best fixed strategy, and the last line the geometric mean of those ratios.
Each child then times the same call again, warm, as a program that calls it
twice would: autopar and joblib keep their pools (and autopar its measurements),
the fixed pools are reused (``WARM``), thread executors start afresh (threads
start in microseconds).  ``--no-warm`` skips it.
Results go to ``benchmarks/results/cold.md`` (and ``partial_cold.md`` for ``--only``).
"""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: Deadlock guard for one child interpreter, not a measurement.
CHILD_TIMEOUT_S = 300
TARGET_OVER_BEST = 1.10
TARGET_SMALL_S = 0.1
TARGET_SMALL_EXTRA_S = 0.010

#: name -> (untimed set-up, the timed statement that computes ``out`` from ``func`` and ``items``).
#: Pools are closed after the timed part, so worker processes never hold the child's output open.
CONTENDERS: dict[str, tuple[str, str]] = {
    "serial": ("", "out = [func(x) for x in items]"),
    "threads-2": ("from concurrent.futures import ThreadPoolExecutor as E", "out = list(E(2).map(func, items))"),
    "threads-8": ("from concurrent.futures import ThreadPoolExecutor as E", "out = list(E(8).map(func, items))"),
    "threads-32": ("from concurrent.futures import ThreadPoolExecutor as E", "out = list(E(32).map(func, items))"),
    "fork-2": (
        "import multiprocessing as mp",
        "pool = mp.get_context('fork').Pool(2); out = pool.map(func, items); CLOSE = pool.terminate",
    ),
    "fork-4": (
        "import multiprocessing as mp",
        "pool = mp.get_context('fork').Pool(4); out = pool.map(func, items); CLOSE = pool.terminate",
    ),
    "fork-8": (
        "import multiprocessing as mp",
        "pool = mp.get_context('fork').Pool(8); out = pool.map(func, items); CLOSE = pool.terminate",
    ),
    "fork-16": (
        "import multiprocessing as mp",
        "pool = mp.get_context('fork').Pool(16); out = pool.map(func, items); CLOSE = pool.terminate",
    ),
    "forkserver-2": (
        "import multiprocessing as mp",
        "pool = mp.get_context('forkserver').Pool(2); out = pool.map(func, items); CLOSE = pool.terminate",
    ),
    "ppe-2": (
        "from concurrent.futures import ProcessPoolExecutor as E",
        "ex = E(2); out = list(ex.map(func, items)); CLOSE = ex.shutdown",
    ),
    "joblib": (
        "from joblib import Parallel, delayed; from joblib.externals.loky import get_reusable_executor",
        "out = Parallel(n_jobs=2)(delayed(func)(x) for x in items); CLOSE = lambda: get_reusable_executor().shutdown()",
    ),
    # Imports are paid before timing by every contender; autopar loads its modules on first use, so
    # they are named here (the strategies' modules are otherwise imported inside the first call).
    "auto": (
        "import autopar, autopar._run, autopar._strategies._process._pool, autopar._strategies._threads",
        "out = autopar.map(func, items); CLOSE = autopar.shutdown",
    ),
}
FIXED = tuple(name for name in CONTENDERS if name != "auto")
#: The second, warm, call of the contenders that reuse the pool of their first; the others repeat theirs.
WARM: dict[str, str] = {
    **dict.fromkeys(("fork-2", "fork-4", "fork-8", "fork-16", "forkserver-2"), "out = pool.map(func, items)"),
    "ppe-2": "out = list(ex.map(func, items))",
}

_CHILD = """
import gc, hashlib, logging, sys, time
sys.path.insert(0, {here!r})
import cold_shapes
{prepare}
shape = cold_shapes.by_name({shape!r})
func, items = shape.func, shape.build({scale!r})
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record)
logging.getLogger("autopar").addHandler(Keep())
logging.getLogger("autopar").setLevel(logging.DEBUG)
# The items were just built: the first young-generation collection would traverse them (8 lists of a million
# ints: about 30 ms) in whichever contender allocates first, the program's cost whoever triggers it.
gc.collect()
started = time.perf_counter()
{statement}
elapsed = time.perf_counter() - started
calibration = [r.args[0].calibration_s for r in records if r.msg.startswith("autopar calibration:")]
decision = [r.getMessage().splitlines()[0] for r in records if r.getMessage().startswith("autopar decision")]
def digest_of(out):  # bytes by their own digest: the repr of 16 results of 20 MB took seconds per call
    return hashlib.sha1(repr([hashlib.sha1(x).hexdigest() if isinstance(x, bytes) else x for x in out]).encode()).hexdigest()
digest = digest_of(out)
warm = None
if {warm!r} is not None:
    started = time.perf_counter()
    exec({warm!r})
    warm = time.perf_counter() - started
    assert digest_of(out) == digest, "the warm call's results differ"
print(repr((elapsed, digest, calibration[:1], decision[:1], warm)), flush=True)
globals().get("CLOSE", lambda: None)()
"""


def _child(
    shape: str, contender: str, scale: float, warm: bool
) -> tuple[float, str, list[float], list[str], float | None]:
    prepare, statement = CONTENDERS[contender]
    again = WARM.get(contender, statement) if warm else None
    code = _CHILD.format(here=str(HERE), prepare=prepare, shape=shape, scale=scale, statement=statement, warm=again)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False
    )
    if done.returncode != 0 or not done.stdout.strip():
        msg = f"{shape}/{contender} failed: {done.stderr.strip()[-400:]}"
        raise RuntimeError(msg)
    elapsed, digest, calibration, decision, warm_s = eval(done.stdout.strip().splitlines()[-1])  # our own repr
    return elapsed, digest, calibration, decision, warm_s


def measure(shape: str, repeats: int, scale: float, names: list[str], warm: bool) -> dict[str, object]:
    """Median time per contender, cold and warm, autopar's calibration time and decision, and whether results agreed."""
    times: dict[str, list[float]] = {name: [] for name in names}
    warm_times: dict[str, list[float]] = {name: [] for name in names}
    digests: set[str] = set()
    calibrations: list[float] = []
    decisions: list[str] = []
    for repeat in range(repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            elapsed, digest, calibration, decision, warm_s = _child(shape, name, scale, warm)
            times[name].append(elapsed)
            if warm_s is not None:
                warm_times[name].append(warm_s)
            digests.add(digest)
            calibrations.extend(calibration)
            decisions.extend(decision)
    medians = {name: statistics.median(values) for name, values in times.items()}
    best = min((name for name in FIXED if name in medians), key=lambda name: medians[name])
    warm_medians = {name: statistics.median(values) for name, values in warm_times.items() if values}
    warm_best = min((name for name in FIXED if name in warm_medians), key=lambda name: warm_medians[name], default=None)
    return {
        "shape": shape,
        "warm_medians": warm_medians,
        "warm_best": warm_best,
        "medians": medians,
        "best": best,
        "ratio": medians["auto"] / medians[best],
        # Each repeat runs every contender once, in turn: the ratio within a repeat shares its noise.
        "paired": statistics.median(a / b for a, b in zip(times["auto"], times[best], strict=True)),
        "times": times,
        "serial_speedup": medians["serial"] / medians["auto"],
        "calibration_s": statistics.median(calibrations) if calibrations else None,
        "decision": decisions[-1] if decisions else "",
        "agree": len(digests) == 1,
    }


def meets(row: dict[str, object]) -> bool:
    """Within 1.10x of the best fixed strategy, or within +10 ms where that strategy takes under 0.1 s."""
    medians = row["medians"]
    assert isinstance(medians, dict)
    best_s, auto_s = medians[row["best"]], medians["auto"]
    if best_s < TARGET_SMALL_S:
        return bool(auto_s <= best_s + TARGET_SMALL_EXTRA_S)
    return bool(auto_s <= best_s * TARGET_OVER_BEST)


def _geomean(ratios: list[float]) -> float:
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else float("nan")


def warm_table(rows: list[dict[str, object]], names: list[str]) -> str:
    """The second calls: each contender's median, autopar over the best fixed one, and the same targets."""
    head = ["shape", *names, "best fixed", "auto / best", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ratios, timed = [], []
    for row in rows:
        medians, best = row["warm_medians"], row["warm_best"]
        assert isinstance(medians, dict)
        if best is None or "auto" not in medians:
            continue
        ratio = medians["auto"] / medians[best]
        ratios.append(ratio)
        if medians[best] >= TARGET_SMALL_S:
            timed.append(ratio)
        met = meets({"medians": medians, "best": best})
        cells = [str(row["shape"]), *(f"{medians[n]:.3f}" for n in names), str(best), f"{ratio:.2f}x"]
        lines.append("| " + " | ".join([*cells, "yes" if met else "no"]) + " |")
    if not ratios:
        return ""
    return "\n".join(
        [
            "## Second calls, warm",
            "",
            "The same call again in the same interpreter: autopar with its cached measurements and warm pool,",
            "joblib with its reusable executor, the fixed process pools reused, thread executors started afresh.",
            "",
            *lines,
            "",
            f"Geometric mean of auto / best: {_geomean(ratios):.2f}x over every row; "
            f"{_geomean(timed):.2f}x over the rows whose best takes at least 0.1 s.",
            "",
        ]
    )


def table(rows: list[dict[str, object]], repeats: int, scale: float, names: list[str]) -> str:
    head = ["shape", *names, "best fixed", "auto / best", "paired", "auto speed-up", "calibration", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        medians = row["medians"]
        assert isinstance(medians, dict)
        cal = row["calibration_s"]
        cells = [
            str(row["shape"]),
            *(f"{medians[name]:.3f}" for name in names),
            str(row["best"]),
            f"{row['ratio']:.2f}x",
            f"{row['paired']:.2f}x",
            f"{row['serial_speedup']:.2f}x",
            "-" if cal is None else f"{float(cal) * 1e3:.1f} ms",  # type: ignore[arg-type]
            ("yes" if meets(row) else "no") + ("" if row["agree"] else " (results differ!)"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    ratios = [float(row["ratio"]) for row in rows]  # type: ignore[arg-type]
    # A row whose best takes microseconds makes any ratio huge: the +10 ms target judges those.
    timed = [float(row["ratio"]) for row in rows if row["medians"][row["best"]] >= TARGET_SMALL_S]  # type: ignore[arg-type,index]
    machine = (
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, {platform.system()}"
    )
    out = [
        f"# First calls, cold ({dt.date.today().isoformat()})",
        "",
        f"{machine}; medians of {repeats} fresh interpreters per cell, seconds; scale {scale};"
        f" countdown at {int(os.environ.get('AUTOPAR_BENCH_STEPS_PER_S', 0)) / 1e6:.0f}M steps/s.",
        "auto / best: autopar over the best fixed strategy of the row; paired: the median over repeats of autopar's time",
        "over that strategy's in the same repeat (each repeat runs every contender in turn, so a slow spell of a shared",
        "machine slows both); auto speed-up: serial over autopar.",
        "",
        *lines,
        "",
        f"Geometric mean of auto / best: {_geomean(ratios):.2f}x over every row; {_geomean(timed):.2f}x over the rows whose best takes at least 0.1 s.",
        "",
        "autopar's decisions:",
        "",
        *(f"- {row['shape']}: {row['decision']}" for row in rows),
    ]
    return "\n".join(out) + "\n"


def compile_autopar() -> None:
    """Compile the bytecode of the autopar the children import, as a regular install does.

    Every contender but autopar is an installed package with its bytecode.  From a source tree
    where PYTHONDONTWRITEBYTECODE is set, or a fresh copy, each child would compile the modules
    autopar imports inside its first call, inside the timed part: 3-4 ms here that no installed autopar pays.
    """
    spec = importlib.util.find_spec("autopar")
    for where in (spec.submodule_search_locations or []) if spec else []:
        compileall.compile_dir(where, quiet=1)


def main() -> None:
    import cold_shapes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--contenders", default="", help="a comma-separated subset (auto is always run)")
    parser.add_argument("--no-warm", action="store_true", help="time first calls only")
    args = parser.parse_args()
    # Items of "0.2 s of countdown" take 0.2 s on this machine, in every child alike.
    os.environ.setdefault(cold_shapes.STEPS_ENV, str(cold_shapes.steps_per_s()))
    compile_autopar()
    shapes = [s.name for s in cold_shapes.SHAPES] if not args.only else args.only.split(",")
    names = list(CONTENDERS) if not args.contenders else [*args.contenders.split(","), "auto"]
    rows = []
    for name in shapes:
        rows.append(measure(name, args.repeats, args.scale, names, warm=not args.no_warm))
        print(f"{name}: auto {rows[-1]['ratio']:.2f}x the best ({rows[-1]['best']})", flush=True)
    text = table(rows, args.repeats, args.scale, names)
    warm = warm_table(rows, names)
    text = text if not warm else f"{text}\n{warm}"
    print(text)
    partial = args.only or args.scale != 1.0 or args.contenders
    stem = "partial_cold" if partial else "cold"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
