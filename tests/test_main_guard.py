"""Scripts as users write them: no main guard, lambdas, closures, functions typed into ``python -c``.

Each case runs a real interpreter in a subprocess.  autopar's spawn and
forkserver workers never import the caller's main module (regression tests for
issue 16): a script's module level runs exactly once, whatever the start
method, and what ``__main__`` defines reaches the workers by value.  Speed-ups
are asserted loosely (the machine is shared); ``benchmarks/main_guard.py``
measures them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import helpers

#: 8 items of about 0.3 s of pure-Python countdown, timed in the script: the serial time is one item
#: timed alone, times 8; the parallel time is the whole ``autopar.map``.
_WORK = """
import json, sys, time
with open(sys.argv[1], "a") as log:
    log.write("module level ran\\n")
import autopar
import os
def countdown(n):
    began = time.time()
    while n:
        n -= 1
    return [os.getpid(), began, time.time()]
t0 = time.perf_counter(); countdown(N); one = time.perf_counter() - t0
"""

#: How each kind of function is made, in a guard-less script or in ``python -c``.
_FUNCTIONS = {
    "script": "func = countdown\n",
    "python-c": "func = countdown\n",
    "lambda": "func = lambda n: countdown(n)\n",
    "closure": "def make(extra):\n    def inner(n):\n        return countdown(n + extra)\n    return inner\nfunc = make(0)\n",
}

_MAP = """
t0 = time.perf_counter()
out = autopar.map(func, [N] * 8KWARGS)
wall = time.perf_counter() - t0
print(json.dumps({"out": out, "ratio": 8 * one / wall}))
"""


def _items_n(tmp_path: Path) -> int:
    """A countdown length of about 0.3 s on this machine, measured once per test."""
    proc = helpers.run_python(
        [
            "-c",
            "import time\ndef f(n):\n    while n: n -= 1\nt=time.perf_counter()\nf(2_000_000)\nprint(time.perf_counter()-t)",
        ],
        tmp_path,
    )
    return max(int(2_000_000 * 0.3 / float(proc.stdout)), 100_000)


def _assert_parallel(data: Any) -> None:
    """Eight results from at least two processes whose items overlapped in time, not slower than serial by far.

    The speed-up itself is only checked loosely: the machine running the tests is shared.
    """
    spans = data["out"]
    assert len(spans) == 8
    pids = {pid for pid, _, _ in spans}
    assert len(pids) >= 2, spans  # under auto, calibration also runs items in the caller
    overlapping = [(a, b) for a in spans for b in spans if a[0] != b[0] and a[1] < b[2] and b[1] < a[2]]
    assert overlapping, spans
    assert data["ratio"] > 0.5, data


def _source(tmp_path: Path, kind: str, kwargs: str, prelude: str = "") -> str:
    body = prelude + _WORK + _FUNCTIONS[kind] + _MAP
    return body.replace("N", str(_items_n(tmp_path))).replace("KWARGS", kwargs)


def _run(tmp_path: Path, source: str, *, as_c: bool) -> tuple[Any, list[str]]:
    """Run ``source`` as a script file or under ``python -c``; its JSON and the lines its module level wrote."""
    log = tmp_path / "log.txt"
    if as_c:
        args = ["-c", source, str(log)]
    else:
        script = tmp_path / "user_script.py"
        script.write_text(source)
        args = [str(script), str(log)]
    proc = helpers.run_python(args, tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr
    lines = log.read_text().splitlines()
    return json.loads(proc.stdout.strip().splitlines()[-1]), lines


@pytest.mark.timeout(200)
@pytest.mark.parametrize("kind", ["script", "python-c", "lambda", "closure"])
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_guardless_code_runs_once_and_in_parallel_under_forced_method(tmp_path: Path, method: str, kind: str) -> None:
    """A guard-less script (or ``python -c``) runs its module level once under forced spawn or forkserver, faster than serial."""
    source = _source(tmp_path, kind, f", strategy={method!r}, workers=2")
    data, lines = _run(tmp_path, source, as_c=kind == "python-c")
    _assert_parallel(data)
    assert lines == ["module level ran"]


@pytest.mark.timeout(200)
@pytest.mark.parametrize("kind", ["script", "python-c", "lambda", "closure"])
def test_auto_under_forkserver_default_uses_processes_for_guardless_code(tmp_path: Path, kind: str) -> None:
    """With forkserver as the interpreter's default (as on Python 3.14), auto runs guard-less code in processes."""
    prelude = "import multiprocessing\nmultiprocessing.set_start_method('forkserver')\n"
    source = _source(tmp_path, kind, "", prelude)
    source += "print(json.dumps({'out': out, 'ratio': 8 * one / wall, 'strategy': autopar.explain(func, [N // 4] * 16).strategy}))\n"
    data, lines = _run(tmp_path, source.replace("N", str(_items_n(tmp_path))), as_c=kind == "python-c")
    _assert_parallel(data)
    assert data["strategy"] in ("forkserver", "spawn")
    assert lines == ["module level ran"]


