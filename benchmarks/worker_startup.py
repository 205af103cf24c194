"""Worker start-up, cold, for two source trees side by side: what a spawn or forkserver worker pays before its first item.

Usage::

    python benchmarks/worker_startup.py --before PATH --after PATH [--repeats N]

Each PATH is a checkout root; its ``src`` goes first on ``PYTHONPATH`` of the
child interpreters.  Every measurement is a fresh interpreter that imports
autopar and calls ``autopar.map(f, [1, 2], strategy=..., workers=2)`` once, so
the pool (and forkserver's server) starts inside the timed call.  ``f`` lives in
a module written to a temporary directory and reports, from inside the worker,
``len(sys.modules)`` and which autopar and notable modules are loaded.  Trees
and strategies are interleaved within each repeat.  Medians with min-max; the
ratio is after/before, so below 1 is better.  The table is printed and written
to ``benchmarks/results/worker_startup.md``.
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
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
STRATEGIES = ("spawn", "forkserver")
WORKERS = 2
#: Modules a worker should not need for ``f``: each is worth knowing about when it is there.
NOTABLE = ("asyncio", "psutil", "attrs", "concurrent.futures.process", "numpy")
#: Deadlock guard for one child interpreter, not a measurement.
CHILD_TIMEOUT_S = 120

#: The module of the mapped function: importable by name in every worker, unlike ``__main__``.
JOB_MODULE = f'''\
"""The function the worker start-up benchmark maps: it reports what the worker has loaded."""

import sys

NOTABLE = {NOTABLE!r}


def f(x):
    return {{
        "x": x,
        "modules": len(sys.modules),
        "autopar_modules": sorted(m for m in sys.modules if m == "autopar" or m.startswith("autopar.")),
        "notable": [m for m in NOTABLE if m in sys.modules],
        "autopar_file": getattr(sys.modules.get("autopar"), "__file__", None),
    }}
'''

#: One measurement, run in a fresh interpreter: argv is (strategy, the tree's src directory, workers).
DRIVER = textwrap.dedent(
    """
    import json, os, sys, time

    strategy, src, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # No other autopar on the path may shadow the tree under test (an editable install, for one);
    # spawn and forkserver children get this same sys.path.
    sys.path[:] = [p for p in sys.path if p == src or not os.path.isfile(os.path.join(p or ".", "autopar", "__init__.py"))]
    started = time.perf_counter()
    import autopar
    import_s = time.perf_counter() - started
    caller_modules = len(sys.modules)
    import startup_job

    first = []

    def progress(done, total):
        if done and not first:
            first.append(time.perf_counter())

    call_at = time.perf_counter()
    results = autopar.map(startup_job.f, [1, 2], strategy=strategy, workers=workers, progress=progress)
    end_at = time.perf_counter()
    print(json.dumps({
        "import_s": import_s,
        "caller_modules": caller_modules,
        "autopar_file": autopar.__file__,
        "map_s": end_at - call_at,
        "first_result_s": first[0] - call_at,
        "worker": results[0],
    }))
    """
)


def _measure(root: Path, strategy: str, job_dir: Path) -> dict[str, Any]:
    """One cold measurement of ``strategy`` on the tree at ``root``, in a fresh interpreter."""
    src = str(root / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(job_dir)])}
    for name in [n for n in env if n.startswith("AUTOPAR_")]:
        del env[name]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, strategy, src, str(WORKERS)],
        cwd=job_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    process_s = time.perf_counter() - started
    if done.returncode != 0:
        msg = f"{strategy} on {root} failed with exit status {done.returncode}:\n{done.stderr}"
        raise RuntimeError(msg)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = process_s
    for where, path in (("caller", result["autopar_file"]), ("worker", result["worker"]["autopar_file"])):
        if path is None or not Path(path).resolve().is_relative_to(Path(src).resolve()):
            msg = f"the {where} imported autopar from {path}, not from {src}"
            raise RuntimeError(msg)
    return result


def measure(trees: dict[str, Path], repeats: int, job_dir: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every measurement, by (tree label, strategy); the order of the trees alternates between repeats."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {(t, s): [] for t in trees for s in STRATEGIES}
    labels = list(trees)
    for repeat in range(repeats):
        order = labels if repeat % 2 == 0 else labels[::-1]
        for strategy in STRATEGIES:
            for label in order:
                runs[label, strategy].append(_measure(trees[label], strategy, job_dir))
        print(f"repeat {repeat + 1}/{repeats} done", flush=True)
    return runs


# --- tables ---------------------------------------------------------------------------------------------------------

#: (row label, how to read the value out of one measurement, format of a value).
METRICS: tuple[tuple[str, Any, str], ...] = (
    ("map, cold (s)", lambda r: r["map_s"], "{:.3f}"),
    ("pool start to first result (s)", lambda r: r["first_result_s"], "{:.3f}"),
    ("whole child process (s)", lambda r: r["process_s"], "{:.3f}"),
    ("import autopar in the caller (s)", lambda r: r["import_s"], "{:.4f}"),
    ("caller sys.modules after import", lambda r: r["caller_modules"], "{:.0f}"),
    ("worker sys.modules at first item", lambda r: r["worker"]["modules"], "{:.0f}"),
    ("worker autopar modules", lambda r: len(r["worker"]["autopar_modules"]), "{:.0f}"),
)
HEAD = ["strategy", "measure", "before: median (min-max)", "after: median (min-max)", "after/before"]


def _cell(values: list[float], fmt: str) -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def rows(runs: dict[tuple[str, str], list[dict[str, Any]]]) -> list[list[str]]:
    """One row per strategy and measure: medians with their range, and the ratio of the medians."""
    out = []
    for strategy in STRATEGIES:
        for label, read, fmt in METRICS:
            before = [float(read(r)) for r in runs["before", strategy]]
            after = [float(read(r)) for r in runs["after", strategy]]
            b, a = statistics.median(before), statistics.median(after)
            ratio = f"{a / b:.2f}x" if b else "-"
            out.append([strategy, label, _cell(before, fmt), _cell(after, fmt), ratio])
    return out


def _most_common(values: list[list[str]]) -> str:
    """The most frequent list among the repeats, as text, with how many repeats saw it."""
    counts = Counter(tuple(v) for v in values)
    common, seen = counts.most_common(1)[0]
    text = ", ".join(common) or "none"
    return text if seen == len(values) else f"{text} ({seen} of {len(values)} repeats)"


def loaded_rows(runs: dict[tuple[str, str], list[dict[str, Any]]]) -> list[list[str]]:
    """Per strategy and tree: the notable modules and the autopar modules loaded in the worker at its first item."""
    out = []
    for strategy in STRATEGIES:
        for label in ("before", "after"):
            workers = [r["worker"] for r in runs[label, strategy]]
            out.append(
                [
                    strategy,
                    label,
                    _most_common([w["notable"] for w in workers]),
                    _most_common([w["autopar_modules"] for w in workers]),
                ]
            )
    return out


def md_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines.extend("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body)
    return "\n".join(lines)


# --- report ---------------------------------------------------------------------------------------------------------


def _git_commit(root: Path) -> str:
    """The checked-out commit of ``root``, marked when its ``src`` differs from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "not a git checkout"
    return commit + (", src/ modified" if git("status", "--porcelain", "--", "src") else "")


