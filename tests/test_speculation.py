"""A first call hands its first items to fork workers while the caller measures the next ones.

These run only where the core's ``speculation_plan`` speculates: Linux, fork
safe (one thread), fork the interpreter's default, two CPUs or more.
"""

from __future__ import annotations

import ast
import functools
import logging
import os
import threading
import time

import pytest

import autopar
import helpers
from autopar._core._plans import speculation_plan
from autopar._errors import RemoteTraceback
from autopar._gather import call_facts
from autopar._model import Options, PoolSpec, Shipping
from autopar._serialize import first_use_imports
from autopar._strategies._process._pool import ProcessPool


def _speculates() -> bool:
    plan = speculation_plan(call_facts(), Options(), 100, Shipping(name="f"))
    return plan is not None and not plan.in_background  # tests/test_background_speculation.py has the others


pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not _speculates(), reason="a first call speculates only where fork is safe and the default"),
]


def test_first_item_runs_in_a_worker_and_every_item_once_in_order(caplog: pytest.LogCaptureFixture) -> None:
    """Item 0 runs in a fork worker while the caller measures the next ones; results stay in input order."""
    with caplog.at_level(logging.DEBUG, logger="autopar"):
        out = autopar.map(helpers.pid_and_square, range(40))
    assert [square for _, square in out] == [x * x for x in range(40)]
    assert out[0][0] != os.getpid(), caplog.text
    assert os.getpid() in {pid for pid, _ in out[1:]}  # the caller's serial sample
    assert any("in process workers meanwhile" in r.getMessage() for r in caplog.records)


def test_every_item_runs_exactly_once_with_a_speculative_worker(tmp_path) -> None:
    """Items handed to workers before measuring run once, like every other item."""
    items = list(range(60))
    out = autopar.map(helpers.record_item, [(str(tmp_path), x) for x in items])
    assert out == [x * x for x in items]
    lines = [line for path in tmp_path.iterdir() for line in path.read_text().split("\n") if line]
    assert sorted(int(line.split()[1]) for line in lines) == items


def test_an_exception_in_a_speculative_item_is_raised_with_its_type() -> None:
    """Item 0 raising in a worker fails the call with ValueError and the worker's traceback."""
    with pytest.raises(ValueError, match="item 0 failed") as info:
        autopar.map(helpers.fail_on_0, range(20))
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "fail_on_0" in str(info.value.__cause__)


def test_errors_return_keeps_the_speculative_items_exception_in_its_slot() -> None:
    """With errors="return", item 0's exception is its result and every other result is kept."""
    out = autopar.map(helpers.fail_on_0, range(20), errors="return")
    assert isinstance(out[0], ValueError)
    assert out[1:] == list(range(1, 20))


def test_an_unpicklable_first_item_runs_in_the_caller() -> None:
    """A first item that cannot be pickled is not sent to a worker: it runs with the caller's sample."""
    lock = threading.Lock()
    out = autopar.map(helpers.identity, [lock, 1, 2, 3])
    assert out == [lock, 1, 2, 3]


def test_a_timeout_during_calibration_stops_the_speculative_worker() -> None:
    """The call's timeout also covers the worker's first item: TimeoutError well before it would end.

    The autouse fixture then finds no worker process left.
    """
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        autopar.map(helpers.sleep_for, [20.0, 0.3, 0.3], timeout=0.6)
    assert time.monotonic() - started < 10  # a deadlock guard: the item alone would take 20 s


def test_a_big_first_item_runs_in_the_caller() -> None:
    """A first item over the size a first call sends blind is not sent: no pickling before the call knows the cost."""
    big = bytes(1024 * 1024)
    out = autopar.map(helpers.pid_of, [big, b"x", b"y"])
    assert out[0] == os.getpid()


def test_a_first_item_of_a_million_elements_starts_no_pool() -> None:
    """Lists of a million ints state no size, but their length bounds it: they run in the caller, no worker forks.

    Sent blind, the first one cost 70 ms of pickling and a wait for a worker, for work of microseconds.
    """
    items = [list(range(1_000_000)) for _ in range(4)]
    out = autopar.map(helpers.pid_of, items, report=True)
    assert out == [os.getpid()] * 4
    report = autopar.last_report()
    assert report is not None
    assert [worker.name for worker in report.workers] == ["caller"], report.workers


class _Payload:
    """An object that states no size and has no length: only pickling it shows its size."""

    def __init__(self, size: int) -> None:
        self.data = bytes(size)