_GUARDED = """
import json, sys
with open(sys.argv[1], "a") as log:
    log.write("module level ran\\n")
import autopar
def square(x):
    return x * x
if __name__ == "__main__":
    print(json.dumps(autopar.map(square, range(20), strategy=sys.argv[2], workers=2)))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("strategy", ["fork", "forkserver", "spawn", "auto"])
def test_guarded_script_module_level_runs_once_under_every_method(tmp_path: Path, strategy: str) -> None:
    """A guarded script's module-level code runs exactly once, the forkserver's server included."""
    script = tmp_path / "guarded.py"
    script.write_text(_GUARDED)
    log = tmp_path / "log.txt"
    proc = helpers.run_python([str(script), str(log), strategy], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == [x * x for x in range(20)]
    assert log.read_text().splitlines() == ["module level ran"]


_MAIN_CLASSES = """
import json, sys
import autopar
class Point:
    def __init__(self, x):
        self.x = x
def double(p):
    return Point(p.x * 2)
out = autopar.map(double, [Point(i) for i in range(10)], strategy=sys.argv[1], workers=2)
print(json.dumps({"xs": [p.x for p in out], "same_class": all(type(p) is Point for p in out)}))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_items_and_results_of_main_classes_cross_both_ways(tmp_path: Path, method: str) -> None:
    """Instances of a class defined in a guard-less ``__main__`` reach the workers and come back as that class."""
    script = tmp_path / "points.py"
    script.write_text(_MAIN_CLASSES)
    proc = helpers.run_python([str(script), method], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"xs": [2 * i for i in range(10)], "same_class": True}


_EXECUTOR = """
import json, sys
with open(sys.argv[1], "a") as log:
    log.write("module level ran\\n")
import autopar
def square(x):
    return x * x
with autopar.Executor(strategy=sys.argv[2], workers=2) as ex:
    out = [ex.submit(square, i).result() for i in range(5)] + list(ex.map(lambda x: -x, range(5)))
print(json.dumps(out))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_executor_process_pools_never_run_the_main_module(tmp_path: Path, method: str) -> None:
    """``autopar.Executor``'s spawn and forkserver pools run a guard-less script's functions and lambdas, once."""
    script = tmp_path / "executor.py"
    script.write_text(_EXECUTOR)
    log = tmp_path / "log.txt"
    proc = helpers.run_python([str(script), str(log), method], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == [0, 1, 4, 9, 16, 0, -1, -2, -3, -4]
    assert log.read_text().splitlines() == ["module level ran"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_stdin_script_function_runs_by_value(tmp_path: Path, method: str) -> None:
    """A function of a script read from standard input (``python -``) reaches spawn and forkserver workers by value."""
    source = "import json, autopar\ndef inc(x):\n    return x + 1\n"
    source += f"print(json.dumps(autopar.map(inc, range(30), strategy={method!r}, workers=2)))\n"
    proc = helpers.run_python(["-"], tmp_path, stdin=source)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == list(range(1, 31))


_LOCKED = """
import json, sys, threading
import autopar
lock = threading.Lock()
def locked(x):
    with lock:
        return x