def report(trees: dict[str, Path], runs: dict[tuple[str, str], list[dict[str, Any]]], repeats: int) -> str:
    """The Markdown text of the results: machine, trees, the timing table and the modules loaded in workers."""
    machine = (
        f"Python {platform.python_version()} ({sys.executable}), {platform.platform()}, "
        f"os.cpu_count()={os.cpu_count()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}."
    )
    files = {label: runs[label, STRATEGIES[0]][0]["autopar_file"] for label in trees}
    lines = [
        "# Worker start-up: before and after",
        "",
        f"Written by `python benchmarks/worker_startup.py` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        machine,
        f"`autopar.map(f, [1, 2], strategy=..., workers={WORKERS})`, each in a fresh interpreter, "
        f"{repeats} repeats: medians, with min-max; after/before below 1 is better.",
        "See `benchmarks/README.md` for what each row measures.",
        "",
        md_table(
            ["tree", "path", "commit", "autopar imported from"],
            [[label, str(trees[label]), _git_commit(trees[label]), files[label]] for label in trees],
        ),
        "",
        md_table(HEAD, rows(runs)),
        "",
        "Loaded in the worker when it runs its first item:",
        "",
        md_table(["strategy", "tree", f"of {', '.join(NOTABLE)}", "autopar modules"], loaded_rows(runs)),
        "",
    ]
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout root of the tree to compare against")
    parser.add_argument("--after", type=Path, required=True, help="checkout root of the tree under test")
    parser.add_argument("--repeats", type=int, default=7, help="fresh interpreters per tree and strategy (default 7)")
    parser.add_argument("--out", type=Path, default=RESULTS / "worker_startup.md", help="where to write the table")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be at least 5: medians of fewer cold runs are noise here")
    for name in ("before", "after"):
        root = getattr(args, name).resolve()
        if not (root / "src" / "autopar" / "__init__.py").is_file():
            parser.error(f"--{name} {root}: no src/autopar/__init__.py under it")
        setattr(args, name, root)
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    trees = {"before": args.before, "after": args.after}
    with tempfile.TemporaryDirectory(prefix="autopar-startup-") as job_dir:
        (Path(job_dir) / "startup_job.py").write_text(JOB_MODULE)
        runs = measure(trees, args.repeats, Path(job_dir))
    for label in trees:
        print(f"{label}: autopar imported from {runs[label, STRATEGIES[0]][0]['autopar_file']}")
    text = report(trees, runs, args.repeats)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
