"""Guard-less against guarded scripts against joblib: CPU-bound items, cold, per start method and under auto.

Each measurement runs a fresh interpreter on a generated script whose module
level appends a line to a file and then maps a pure-Python countdown over 8
items of about 0.3 s, timed inside the script from just before the call to just
after it (pool start-up included; interpreter start-up and imports excluded:
``import autopar`` loads only its names and the rest on first use, so the script
imports that rest before the clock starts, as ``import joblib`` loads joblib).
Figures are serial time divided by the call's time (higher is better), medians
of ``--repeats`` runs; the number of module-level runs is checked as well.
Results go to ``benchmarks/results/main_guard.md``.

Besides a function of the script, the function handed over may be a lambda, a
closure, or a function of a script run with ``python -c`` (``KINDS``): spawn and
forkserver workers receive each of them by value.

Auto runs with this machine's platform facts, and with the facts of the other
platforms a user may run it on (``FACTS``): the script replaces what autopar's
probe reports by those facts, so the rules decide as they would there (the start
method they pick is then this machine's own: Windows's spawn is Linux's spawn
here).  Run it under Python 3.14 (``scripts/debian-pythons.sh run 3.14
benchmarks/main_guard.py``) for the real 3.14 rows.

    .venv/bin/python benchmarks/main_guard.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
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
    "autopar": "out = autopar.map(FUNC, ITEMS{kw})",
    "joblib": "out = joblib.Parallel(n_jobs=2{kw})(joblib.delayed(countdown)(n) for n in ITEMS)",
}
#: Imported before the clock starts: ``import joblib`` loads all of joblib, ``import autopar`` only its
#: names (its machinery loads on first use), so the script loads that machinery first, untimed.
_IMPORTS = {"autopar": "import autopar, autopar._run\n", "joblib": "import joblib\n"}
_BODY = "t0 = time.perf_counter()\n{call}\nprint(json.dumps(time.perf_counter() - t0))\n"

#: What autopar is handed, as the script defines it (each goes to spawn and forkserver workers by value):
#: a function of the script, a lambda, a closure, and a function of a script given to ``python -c``.
KINDS: dict[str, tuple[str, str]] = {
    "function": ("", "countdown"),
    "lambda": ("func = lambda n: countdown(n)\n", "func"),
    "closure": (
        "def make(k):\n    def work(n):\n        return countdown(n) * k\n    return work\nfunc = make(1)\n",
        "func",
    ),
    "python -c": ("", "countdown"),
}

#: Platform facts auto may be run with, as changes to this machine's (empty: its own).
FACTS: dict[str, str] = {
    "here": "",
    "Linux 3.14": "python_version=(3, 14), default_start_method='forkserver'",
    "macOS": "system='darwin', default_start_method='spawn'",
    "Windows": "system='windows', start_methods=('spawn',), default_start_method='spawn'",
}
#: Replaces what autopar's probe reports (before the timed call, like the rest of the set-up).
_FACTS_PRELUDE = """
import attrs, autopar._gather as _gather
_probe = _gather.probe_platform
_gather.probe_platform = lambda **kw: attrs.evolve(_probe(**kw), {changes})
"""


def _script(contender: str, method: str, guarded: bool, n: int, facts: str = "here", kind: str = "function") -> str:
    # joblib's loky backend picks its own start method; see the table's note.
    kw = "" if contender == "joblib" or method == "auto" else f", strategy={method!r}, workers=2"
    define, name = KINDS[kind]
    call = _CALL[contender].format(kw=kw).replace("ITEMS", f"[{n}] * 8").replace("FUNC", name)
    body = define + _IMPORTS[contender] + _BODY.format(call=call)
    if guarded:
        body = 'if __name__ == "__main__":\n' + "".join("    " + line + "\n" for line in body.splitlines())
    prelude = _FACTS_PRELUDE.format(changes=FACTS[facts]) if FACTS[facts] else ""
    return _HEAD + prelude + body


def _run(source: str, workdir: Path, kind: str = "function") -> tuple[float, int]:
    """Seconds of the call and module-level runs of one cold run of ``source`` (a file, or ``python -c``)."""
    script, log = workdir / "script.py", workdir / "log.txt"
    script.write_text(source)
    log.unlink(missing_ok=True)
    program = ["-c", source] if kind == "python -c" else [str(script)]
    proc = subprocess.run(
        [sys.executable, *program, str(log)], cwd=workdir, capture_output=True, text=True, timeout=300, check=False
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
    parser.add_argument("--only", help="comma-separated strategies (fork, forkserver, spawn, auto, joblib)")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    n = _calibrate_n()
    rows = [("autopar", m, g, "here", "function") for m in ("fork", "forkserver", "spawn") for g in (False, True)]
    rows += [("autopar", "auto", g, facts, "function") for facts in FACTS for g in (False, True)]
    rows += [("autopar", m, False, "here", k) for k in list(KINDS)[1:] for m in ("forkserver", "spawn", "auto")]
    rows += [("joblib", "auto", False, "here", "function"), ("joblib", "auto", True, "here", "function")]
    rows = [r for r in rows if only is None or (r[0] if r[0] == "joblib" else r[1]) in only]
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        serial_source = _script("autopar", "serial", True, n)
        serial_times: list[float] = []
        for contender, method, guarded, facts, kind in rows:
            source = _script(contender, method, guarded, n, facts, kind)
            # A serial run next to each run of the row: the ratio holds when the machine's speed drifts.
            serials, runs = [], []
            for _ in range(args.repeats):
                serials.append(_run(serial_source, workdir)[0])
                runs.append(_run(source, workdir, kind))
            serial_times += serials
            ratio = statistics.median(serials) / statistics.median(s for s, _ in runs)
            module_runs = max(r for _, r in runs)
            label = ("guarded" if guarded else "no guard") + ("" if kind == "function" else f", {kind}")
            where = "this machine's" if facts == "here" else facts
            strategy = f"{method}, {where} facts" if method == "auto" and contender == "autopar" else method
            lines.append(f"| {contender} | {strategy} | {label} | {ratio:.2f}x | {module_runs} |")
            print(lines[-1], flush=True)
    header = [
        f"## {time.strftime('%Y-%m-%d')}: Python {platform.python_version()}, {platform.system()}, "
        f"{os.cpu_count()} CPUs, 8 items of ~0.3 s, median of {args.repeats} cold runs",
        "",
        f"Serial: {statistics.median(serial_times):.2f} s, run next to each row's runs.  "
        "Ratio: the row's median serial time / its median call time (higher is better).  "
        f"Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        "joblib runs its default loky backend (2 jobs), which picks its own start method.",
        "Auto with another platform's facts: the rules decide as there; the processes are this machine's.",
        "",
        "| library | strategy | script | speed-up | module-level runs |",
        "|---|---|---|---|---|",
    ]
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as out:
        out.write("\n".join([*header, *lines]) + "\n\n")


if __name__ == "__main__":
    main()