try:
    autopar.map(locked, range(10), strategy=sys.argv[1], workers=2)
except autopar.SerializationError as exc:
    print(json.dumps(str(exc)))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_function_holding_a_lock_names_the_global(tmp_path: Path, method: str) -> None:
    """A function whose global holds a lock cannot go even by value: SerializationError naming the global."""
    script = tmp_path / "locked.py"
    script.write_text(_LOCKED)
    proc = helpers.run_python([str(script), method], tmp_path)
    assert proc.returncode == 0, proc.stderr
    message = json.loads(proc.stdout.splitlines()[-1])
    assert "global 'lock'" in message
    assert "_thread.lock" in message


_OTHER_POOL = """
import json, multiprocessing, sys
import autopar
def square(x):
    return x * x
out = autopar.map(square, range(6))
if multiprocessing.current_process().name == "MainProcess":
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        print(json.dumps(pool.map(square, range(3))))
"""


@pytest.mark.timeout(120)
def test_child_of_another_pool_importing_a_guardless_main_runs_serially(tmp_path: Path) -> None:
    """In a child of the standard library's spawn pool, still importing ``__main__``, autopar runs serially and says so."""
    script = tmp_path / "other_pool.py"
    script.write_text(_OTHER_POOL)
    proc = helpers.run_python([str(script)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == [0, 1, 4]
    assert "imports the main module: running serially" in proc.stderr


_PRELOADED_MODULE = """
import os, sys
with open(os.environ["IMPORT_LOG"], "a") as log:
    log.write(f"{os.getpid()}\\n")
def square(x):
    return x * x
"""

_PRELOADING_CALLER = """
import json, os, sys
import autopar
import preloaded_work
if __name__ == "__main__":
    out = autopar.map(preloaded_work.square, range(40), strategy="forkserver", workers=2, chunksize=1)
    print(json.dumps({"out": out, "caller": os.getpid()}))
"""


@pytest.mark.timeout(120)
def test_the_forkserver_imports_the_function_module_once_for_all_its_workers(tmp_path: Path) -> None:
    """The server preloads the mapped function's module: it is imported by the caller and the server, not per worker."""
    (tmp_path / "preloaded_work.py").write_text(_PRELOADED_MODULE)
    script = tmp_path / "caller.py"
    script.write_text(_PRELOADING_CALLER)
    log = tmp_path / "imports.txt"
    env = {"IMPORT_LOG": str(log), "PYTHONPATH": f"{helpers.SRC}{os.pathsep}{tmp_path}"}
    proc = helpers.run_python([str(script)], tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["out"] == [x * x for x in range(40)]
    importers = [int(pid) for pid in log.read_text().split()]
    assert len(importers) == 2, importers  # the caller, then the forkserver's server
    assert importers[0] == data["caller"]


def test_a_running_forkserver_or_a_preload_chosen_elsewhere_is_left_alone(tmp_path: Path) -> None:
    """autopar only adds to its own preload, before the server starts; never ``__main__`` or unimported modules."""
    code = """
import json, multiprocessing.forkserver as fs
import autopar._main_module as mm
mm.preload_in_forkserver(["json", "__main__", "not_imported_anywhere"])
first = fs._forkserver._preload_modules
fs.set_forkserver_preload(["mine"])
mm.preload_in_forkserver(["json"])
print(json.dumps([first, fs._forkserver._preload_modules, list(mm.FORKSERVER_PRELOAD)]))
"""
    proc = helpers.run_python(["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    first, chosen, ours = json.loads(proc.stdout)
    assert first == [*ours, "json"]
    assert chosen == ["mine"]
