"""The dask strategy on a real scheduler: a LocalCluster of two worker processes, and a cluster started with Dask's CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import autopar
import helpers
from autopar import _pools
from autopar._errors import RemoteTraceback
from autopar._model import PoolSpec
from autopar._native import NATIVE_THREAD_VARS
from conftest import wait_until


def _import_distributed() -> Any:
    """Import distributed with native thread pools limited to one thread while it loads.

    distributed imports NumPy when it is installed, and NumPy's BLAS starts a pool of
    native threads at import; later tests count this process's native threads before
    forking and would take fork for unsafe.  A pool of one thread starts no thread.
    """
    saved = {var: os.environ.get(var) for var in NATIVE_THREAD_VARS}
    os.environ.update(dict.fromkeys(NATIVE_THREAD_VARS, "1"))
    try:
        return pytest.importorskip("distributed", reason="the dask extra is not installed: pip install 'autopar[dask]'")
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


distributed = _import_distributed()

from autopar._strategies import _dask, _dask_cluster  # noqa: E402 - needs distributed

#: Seconds a test waits for the cluster before calling it stuck (a guard, not a measurement).
PATIENCE = 30.0
#: Worker processes on 127.0.0.1; the scheduler's HTTP server (it always runs one) on a free loopback port.
LOCAL = {
    "host": "127.0.0.1",
    "threads_per_worker": 1,
    "processes": True,
    "dashboard_address": None,
    "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"},
}


@pytest.fixture(scope="module", autouse=True)
def _release_dask_offload_thread() -> Iterator[None]:
    """Replace Dask's process-wide offload thread with an unstarted executor once this module is done.

    Dask keeps that thread for the life of the process; later test modules count the
    process's threads before forking and would take fork for unsafe because of it.
    """
    yield
    import distributed.utils

    old = distributed.utils._offload_executor
    distributed.utils._offload_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="Dask-Offload")
    old.shutdown(wait=True)


@pytest.fixture(scope="module", name="client")
def _client() -> Iterator[Any]:
    """A client of a LocalCluster of two single-threaded worker processes, not the default client."""
    with (
        distributed.LocalCluster(n_workers=2, **LOCAL) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


def append_line(arg: tuple[str, int]) -> int:
    """Append ``x`` as a line to the file ``path``, then return ``x``."""
    path, x = arg
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return x


def wait_for_event(name: str) -> str:
    """Block until the Dask event ``name`` is set (or a guard time passes)."""
    distributed.Event(name).wait(timeout=PATIENCE)
    return name


def test_results_come_in_input_order(client: Any) -> None:
    """Results come back in input order, across many small chunks on both workers."""
    assert autopar.map(helpers.square, range(200), strategy="dask", dask=client, chunksize=3) == [
        x * x for x in range(200)
    ]


def test_imap_unordered_yields_every_result(client: Any) -> None:
    """imap with ordered=False yields every result once."""
    results = autopar.imap(helpers.square, range(50), strategy="dask", dask=client, chunksize=2, ordered=False)
    assert sorted(results) == [x * x for x in range(50)]


def test_equal_items_run_as_separate_calls(client: Any, tmp_path: Path) -> None:
    """Equal items are never deduplicated by Dask: each one is its own call."""
    path = str(tmp_path / "calls.txt")
    assert autopar.map(append_line, [(path, 7)] * 6, strategy="dask", dask=client, chunksize=1) == [7] * 6
    assert Path(path).read_text().splitlines() == ["7"] * 6


def test_user_exception_keeps_its_type_and_remote_traceback(client: Any) -> None:
    """A failing item raises its own exception type, with the worker's traceback text as __cause__."""
    with pytest.raises(ValueError, match="bad item 3") as info:
        autopar.map(helpers.fail_on_3, range(8), strategy="dask", dask=client, chunksize=2)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in fail_on" in str(cause)
    assert "Traceback" in str(cause)


def test_errors_return_puts_exceptions_in_place(client: Any) -> None:
    """With errors="return" a failing item's slot holds its exception and the rest run."""
    results = autopar.map(helpers.fail_on_3, range(6), strategy="dask", dask=client, errors="return")
    assert results[:3] == [0, 1, 2]
    assert isinstance(results[3], ValueError)
    assert results[4:] == [4, 5]


