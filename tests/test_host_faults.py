"""What the host process and its limits do to process pools: a dying parent, failed and interrupted starts (issue 19).

Every case runs real processes.  Scripts in a child interpreter stand in for the
program whose death or limits are tested; worker pids come from files the
workers write, so the test can watch them after their parent is gone.
"""

from __future__ import annotations

import multiprocessing.process
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

import autopar
import helpers
from conftest import wait_until

#: Deadlock guard for child interpreters, not a measurement.
SCRIPT_TIMEOUT_S = 60
#: The promise: workers of a dead parent are gone within this many seconds.
ORPHAN_EXIT_S = 5.0

_LONG_CALL = """
    import os, sys, threading, time
    import autopar

    def hold(directory):
        with open(os.path.join(directory, str(os.getpid())), "w"):
            pass
        time.sleep(60)

    def call():
        autopar.map(hold, [sys.argv[2]] * 2, strategy=sys.argv[1], workers=2, chunksize=1)

    if __name__ == "__main__":
        if sys.argv[3] == "thread":
            worker = threading.Thread(target=call)
            worker.start()
            worker.join()
        else:
            call()
"""

_GIL_HOLDING_CALL = """
    import os, sys, time
    import autopar

    def hold_the_gil(directory):
        time.sleep(2.0)  # the worker's lifeline asks the kernel meanwhile (KERNEL_AFTER_S, 1 s, in)
        with open(os.path.join(directory, str(os.getpid())), "w"):
            pass
        return sum(range(10**12))  # C code that never lets another thread of the worker run

    if __name__ == "__main__":
        autopar.map(hold_the_gil, [sys.argv[1]] * 2, strategy="fork", workers=2, chunksize=1)
"""

_INTERRUPTED_START = """
    import os, sys, time
    import autopar
    # Loaded before "starting": a SIGINT during an import can land in one of importlib's weakref
    # callbacks, where CPython prints the KeyboardInterrupt and drops it.
    import autopar._run, autopar._strategies._process._pool

    def slow_init(directory):
        with open(os.path.join(directory, str(os.getpid())), "w"):
            pass
        time.sleep(30)

    def square(x):
        return x * x

    if __name__ == "__main__":
        print("starting", flush=True)
        try:
            autopar.map(square, range(8), strategy="fork", workers=4, initializer=slow_init, initargs=(sys.argv[1],))
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            time.sleep(60)
"""

_FILE_LIMIT = """
    import gc, logging, os, resource, sys
    import psutil
    import autopar

    def spin(x):
        return sum(i * i for i in range(3000)) + x

    if __name__ == "__main__":
        logging.basicConfig(level=logging.WARNING, format="log %(message)s", stream=sys.stdout)
        # One pool first: multiprocessing keeps a shared-memory arena and its own pipes for good.
        autopar.map(spin, range(4), strategy=sys.argv[1], workers=2)
        autopar.shutdown()
        me = psutil.Process()
        open_fds = me.num_fds()
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_fds + 4, hard))
        for _ in range(3):
            try:
                autopar.map(spin, range(20), strategy=sys.argv[1], workers=2)
            except autopar.WorkerStartError as exc:
                print("forced", exc, flush=True)
        gc.collect()  # a traceback cycle may still hold the last attempt's objects
        print("children", len(me.children()), "fds", me.num_fds() - open_fds, flush=True)
        assert autopar.map(spin, range(600)) == [spin(x) for x in range(600)]
        print("auto ok", flush=True)
"""

