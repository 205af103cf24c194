"""Bounded cancellation: Ctrl-C returns within 2 s, a cancelled ``amap`` within 1 s, under every strategy.

Busy process workers are terminated together and busy threads abandoned (they
are daemons), never joined one after another.  Ctrl-C runs in a child
interpreter that interrupts itself from a watchdog thread once the items run
(or while its pool starts) and reports how long the call took to return.
The time limits in the tests are the contract; the test timeouts only guard
against deadlocks.
"""

from __future__ import annotations

import asyncio
import os
import time
from multiprocessing import forkserver, resource_tracker
from typing import TYPE_CHECKING

import pytest

import autopar
import helpers
from conftest import live_children, wait_until

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [
    pytest.mark.timeout(120),
    # amap drives the call from a thread of its own, which makes a forced fork warn, and
    # Python 3.15's os.fork() warns too when the process has other threads.
    pytest.mark.filterwarnings("ignore::autopar.UnsafeStrategyWarning"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

#: Ctrl-C returns within this many seconds, and a cancelled amap or aimap within this many.
CTRL_C_BOUND_S = 2.0
CANCEL_BOUND_S = 1.0

_CTRL_C_SCRIPT = """
import multiprocessing, os, signal, sys, threading, time
import autopar

def sleep_item(path):
    open(path, "w").close()
    time.sleep(60)
    return path

def interrupt(directory, running, after_s):
    # Once ``running`` items run, or ``after_s`` seconds into the call (while its pool starts).
    deadline = time.monotonic() + 60
    if running:
        while len(os.listdir(directory)) < running and time.monotonic() < deadline:
            time.sleep(0.005)
    else:
        time.sleep(after_s)
    global interrupted_at
    interrupted_at = time.monotonic()
    os.kill(os.getpid(), signal.SIGINT)

if __name__ == "__main__":
    strategy, workers, directory = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    running, after_s = int(sys.argv[4]), float(sys.argv[5])
    threading.Thread(target=interrupt, args=(directory, running, after_s), daemon=True).start()
    items = [os.path.join(directory, str(i)) for i in range(500)]
    try:
        autopar.map(sleep_item, items, strategy=strategy, workers=workers, chunksize=1)
    except KeyboardInterrupt:
        returned_s = time.monotonic() - interrupted_at
        print(f"returned_s={returned_s:.3f} workers_left={len(multiprocessing.active_children())}")
"""


def _ctrl_c(tmp_path: Path, strategy: str, workers: int, running: int, after_s: float = 0.0) -> dict[str, float]:
    """Run the Ctrl-C script; return what it printed, as numbers."""
    script = tmp_path / "interrupt_me.py"
    script.write_text(_CTRL_C_SCRIPT)
    started = tmp_path / "started"
    started.mkdir()
    args = [str(script), strategy, str(workers), str(started), str(running), str(after_s)]
    done = helpers.run_python(args, tmp_path, timeout=100)
    assert "returned_s=" in done.stdout, done.stdout + done.stderr
    fields = dict(part.split("=") for part in done.stdout.split())
    return {name: float(value) for name, value in fields.items()}


@pytest.mark.parametrize(
    ("strategy", "workers"),
    [("serial", 1), ("threads", 32), ("threads", 2), ("fork", 8), ("forkserver", 8), ("spawn", 8), ("spawn", 1)],
)
def test_ctrl_c_returns_within_2_s_while_every_worker_is_busy(tmp_path: Path, strategy: str, workers: int) -> None:
    """SIGINT once every worker runs a 60 s item: KeyboardInterrupt within 2 s, no process worker left."""
    report = _ctrl_c(tmp_path, strategy, workers, running=workers)
    assert report["returned_s"] < CTRL_C_BOUND_S, report
    assert report["workers_left"] == 0


@pytest.mark.parametrize("strategy", ["fork", "forkserver", "spawn"])
def test_ctrl_c_returns_within_2_s_while_the_pool_starts(tmp_path: Path, strategy: str) -> None:
    """SIGINT 50 ms into a call that starts 8 process workers: KeyboardInterrupt within 2 s."""
    report = _ctrl_c(tmp_path, strategy, 8, running=0, after_s=0.05)
    assert report["returned_s"] < CTRL_C_BOUND_S, report


def _worker_processes(before: set[int]) -> set[int]:
    """Live child processes started since ``before``, other than the standard library's servers."""
    servers = {
        getattr(forkserver._forkserver, "_forkserver_pid", None),
        getattr(resource_tracker._resource_tracker, "_pid", None),
    }
    return live_children() - before - servers


def _cancel_amap_once_running(strategy: str, tmp_path: Path, *, use_aimap: bool) -> float:
    """Cancel the task awaiting amap (or iterating aimap) over 0.5 s items once they run; the cancellation's time."""
    items = [(str(tmp_path), 0.5)] * 200

    async def consume() -> list[float]:
        if use_aimap:
            return [x async for x in autopar.aimap(helpers.touch_then_sleep, items, strategy=strategy, workers=2)]
        return await autopar.amap(helpers.touch_then_sleep, items, strategy=strategy, workers=2)

    async def main() -> float:
        task = asyncio.create_task(consume())
        while not os.listdir(tmp_path) and not task.done():
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)  # items run in the pool (or in the call's thread, for serial)
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - cancelled_at

    return asyncio.run(main())


@pytest.mark.parametrize("use_aimap", [False, True], ids=["amap", "aimap"])
def test_cancelling_amap_completes_within_1_s_and_leaves_no_worker(
    strategy: str, tmp_path: Path, use_aimap: bool
) -> None:
    """Cancelling the awaiting task while 0.5 s items run completes within 1 s; no worker process is left."""
    before = _worker_processes(set())
    elapsed = _cancel_amap_once_running(strategy, tmp_path, use_aimap=use_aimap)
    assert elapsed < CANCEL_BOUND_S, elapsed
    assert _worker_processes(before) == set()


@pytest.mark.parametrize("strategy", ["fork", "spawn"])
def test_cancelling_amap_while_its_pool_starts_completes_within_1_s(strategy: str, tmp_path: Path) -> None:
    """Cancelled before any item runs, while workers start: within 1 s, and the workers end soon after."""
    before = _worker_processes(set())

    async def main() -> float:
        task = asyncio.create_task(
            autopar.amap(helpers.touch_then_sleep, [(str(tmp_path), 0.5)] * 50, strategy=strategy, workers=4)
        )
        await asyncio.sleep(0.05)
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - cancelled_at

    elapsed = asyncio.run(main())
    assert elapsed < CANCEL_BOUND_S, elapsed
    assert wait_until(lambda: _worker_processes(before) == set(), timeout=30)