def test_lambdas_and_closures_ship_to_the_cluster(client: Any) -> None:
    """Lambdas and closures run on the workers (Dask pickles them by value)."""
    offset = 10

    def shifted(x: int) -> int:
        return x + offset

    assert autopar.map(lambda x: x * 3, range(5), strategy="dask", dask=client) == [0, 3, 6, 9, 12]
    assert autopar.map(shifted, range(5), strategy="dask", dask=client) == [10, 11, 12, 13, 14]


def test_timeout_cancels_the_tasks_on_the_cluster(client: Any) -> None:
    """A timeout raises TimeoutError promptly and leaves no task of the call processing on the cluster."""
    name = f"autopar-test-{uuid.uuid4().hex}"
    event = distributed.Event(name, client=client)
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match="timed out"):
            autopar.map(wait_for_event, [name] * 6, strategy="dask", dask=client, chunksize=1, timeout=0.5)
        assert time.monotonic() - started < PATIENCE / 2
        assert wait_until(lambda: not any(client.processing().values()), timeout=PATIENCE)
    finally:
        event.set()  # the two tasks already running end now (a running task cannot be stopped)
    assert autopar.map(helpers.square, range(4), strategy="dask", dask=client) == [0, 1, 4, 9]


def test_imap_keeps_a_bounded_number_of_tasks_in_flight(client: Any) -> None:
    """imap over an endless generator reads only a bounded window ahead, and the pool caps tasks in flight."""
    read = 0

    def endless() -> Iterator[int]:
        nonlocal read
        while True:
            read += 1
            yield read

    results = autopar.imap(helpers.square, endless(), strategy="dask", dask=client, chunksize=1)
    first = [next(results) for _ in range(20)]
    assert first == [x * x for x in range(1, 21)]
    pool = next(p for p in _pools.live_pools() if isinstance(p, _dask.DaskPool))
    assert pool.capacity() + len(pool._futures) == 2 * 2  # two tasks per cluster thread
    # Two workers: a window of 4 chunks each, one item per chunk, beyond what was consumed.
    assert read <= 20 + 2 * 4 + 1
    results.close()  # type: ignore[attr-defined]


def test_pool_capacity_is_two_tasks_per_cluster_thread(client: Any) -> None:
    """A pool accepts two tasks per cluster thread, then none until an outcome is collected."""
    pool = _dask.DaskPool(2, PoolSpec(cluster=client, cluster_key="test"))
    try:
        assert pool.capacity() == 4
        for task_id in range(4):
            pool.submit(task_id, helpers.square, [task_id], task_id, False)
        assert pool.capacity() == 0
        outcomes: list[Any] = []
        deadline = time.monotonic() + PATIENCE
        while len(outcomes) < 4 and time.monotonic() < deadline:
            outcomes += pool.poll(1.0)
        assert sorted(outcomes) == [(i, [i * i], None) for i in range(4)]
        assert pool.capacity() == 4
    finally:
        pool.shutdown()
    assert client.status == "running"  # the program's client is never closed by autopar


def test_forcing_dask_without_a_cluster_names_the_ways_to_configure_one() -> None:
    """strategy="dask" with no option, no variable and no default client raises ValueError naming all three."""
    with pytest.raises(ValueError, match="needs a Dask cluster") as info:
        autopar.map(helpers.square, range(3), strategy="dask")
    message = str(info.value)
    assert "dask=" in message
    assert "AUTOPAR_DASK_SCHEDULER" in message
    assert "distributed.Client" in message