_PROCESS_LIMIT = """
    import encodings.ascii, logging, multiprocessing.forkserver, multiprocessing.spawn, os, resource, sys, time
    import psutil
    import autopar

    def spin(x):
        return sum(i * i for i in range(200_000)) + x

    def wait(x):
        time.sleep(0.02)
        return x

    if __name__ == "__main__":
        logging.basicConfig(level=logging.INFO, format="log %(message)s", stream=sys.stdout)
        # Every code path once while new processes and threads may start (and modules may be read).
        autopar.map(spin, range(4), strategy="fork", workers=2)
        autopar.map(wait, range(4), strategy="threads", workers=2)
        autopar.shutdown()
        os.setgid(65534)
        os.setuid(65534)  # nobody: a user with no other processes, whom RLIMIT_NPROC binds (root it does not)
        me = psutil.Process()
        tasks = sum(p.num_threads() for p in psutil.process_iter() if p.uids().real == 65534)
        resource.setrlimit(resource.RLIMIT_NPROC, (tasks, tasks))
        from autopar._limits import limit_rows
        print("info", tasks, dict(limit_rows())["RLIMIT_NPROC"], flush=True)
        for strategy in ("fork", "threads"):
            try:
                autopar.map(spin, range(8), strategy=strategy, workers=2)
            except autopar.WorkerStartError as exc:
                print("forced", exc, flush=True)
        print("spin", autopar.map(spin, range(24)) == [spin(x) for x in range(24)], flush=True)
        print("wait", autopar.map(wait, range(40)) == list(range(40)), flush=True)
        print("children", len(me.children()), "threads", me.num_threads(), flush=True)
"""