def test_a_first_item_that_only_pickling_shows_big_starts_no_pool() -> None:
    """An object of 8 MB that says nothing of its size is pickled into a buffer that stops past 64 KB: not sent."""
    out = autopar.map(helpers.pid_of, [_Payload(8 * 1024 * 1024) for _ in range(4)], report=True)
    assert out == [os.getpid()] * 4
    report = autopar.last_report()
    assert report is not None
    assert [worker.name for worker in report.workers] == ["caller"], report.workers


def test_a_first_item_too_big_to_send_blind_starts_no_pool() -> None:
    """16 arguments of 20 MB with trivial work: no worker forks for items it would not be sent (it cost 4 ms)."""
    out = autopar.map(helpers.pid_of, [bytes(20 * 1024 * 1024)] * 16, report=True)
    assert out == [os.getpid()] * 16
    report = autopar.last_report()
    assert report is not None
    assert [worker.name for worker in report.workers] == ["caller"], report.workers


def test_a_fork_decision_carries_the_first_item_on_without_waiting_for_it() -> None:
    """The decision is the early pool: the dispatch adopts item 0, still running, and the other worker goes on meanwhile."""
    out = autopar.map(helpers.pid_end_and_square_slow_0, range(30), report=True)
    assert [square for _, _, square in out] == [x * x for x in range(30)]
    report = autopar.last_report()
    assert report is not None
    assert report.strategy == "fork", report.reasons
    first_pid, first_ended, _ = out[0]
    others = [ended for pid, ended, _ in out[1:] if pid not in (os.getpid(), first_pid)]
    # Before, the call waited for item 0 before sending any other: every other worker's items ended after it.
    assert any(ended < first_ended for ended in others), report
    assert not any(w.name.startswith("early") for w in report.workers), report  # one pool served the whole call


def test_an_early_pool_tells_its_workers_boot_time_without_waiting_and_still_runs_its_tasks() -> None:
    """``booted_s`` reads the start-up messages that have arrived, never waits for one, and keeps each pipe in step."""
    pool = ProcessPool("fork", 2, PoolSpec(), ready_later=True)
    try:
        deadline = time.monotonic() + 20
        while (booted := pool.booted_s()) is None or any(w.awaiting_init for w in pool._workers):
            assert time.monotonic() < deadline, "the workers never reported ready"
            time.sleep(0.002)
        assert booted == max(w.ready - w.created for w in pool._workers)
        assert 0 < booted < 20
        pool.submit(7, helpers.square, [3, 4], 0, False)
        outcomes = []
        while not outcomes:
            assert time.monotonic() < deadline, "the task never came back"
            outcomes = pool.poll(0.1)
        assert outcomes == [(7, [9, 16], None)]
    finally:
        pool.shutdown()


_BOOT_SCRIPT = """
import logging, autopar

class Keep(logging.Handler):
    def emit(self, record):
        if record.getMessage().startswith("autopar calibration:"):
            print(repr(dict(record.args[0].worker_startup_s)))

def work(x):
    n = 200_000
    while n:
        n -= 1
    return x * x

logging.getLogger("autopar").addHandler(Keep())
logging.getLogger("autopar").setLevel(logging.DEBUG)
assert autopar.map(work, range(40)) == [x * x for x in range(40)]
"""


def test_a_first_call_prices_added_fork_workers_at_the_early_pools_boot_time(tmp_path) -> None:
    """A fresh process measured no fork start-up before: its early pool's booted workers are the measure."""
    done = helpers.run_python(["-c", _BOOT_SCRIPT], tmp_path)
    assert done.returncode == 0, done.stderr
    startup = ast.literal_eval(done.stdout.strip())
    assert 0 < startup["fork"] < 20, startup


def _imports_lazily(x: int) -> int:
    if x < 0:  # never runs: only the bytecode is read
        import os.path

        import not_a_module_autopar.sub  # type: ignore[import-not-found]  # noqa: F401
        from other_module_autopar import thing  # type: ignore[import-not-found]  # noqa: F401

        return len(os.path.sep)
    return x


def test_first_use_imports_names_the_modules_a_body_imports_that_are_not_loaded() -> None:
    """Read from the bytecode: nothing runs, loaded modules (os) are left out, submodules name their package."""
    expected = frozenset({"not_a_module_autopar", "other_module_autopar"})
    assert first_use_imports(_imports_lazily) == expected
    assert first_use_imports(functools.partial(_imports_lazily)) == expected
    assert first_use_imports(helpers.square) == frozenset()
    assert first_use_imports(len) == frozenset()  # no bytecode
    assert first_use_imports(lambda x: x) == frozenset()