def test_initializer_runs_once_per_worker_process_before_its_items(client: Any, tmp_path: Path) -> None:
    """The initializer runs once in each worker process that runs items, before the first of them."""
    directory = str(tmp_path)
    items = [(directory, i) for i in range(40)]
    results = autopar.map(
        helpers.record_item,
        items,
        strategy="dask",
        dask=client,
        chunksize=2,
        initializer=helpers.record_init,
        initargs=(directory,),
    )
    assert results == [i * i for i in range(40)]
    by_process: dict[str, list[str]] = {}
    for path in tmp_path.iterdir():
        lines = path.read_text().splitlines()
        assert "init" not in lines[1:], f"an item ran before the initializer in {path.name}: {lines}"
        by_process.setdefault(path.name.split("-")[0], []).extend(lines)
    for lines in by_process.values():
        assert lines.count("init") == 1
    assert sum(line.startswith("item") for lines in by_process.values() for line in lines) == 40


def test_failing_initializer_fails_the_call_with_its_exception(client: Any, tmp_path: Path) -> None:
    """An initializer that raises fails the call with its own exception type."""
    with pytest.raises(helpers.InitFailedError, match="on purpose"):
        autopar.map(
            helpers.square,
            range(4),
            strategy="dask",
            dask=client,
            initializer=helpers.failing_init,
            initargs=(str(tmp_path),),
        )


@pytest.mark.parametrize(
    ("options", "words"),
    [({"shared": {"k": 1}}, "shared= is not supported"), ({"item_timeout": 5.0}, "item_timeout=5.0 is not supported")],
    ids=["shared", "item_timeout"],
)
def test_unsupported_options_raise_before_anything_runs(client: Any, options: dict[str, Any], words: str) -> None:
    """shared= and item_timeout= with a forced dask raise ValueError saying so, and nothing reaches the cluster."""
    with pytest.raises(ValueError, match=words):
        autopar.map(
            helpers.lookup if "shared" in options else helpers.square, range(3), strategy="dask", dask=client, **options
        )


def test_default_client_serves_when_nothing_is_configured(client: Any) -> None:
    """The program's current client is the cluster when no option or variable names one."""
    with client.as_current():
        assert autopar.map(helpers.square, range(5), strategy="dask") == [0, 1, 4, 9, 16]


def test_config_scope_names_the_cluster(client: Any) -> None:
    """autopar.config(dask=client) points every call in the block at the cluster."""
    with autopar.config(dask=client):
        assert autopar.map(helpers.square, range(5), strategy="dask") == [0, 1, 4, 9, 16]