@pytest.mark.timeout(120)
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to become a user alone")
def test_process_limit_forced_error_and_auto_fallback_to_serial(tmp_path: Path) -> None:
    """Under RLIMIT_NPROC: forced fork and threads name the limit; auto runs CPU and waiting work serially."""
    script = _write(tmp_path, _PROCESS_LIMIT)
    done = helpers.run_python([str(script)], tmp_path, timeout=SCRIPT_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    forced = [line for line in out.splitlines() if line.startswith("forced")]
    assert len(forced) == 2, out
    assert forced[0].startswith("forced fork workers could not start: this process may start no more processes")
    assert forced[1].startswith("forced threads workers could not start: this process may start no more processes")
    assert all("RLIMIT_NPROC is" in line for line in forced)
    info = next(line.split() for line in out.splitlines() if line.startswith("info"))
    assert info[2] == info[1]  # autopar info shows the limit
    assert "spin True" in out
    assert "wait True" in out
    assert "children 0 threads 1" in out
    # The log names the strategy that ran, not the one that could not start.
    assert "threads could not start, so the rest runs serially" in out or "running serial instead" in out
    assert "log autopar: serial took" in out


def _write(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    return path


def _popen(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": helpers.SRC}
    env.pop("AUTOPAR_STRATEGY", None)
    return subprocess.Popen(
        [sys.executable, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _pids(directory: Path) -> list[int]:
    return [int(p.name) for p in directory.iterdir()]


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    if process.poll() is None:
        process.kill()
    return process.communicate(timeout=SCRIPT_TIMEOUT_S)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("caller", ["main", "thread"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_workers_exit_soon_after_their_parent_is_killed(
    process_strategy: str, sig: signal.Signals, caller: str, tmp_path: Path
) -> None:
    """A parent killed in the middle of a call leaves no worker alive 5 s later, whatever its start method.

    ``caller="thread"``: the call runs on a thread that is not the main one, where Linux's
    parent-death signal cannot be used, so the workers watch their parent's pid instead.
    """
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    script = _write(tmp_path, _LONG_CALL)
    parent = _popen(tmp_path, str(script), process_strategy, str(pid_dir), caller)
    try:
        assert wait_until(lambda: len(_pids(pid_dir)) == 2, timeout=30), _stop(parent)
        workers = _pids(pid_dir)
        parent.send_signal(sig)
        parent.wait(timeout=SCRIPT_TIMEOUT_S)
        killed_at = time.monotonic()
        assert wait_until(lambda: not any(_alive(pid) for pid in workers), timeout=ORPHAN_EXIT_S), workers
        assert time.monotonic() - killed_at < ORPHAN_EXIT_S
        _, err = _stop(parent)
        assert "BrokenPipeError" not in err
    finally:
        _stop(parent)
        for pid in _pids(pid_dir):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(90)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
def test_a_fork_worker_that_holds_the_gil_still_ends_with_its_killed_parent(tmp_path: Path) -> None:
    """No thread of the worker can run, so only the kernel's parent-death signal can end it.

    Its lifeline first waits on a pidfd of the parent (cheap), then asks the kernel:
    an item that holds the GIL for hours must not outlive its caller.
    """
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    parent = _popen(tmp_path, str(_write(tmp_path, _GIL_HOLDING_CALL)), str(pid_dir))
    try:
        assert wait_until(lambda: len(_pids(pid_dir)) == 2, timeout=30), _stop(parent)
        workers = _pids(pid_dir)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=SCRIPT_TIMEOUT_S)
        assert wait_until(lambda: not any(_alive(pid) for pid in workers), timeout=ORPHAN_EXIT_S), workers
    finally:
        for pid in _pids(pid_dir):  # first: a live worker holds the parent's output open
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        _stop(parent)


@pytest.mark.timeout(90)
def test_ctrl_c_while_a_fork_pool_starts_leaves_no_worker(tmp_path: Path) -> None:
    """Ctrl-C a few ms into starting a fork pool: every worker it started is gone while the program lives on."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    script = _write(tmp_path, _INTERRUPTED_START)
    program = _popen(tmp_path, str(script), str(pid_dir))
    try:
        assert program.stdout is not None
        assert program.stdout.readline().strip() == "starting"
        time.sleep(0.02)
        program.send_signal(signal.SIGINT)
        assert program.stdout.readline().strip() == "interrupted", _stop(program)
        assert program.poll() is None
        me = psutil.Process(program.pid)

        def workers_left() -> list[psutil.Process]:
            return [c for c in me.children(recursive=True) if _alive(c.pid)]

        assert wait_until(lambda: not workers_left(), timeout=ORPHAN_EXIT_S), workers_left()
        assert not any(_alive(pid) for pid in _pids(pid_dir))
    finally:
        _stop(program)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("strategy", ["fork", "spawn"])
def test_timeout_holds_while_initializers_run(strategy: str) -> None:
    """``timeout=2`` with an initializer that sleeps 120 s raises TimeoutError at about 2 s, workers stopped."""
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"while its .* workers started"):
        autopar.map(abs, range(8), strategy=strategy, workers=2, timeout=2, initializer=time.sleep, initargs=(120,))
    assert time.monotonic() - started < 5


@pytest.mark.timeout(30)
def test_thread_initializer_base_exception_fails_the_call() -> None:
    """An initializer raising SystemExit under threads fails the call with it instead of hanging."""
    with pytest.raises(SystemExit):
        autopar.map(abs, range(20), strategy="threads", initializer=sys.exit)
    assert autopar.map(abs, range(-3, 3), strategy="threads") == [3, 2, 1, 0, 1, 2]


@pytest.mark.timeout(60)
def test_failed_start_stops_started_workers_and_closes_descriptors(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the 2nd worker cannot start, the 1st is stopped, every descriptor closed, and the error names EMFILE."""
    assert autopar.map(abs, range(4), strategy="fork", workers=3) == [0, 1, 2, 3]
    autopar.shutdown()
    me = psutil.Process()
    fds = me.num_fds()
    children = {c.pid for c in me.children()}  # the resource tracker or a forkserver may live on
    real_start = multiprocessing.process.BaseProcess.start
    calls = []

    def start_then_fail(self: multiprocessing.process.BaseProcess) -> None:
        calls.append(self)
        if len(calls) == 2:
            raise OSError(24, "Too many open files")
        real_start(self)

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start_then_fail)
    for _ in range(5):
        calls.clear()
        with pytest.raises(autopar.WorkerStartError, match=r"too many open files .*RLIMIT_NOFILE") as info:
            autopar.map(abs, range(6), strategy="fork", workers=3)
        assert isinstance(info.value.__cause__, OSError)
        assert len(calls) == 2
    assert not [c for c in me.children() if _alive(c.pid) and c.pid not in children]
    assert me.num_fds() == fds


@pytest.mark.timeout(120)
def test_low_open_file_limit_forced_error_and_auto_fallback(tmp_path: Path) -> None:
    """Under a low RLIMIT_NOFILE: forced fork names the limit and leaks nothing; auto runs the call anyway."""
    script = _write(tmp_path, _FILE_LIMIT)
    done = helpers.run_python([str(script), "fork"], tmp_path, timeout=SCRIPT_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    forced = [line for line in done.stdout.splitlines() if line.startswith("forced")]
    assert len(forced) == 3, done.stdout
    assert all("fork workers could not start: this process has too many open files (RLIMIT_NOFILE" in f for f in forced)
    assert "children 0 fds 0" in done.stdout
    assert "auto ok" in done.stdout
