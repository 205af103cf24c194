"""Shared fixtures: a clean environment per test, and no process or thread left behind."""

from __future__ import annotations

import multiprocessing.resource_tracker
import signal
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

import autopar
from autopar import _cache, _pools, _warn
from autopar._registry import strategy_names

# A runner that starts the suite with SIGINT ignored (a shell's background job) would pass that on to
# every child process, and the Ctrl-C tests would wait for an interrupt that never comes: a handler set
# here is reset to the default in children, where Python turns SIGINT into KeyboardInterrupt again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: The built-in strategies every behaviour test runs under.
BUILTIN_STRATEGIES = ("serial", "threads", "fork", "forkserver", "spawn")
PROCESS_STRATEGIES = ("fork", "forkserver", "spawn")


def live_children() -> set[int]:
    """Live (not zombie) child processes of this process, at any depth."""
    pids = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            pass  # it ended while we looked
    return pids


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@pytest.fixture(autouse=True, scope="session")
def _resource_tracker_running() -> None:
    """Start multiprocessing's resource tracker before any test snapshots the child processes.

    Process pools and shared memory register with this helper process, which then
    lives for the whole session, like the forkserver server; started inside a test,
    the leak check below would report it as a leftover.
    """
    multiprocessing.resource_tracker.ensure_running()


@pytest.fixture(autouse=True)
def _clean_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Remove AUTOPAR_* variables, forget cached measurements and warnings, and shut every pool down afterwards."""
    for var in (
        "AUTOPAR_STRATEGY",
        "AUTOPAR_WORKERS",
        "AUTOPAR_CACHE_DIR",
        "AUTOPAR_DASK_SCHEDULER",
        "AUTOPAR_NATIVE_THREADS",
    ):
        monkeypatch.delenv(var, raising=False)
    _cache.clear()
    _warn.forget_warnings()
    yield
    _pools.shutdown_all()
    _cache.clear()


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    """Fail a test that leaves worker processes or autopar threads running after pools shut down."""
    before_children = live_children()
    yield
    _pools.shutdown_all()
    # The forkserver's server and the resource tracker belong to the standard library and
    # live for the whole session once started.
    from multiprocessing import forkserver, resource_tracker

    server = {
        getattr(forkserver._forkserver, "_forkserver_pid", None),
        getattr(resource_tracker._resource_tracker, "_pid", None),
    }
    ok = wait_until(lambda: live_children() - before_children - server == set(), timeout=10)
    assert ok, f"worker processes left behind: {live_children() - before_children - server}"
    ok = wait_until(
        lambda: not [t for t in threading.enumerate() if t.name.startswith("autopar-") and t.is_alive()], timeout=10
    )
    assert ok, (
        f"autopar threads left behind: {[t.name for t in threading.enumerate() if t.name.startswith('autopar-')]}"
    )


@pytest.fixture(name="strategy", params=BUILTIN_STRATEGIES)
def _strategy(request: pytest.FixtureRequest) -> str:
    """Each built-in strategy, by name."""
    name: str = request.param
    assert name in strategy_names()
    return name


@pytest.fixture(name="process_strategy", params=PROCESS_STRATEGIES)
def _process_strategy(request: pytest.FixtureRequest) -> str:
    """Each process start method."""
    name: str = request.param
    return name


__all__ = ["live_children", "BUILTIN_STRATEGIES", "PROCESS_STRATEGIES", "autopar", "wait_until"]