def test_environment_variable_names_the_cluster_and_autopar_closes_its_client(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AUTOPAR_DASK_SCHEDULER names the scheduler; the client autopar opened for it is closed at shutdown."""
    monkeypatch.setenv("AUTOPAR_DASK_SCHEDULER", client.scheduler.address)
    assert autopar.map(helpers.square, range(5), strategy="dask") == [0, 1, 4, 9, 16]
    owned = _dask_cluster._owned[client.scheduler.address]
    assert owned is not client
    autopar.shutdown()
    assert owned.status == "closed"
    assert client.status == "running"


@pytest.mark.slow
def test_killed_worker_raises_worker_crashed_error_naming_the_item() -> None:
    """When Dask gives up on a task whose workers died, the call raises WorkerCrashedError naming the item."""
    import dask

    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(n_workers=1, **LOCAL) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
        pytest.raises(autopar.WorkerCrashedError, match="item 3") as info,
    ):
        autopar.map(helpers.exit_on_3, range(6), strategy="dask", dask=client, chunksize=1)
    assert info.value.index == 3
    assert "Dask gave up" in str(info.value)


@pytest.fixture(name="forget_unreachable")
def _forget_unreachable() -> Iterator[None]:
    """No address counts as unreachable before the test, nor after it."""
    _dask_cluster.forget_unreachable()
    yield
    _dask_cluster.forget_unreachable()


@pytest.mark.usefixtures("forget_unreachable")
def test_unreachable_scheduler_fails_a_forced_call_and_is_skipped_by_auto(caplog: pytest.LogCaptureFixture) -> None:
    """No scheduler at the address: connecting raises ConnectionError naming it; auto warns and runs locally.

    The failed attempt leaves no thread behind, and the address is not tried again at every call:
    the forced call repeats the first attempt's error (its 0.2 s timeout) instead of waiting 10 s.
    """
    loops_before = sum(t.name == "IO loop" for t in threading.enumerate())
    address = "tcp://127.0.0.1:9"  # the discard port: nothing listens there
    with pytest.raises(ConnectionError, match=re.escape(address)):
        _dask_cluster.find_cluster(address, connect_timeout_s=0.2)
    with pytest.raises(ConnectionError, match=re.escape(f"{address!r} within 0.2 s")):
        autopar.map(helpers.square, range(3), strategy="dask", dask=address)
    started = time.monotonic()
    assert autopar.map(helpers.square, range(20_000), dask=address) == [x * x for x in range(20_000)]
    assert "the Dask cluster is unreachable" in caplog.text
    assert time.monotonic() - started < PATIENCE
    assert wait_until(lambda: sum(t.name == "IO loop" for t in threading.enumerate()) <= loops_before)


def test_auto_lists_the_cluster_and_keeps_small_work_local(client: Any) -> None:
    """With a cluster configured, explain() lists dask as a candidate, and tiny work stays on this machine."""
    decision = autopar.explain(helpers.square, range(2000), dask=client)
    assert "dask" in {c.strategy for c in decision.candidates}
    assert decision.strategy != "dask"
    assert f"Dask cluster {client.scheduler.address}: 2 worker(s) x 1 thread(s) (a process each)" in str(decision)


def test_importing_autopar_does_not_import_dask() -> None:
    """``import autopar`` and an auto call in a fresh interpreter import neither dask nor distributed."""
    code = (
        "import sys, autopar; autopar.map(abs, range(100)); print('dask' in sys.modules, 'distributed' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]


USER_SCRIPT = textwrap.dedent(
    """
    import json
    import time

    import autopar


    def slow_square(x):
        time.sleep(0.2)
        return x * x


    if __name__ == "__main__":
        results = autopar.map(slow_square, range(40), strategy="dask", chunksize=1)
        small = autopar.map(abs, range(10))
        print(json.dumps({"results": results, "small": small, "small_strategy": autopar.explain(abs, range(10)).strategy}))
    """
)


def _dask_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("dask")), *args]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_unmodified_script_survives_a_killed_worker_on_a_cli_cluster(tmp_path: Path) -> None:
    """A script pointed at a CLI-started cluster by AUTOPAR_DASK_SCHEDULER gets every result in order
    though a worker is killed mid-run, and still runs tiny work locally."""
    scheduler_file = tmp_path / "s.json"
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT)
    processes: list[subprocess.Popen[bytes]] = []
    logs = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed in finally
        logs.append(log)
        proc = subprocess.Popen(_dask_command(*args), stdout=log, stderr=subprocess.STDOUT)
        processes.append(proc)
        return proc

    file_args = ["--scheduler-file", str(scheduler_file)]
    loopback = ["--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", *loopback, *file_args)
        assert wait_until(scheduler_file.exists, timeout=PATIENCE), "the scheduler wrote no scheduler file"
        assert wait_until(lambda: "address" in scheduler_file.read_text(), timeout=PATIENCE)
        address = json.loads(scheduler_file.read_text())["address"]
        worker_args = ["--nworkers", "1", "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1", *loopback]
        workers = [start(f"worker{i}", "worker", *worker_args, *file_args) for i in range(2)]
        with distributed.Client(address, set_as_default=False, timeout=PATIENCE) as watcher:
            watcher.wait_for_workers(2, timeout=PATIENCE)
            env = {**os.environ, "AUTOPAR_DASK_SCHEDULER": address}
            user = subprocess.Popen(
                [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            processes.append(user)
            busy = wait_until(lambda: sum(1 for keys in watcher.processing().values() if keys) == 2, timeout=PATIENCE)
            assert busy, "the script's tasks never ran on both workers"
            os.kill(workers[0].pid, signal.SIGKILL)
            out, err = user.communicate(timeout=90)
        assert user.returncode == 0, err.decode()
        report = json.loads(out.decode().strip().splitlines()[-1])
        assert report["results"] == [x * x for x in range(40)]
        assert report["small"] == list(range(10))
        assert report["small_strategy"] != "dask"
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=PATIENCE)
        for log in logs:
            log.close()
