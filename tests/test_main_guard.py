"""Scripts as users write them: no main guard, lambdas, closures, functions typed into ``python -c``.

Each case runs a real interpreter in a subprocess, with the spawn path in play
(fork made unsafe by a running thread, or spawn forced), and must complete.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

import helpers
from autopar._main_module import main_file_hidden

#: Makes fork unsafe (a second thread runs), so auto must use forkserver, spawn, threads or serial.
_THREAD = textwrap.dedent(
    """
    import threading
    _stop = threading.Event()
    threading.Thread(target=_stop.wait, daemon=True).start()
    """
)


def _json_output(proc: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a child printed last, after checking that it exited cleanly."""
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
    proc = helpers.run_python([script], tmp_path)
    data = _json_output(proc)
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
    proc = helpers.run_python([script], tmp_path, env={"AUTOPAR_STRATEGY": "spawn", "AUTOPAR_WORKERS": "2"})
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
    proc = helpers.run_python(["-c", code], tmp_path)
    data = _json_output(proc)
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
    proc = helpers.run_python(["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ERROR" in proc.stdout
    assert "module level" in proc.stdout
    assert "autopar[cloudpickle]" in proc.stdout


# -- a script fed on standard input (python -) ---------------------------------------------------------------------------

#: Records what multiprocessing sends its spawn and forkserver children (and the forkserver's server) about
#: ``__main__``: a main file to re-run there would be "<stdin>", which does not exist.
_RECORD_PREPARATION = textwrap.dedent(
    """
    import multiprocessing.spawn
    _sent = []
    _prepare = multiprocessing.spawn.get_preparation_data
    def _recording(name):
        data = _prepare(name)
        _sent.append([name, data.get("init_main_from_path")])
        return data
    multiprocessing.spawn.get_preparation_data = _recording
    """
)

#: A module next to the script, importable by the workers as by the script.
_IMPORTABLE = textwrap.dedent(
    """
    def triple(x):
        return 3 * x
    """
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_stdin_script_forcing_method_runs_importable_functions(tmp_path: Path, method: str) -> None:
    """``python -`` forcing spawn/forkserver runs importable functions in order; ``__main__`` is left as it was."""
    (tmp_path / "user_funcs.py").write_text(_IMPORTABLE)
    script = _RECORD_PREPARATION + textwrap.dedent(
        f"""
            import json, operator, sys, autopar
            from user_funcs import triple
            if __name__ == "__main__":
                out = {{
                    "neg": autopar.map(operator.neg, range(20), strategy={method!r}, workers=2, chunksize=1),
                    "triple": autopar.map(triple, range(20), strategy={method!r}, workers=2, chunksize=3),
                    "file": sys.modules["__main__"].__file__,
                    "sent": _sent,
                }}
                print(json.dumps(out))
            """
    )
    proc = helpers.run_python(["-"], tmp_path, stdin=script, timeout=90)
    data = _json_output(proc)
    assert data["neg"] == [-x for x in range(20)]
    assert data["triple"] == [3 * x for x in range(20)]
    assert data["file"] == "<stdin>"
    # Workers were started, and none of them (nor the forkserver's server, which asks for "ignore") was told to
    # re-run a main file.
    names = [name for name, _ in data["sent"]]
    assert "autopar-worker" in names
    if method == "forkserver":
        assert "ignore" in names
    assert [main for _, main in data["sent"]] == [None] * len(names)
    assert "Traceback" not in proc.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_stdin_script_executor_with_forced_method_runs_importable_functions(tmp_path: Path, method: str) -> None:
    """``python -`` with ``autopar.Executor(strategy=spawn/forkserver)``: submit and map work, no main re-run."""
    (tmp_path / "user_funcs.py").write_text(_IMPORTABLE)
    script = _RECORD_PREPARATION + textwrap.dedent(
        f"""
            import json, operator, sys, autopar
            from user_funcs import triple
            if __name__ == "__main__":
                with autopar.Executor(strategy={method!r}, workers=2) as ex:
                    out = {{
                        "map": list(ex.map(operator.neg, range(20))),
                        "submit": [f.result(timeout=60) for f in [ex.submit(triple, x) for x in range(8)]],
                    }}
                out["file"] = sys.modules["__main__"].__file__
                out["sent"] = _sent
                print(json.dumps(out))
            """
    )
    proc = helpers.run_python(["-"], tmp_path, stdin=script, timeout=90)
    data = _json_output(proc)
    assert data["map"] == [-x for x in range(20)]
    assert data["submit"] == [3 * x for x in range(8)]
    assert data["file"] == "<stdin>"
    assert data["sent"], "no worker was started"
    assert [main for _, main in data["sent"]] == [None] * len(data["sent"])
    assert "Traceback" not in proc.stderr


#: Functions defined in the script itself: by reference, only a worker that has the script could find them.
_SCRIPT_FUNCTIONS = textwrap.dedent(
    """
    import functools, json, sys, autopar
    def work(x):
        return x * x + 1
    def run(func, method):
        try:
            return autopar.map(func, range(12), strategy=method, workers=2)
        except autopar.SerializationError as exc:
            return "SerializationError: " + str(exc)
    if __name__ == "__main__":
        method = sys.argv[-1]
        out = {
            "function": run(work, method),
            "partial": run(functools.partial(work), method),
            "file": getattr(sys.modules["__main__"], "__file__", None),
        }
        print(json.dumps(out))
    """
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_stdin_script_function_without_cloudpickle_raises_serialization_error(tmp_path: Path, method: str) -> None:
    """A function of the ``python -`` script under forced spawn/forkserver, cloudpickle blocked: a clear error."""
    block = "import sys; sys.modules['cloudpickle'] = None\n"
    proc = helpers.run_python(["-", method], tmp_path, stdin=block + _SCRIPT_FUNCTIONS, timeout=90)
    data = _json_output(proc)
    # Named before any worker starts, with the fixes.
    assert data["function"].startswith("SerializationError: ")
    assert f"strategy {method!r} cannot send the function 'work'" in data["function"]
    assert "module level" in data["function"]
    assert "autopar[cloudpickle]" in data["function"]
    # A callable that only refers to the script's function is caught in the caller, not left to the workers.
    assert data["partial"].startswith("SerializationError: ")
    assert "__main__ that worker processes cannot import" in data["partial"]
    assert data["file"] == "<stdin>"
    assert "Traceback" not in proc.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("source", "method"), [("stdin", "spawn"), ("stdin", "forkserver"), ("-c", "spawn")])
def test_script_function_with_cloudpickle_runs(tmp_path: Path, source: str, method: str) -> None:
    """With cloudpickle, a function of a ``python -`` or ``python -c`` script ships by value and runs in order."""
    pytest.importorskip("cloudpickle")
    if source == "stdin":
        proc = helpers.run_python(["-", method], tmp_path, stdin=_SCRIPT_FUNCTIONS, timeout=90)
    else:
        proc = helpers.run_python(["-c", _SCRIPT_FUNCTIONS, method], tmp_path, timeout=90)
    data = _json_output(proc)
    expected = [x * x + 1 for x in range(12)]
    assert data["function"] == expected
    assert data["partial"] == expected
    assert data["file"] == ("<stdin>" if source == "stdin" else None)
    assert "Traceback" not in proc.stderr


# -- hiding a main file that is not on disk ------------------------------------------------------------------------------


def _fake_main(monkeypatch: pytest.MonkeyPatch, file: str | None, spec_name: str | None = None) -> types.ModuleType:
    main = types.ModuleType("__main__")
    if file is not None:
        main.__file__ = file
    if spec_name is not None:
        main.__spec__ = types.SimpleNamespace(name=spec_name)  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", main)
    return main


def test_main_file_hidden_hides_stdin_and_restores_it_on_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``__file__`` of "<stdin>" is hidden inside, nested uses share the hiding, and it comes back on error."""
    main = _fake_main(monkeypatch, "<stdin>")
    seen: list[bool] = []

    def start_fails() -> None:
        with main_file_hidden():
            seen.append(hasattr(main, "__file__"))
            with main_file_hidden():
                seen.append(hasattr(main, "__file__"))
            seen.append(hasattr(main, "__file__"))  # the outer use still hides it
            raise RuntimeError("start failed")

    with pytest.raises(RuntimeError, match="start failed"):
        start_fails()
    assert seen == [False, False, False]
    assert main.__file__ == "<stdin>"


@pytest.mark.parametrize("case", ["real file", "run by module name", "no file"])
def test_main_file_hidden_leaves_importable_or_fileless_main_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, case: str
) -> None:
    """A main file on disk, a main run with ``-m`` and a main without ``__file__`` are not touched."""
    real = tmp_path / "script.py"
    real.write_text("")
    file, spec_name = {
        "real file": (str(real), None),
        "run by module name": ("<stdin>", "package.module"),
        "no file": (None, None),
    }[case]
    main = _fake_main(monkeypatch, file, spec_name)
    with main_file_hidden():
        assert getattr(main, "__file__", None) == file
    assert getattr(main, "__file__", None) == file
