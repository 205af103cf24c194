"""A process forked after autopar ran, and daemonic processes: ``map`` works there and exits cleanly (issue 19).

Each case is a real script in a child interpreter: the program uses autopar
(an idle pool is kept), then forks or starts a ``multiprocessing`` worker,
which calls autopar again and exits normally, so its exit hooks run too.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import helpers
from conftest import BUILTIN_STRATEGIES

#: Deadlock guard for the child interpreters, not a measurement.
SCRIPT_TIMEOUT_S = 60

_FORK_AFTER_USE = """
    import os, sys
    import autopar

    def square(x):
        return x * x

    def spin(x):
        return sum(i * i for i in range(2000)) + x

    if __name__ == "__main__":
        strategy = sys.argv[1]
        assert autopar.map(square, range(40), strategy=strategy) == [x * x for x in range(40)]
        pid = os.fork()
        if pid == 0:
            assert autopar.map(square, range(40), strategy=strategy) == [x * x for x in range(40)]
            assert autopar.map(spin, range(400)) == [spin(x) for x in range(400)]
            print("child ok", flush=True)
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status), flush=True)
        assert autopar.map(square, range(40), strategy=strategy) == [x * x for x in range(40)]
        print("parent ok", flush=True)
"""

_POOL_WORKER = """
    import multiprocessing
    import autopar

    def square(x):
        return x * x

    def spin(x):
        return sum(i * i for i in range(2000)) + x

    def job(_):
        threads = autopar.map(square, range(50), strategy="threads")
        auto = autopar.map(spin, range(300))
        decision = autopar.explain(spin, range(300))
        return threads == [x * x for x in range(50)], auto == [spin(x) for x in range(300)], decision.strategy

    if __name__ == "__main__":
        autopar.map(square, range(40), strategy="threads")  # the parent keeps an idle thread pool
        with multiprocessing.get_context("fork").Pool(2) as pool:
            print(pool.map(job, range(2)), flush=True)
"""

_DAEMON = """
    import multiprocessing
    import autopar
    from autopar._info import platform_report
    from autopar._platform import probe_platform

    def spin(x):
        return sum(i * i for i in range(2000)) + x

    def job():
        assert autopar.map(spin, range(300)) == [spin(x) for x in range(300)]
        decision = autopar.explain(spin, range(300))
        print("strategy", decision.strategy, flush=True)
        print("reasons", " | ".join(decision.reasons), flush=True)
        try:
            autopar.map(spin, range(10), strategy="fork")
        except autopar.WorkerStartError as exc:
            print("forced", exc, flush=True)
        for label, value in platform_report(probe_platform()):
            print(f"info {label}: {value}", flush=True)

    if __name__ == "__main__":
        process = multiprocessing.get_context("fork").Process(target=job, daemon=True)
        process.start()
        process.join(50)
        print("exit", process.exitcode, flush=True)
"""


def _run(script: str, tmp_path: Path, *args: str) -> tuple[str, str]:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    done = helpers.run_python([str(path), *args], tmp_path, timeout=SCRIPT_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


@pytest.mark.timeout(90)
@pytest.mark.parametrize("strategy", BUILTIN_STRATEGIES)
def test_map_works_in_a_child_forked_after_use(strategy: str, tmp_path: Path) -> None:
    """A child forked after ``map`` kept an idle pool runs ``map`` (that strategy and auto) and exits cleanly."""
    out, err = _run(_FORK_AFTER_USE, tmp_path, strategy)
    assert "child ok" in out
    assert "child exit 0" in out
    assert "parent ok" in out
    assert "AssertionError" not in err
    assert "Traceback" not in err


@pytest.mark.timeout(90)
def test_map_works_in_a_multiprocessing_fork_pool_worker(tmp_path: Path) -> None:
    """A ``multiprocessing.Pool`` fork worker runs ``map`` under threads and auto; auto starts no processes there."""
    out, err = _run(_POOL_WORKER, tmp_path)
    assert out.strip() in {
        f"[(True, True, {a!r}), (True, True, {b!r})]" for a in ("serial", "threads") for b in ("serial", "threads")
    }, out
    assert "Traceback" not in err


@pytest.mark.timeout(90)
def test_map_in_a_daemonic_process_falls_back_and_says_why(tmp_path: Path) -> None:
    """In a daemonic process auto runs serial or threads with the reason; forced fork names the cause; info agrees."""
    out, err = _run(_DAEMON, tmp_path)
    assert "exit 0" in out, err
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert lines["strategy"] in {"serial", "threads"}
    assert "daemonic" in lines["reasons"]
    assert "strategy 'fork' cannot start worker processes here: this process is daemonic" in lines["forced"]
    assert "info fork: not available: this process is daemonic" in out
    assert "info auto process methods: none" in out
