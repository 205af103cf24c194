"""Guard-less against guarded scripts against joblib: CPU-bound items, cold, per start method and under auto.

Each measurement runs a fresh interpreter on a generated script whose module
level appends a line to a file and then maps a pure-Python countdown over 8
items of about 0.3 s, timed inside the script from just before the call to just
after it (pool start-up included; interpreter start-up and imports excluded).
Figures are serial time divided by the call's time (higher is better), medians
of ``--repeats`` runs; the number of module-level runs is checked as well.
Results go to ``benchmarks/results/main_guard.md``.

    .venv/bin/python benchmarks/main_guard.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "main_guard.md"

_HEAD = """
import json, sys, time
with open(sys.argv[1], "a") as log:
    log.write("ran\\n")
def countdown(n):
    while n:
        n -= 1
    return n
"""
_CALL = {
    "autopar": "import autopar\nout = autopar.map(countdown, ITEMS{kw})",
    "joblib": "import joblib\nout = joblib.Parallel(n_jobs=2{kw})(joblib.delayed(countdown)(n) for n in ITEMS)",
}
_BODY = "t0 = time.perf_counter()\n{call}\nprint(json.dumps(time.perf_counter() - t0))\n"


def _script(contender: str, method: str, guarded: bool, n: int) -> str:
    # joblib's loky backend picks its own start method; see the table's note.
    kw = "" if contender == "joblib" or method == "auto" else f", strategy={method!r}, workers=2"
    call = _CALL[contender].format(kw=kw).replace("ITEMS", f"[{n}] * 8")
    body = _BODY.format(call=call)
    if guarded:
        body = 'if __name__ == "__main__":\n' + "".join("    " + line + "\n" for line in body.splitlines())
    return _HEAD + body


def _run(source: str, workdir: Path) -> tuple[float, int]:
    """Seconds of the call and module-level runs of one cold run of ``source``."""
    script, log = workdir / "script.py", workdir / "log.txt"
    script.write_text(source)
    log.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, str(script), str(log)], capture_output=True, text=True, timeout=300, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return float(proc.stdout.splitlines()[-1]), len(log.read_text().splitlines())


def _calibrate_n() -> int:
    def countdown(n: int) -> None:
        while n:
            n -= 1

    t0 = time.perf_counter()
    countdown(2_000_000)
    return int(2_000_000 * 0.3 / (time.perf_counter() - t0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = _calibrate_n()
    rows = [("autopar", m, g) for m in ("fork", "forkserver", "spawn", "auto") for g in (False, True)]
    rows += [("joblib", "auto", False), ("joblib", "auto", True)]
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        serial = statistics.median(_run(_script("autopar", "serial", True, n), workdir)[0] for _ in range(args.repeats))
        for contender, method, guarded in rows:
            runs = [_run(_script(contender, method, guarded, n), workdir) for _ in range(args.repeats)]
            ratio = serial / statistics.median(s for s, _ in runs)
            module_runs = max(r for _, r in runs)
            label = "guarded" if guarded else "no guard"
            lines.append(f"| {contender} | {method} | {label} | {ratio:.2f}x | {module_runs} |")
            print(lines[-1], flush=True)
    header = [
        f"## {time.strftime('%Y-%m-%d')}: Python {platform.python_version()}, {platform.system()}, "
        f"{__import__('os').cpu_count()} CPUs, 8 items of ~0.3 s, median of {args.repeats} cold runs",
        "",
        f"Serial: {serial:.2f} s.  Ratio: serial time / call time (higher is better).",
        "joblib runs its default loky backend (2 jobs), which picks its own start method.",
        "",
        "| library | strategy | script | speed-up | module-level runs |",
        "|---|---|---|---|---|",
    ]
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as out:
        out.write("\n".join([*header, *lines]) + "\n\n")


if __name__ == "__main__":
    main()
