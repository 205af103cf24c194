"""Scripts as users write them: no main guard, lambdas, closures, functions typed into ``python -c``.

Each case runs a real interpreter in a subprocess, with the spawn path in play
(fork made unsafe by a running thread, or spawn forced), and must complete.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

#: Makes fork unsafe (a second thread runs), so auto must use forkserver, spawn, threads or serial.
_THREAD = textwrap.dedent(
    """
    import threading
    _stop = threading.Event()
    threading.Thread(target=_stop.wait, daemon=True).start()
    """
)


def _run(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    if "AUTOPAR_STRATEGY" not in (env or {}):
        full_env.pop("AUTOPAR_STRATEGY", None)
    return subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=120, check=False
    )


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "user_script.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_script_without_main_guard_completes_under_auto(tmp_path: Path) -> None:
    """A guard-less script with fork unsafe completes under auto, and spawn is ruled out for the guard."""
    script = _script(
        tmp_path,
        _THREAD
        + textwrap.dedent(
            """
        import json, autopar
        def count(n):
            while n:
                n -= 1
            return n + 1
        decision = autopar.explain(count, [20_000] * 40)
        out = autopar.map(count, [20_000] * 40)
        print(json.dumps({"out": out, "strategy": decision.strategy, "reasons": list(decision.reasons)}))
        """
        ),
    )
    proc = _run([script], tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["out"] == [1] * 40
    assert data["strategy"] not in ("spawn", "forkserver")
    assert "RuntimeError" not in proc.stderr


def test_script_without_main_guard_under_forced_spawn_runs_serially_in_children(tmp_path: Path) -> None:
    """Forcing spawn on a guard-less script neither fork-bombs nor dies: children run their copy serially."""
    script = _script(
        tmp_path,
        """
        import autopar
        def square(x):
            return x * x
        print("RESULT", autopar.map(square, range(8)))
        """,
    )
    proc = _run([script], tmp_path, env={"AUTOPAR_STRATEGY": "spawn", "AUTOPAR_WORKERS": "2"})
    assert proc.returncode == 0, proc.stderr
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    # The parent's line, plus one per spawned worker re-running the module: at most 1 + workers.
    assert results[-1] == "RESULT [0, 1, 4, 9, 16, 25, 36, 49]"
    assert 1 <= len(results) <= 3
    assert 'if __name__ == "__main__":' in proc.stderr
    assert "UnsafeStrategyWarning" in proc.stderr
    assert "bootstrapping phase" not in proc.stderr


@pytest.mark.parametrize("cloudpickle", ["installed", "blocked"])
def test_functions_typed_into_python_c_complete_under_auto(tmp_path: Path, cloudpickle: str) -> None:
    """A function, a lambda and a closure typed into ``python -c`` complete under auto with fork unsafe."""
    block = "import sys; sys.modules['cloudpickle'] = None\n" if cloudpickle == "blocked" else ""
    code = (
        block
        + _THREAD
        + textwrap.dedent(
            """
            import json, autopar
            def work(x):
                n = 20_000
                while n:
                    n -= 1
                return x * 2
            def make(k):
                return lambda x: work(x) + k
            out = {
                "function": autopar.map(work, range(30)),
                "lambda": autopar.map(lambda x: work(x) + 1, range(30)),
                "closure": autopar.map(make(5), range(30)),
                "strategy": autopar.explain(work, range(30)).strategy,
            }
            print(json.dumps(out))
            """
        )
    )
    proc = _run(["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["function"] == [2 * x for x in range(30)]
    assert data["lambda"] == [2 * x + 1 for x in range(30)]
    assert data["closure"] == [2 * x + 5 for x in range(30)]
    if cloudpickle == "blocked":
        assert data["strategy"] in ("threads", "serial")


def test_forced_spawn_of_lambda_without_cloudpickle_names_the_fix(tmp_path: Path) -> None:
    """Forcing spawn on a lambda with cloudpickle blocked raises SerializationError naming the fix."""
    code = textwrap.dedent(
        """
        import sys; sys.modules['cloudpickle'] = None
        import autopar
        try:
            autopar.map(lambda x: x, range(4), strategy="spawn")
        except autopar.SerializationError as exc:
            print("ERROR", exc)
        """
    )
    proc = _run(["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ERROR" in proc.stdout
    assert "module level" in proc.stdout
    assert "autopar[cloudpickle]" in proc.stdout
