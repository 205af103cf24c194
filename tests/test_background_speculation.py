"""A first call starts forkserver or spawn workers from a thread while it measures, and hands them first items.

Where fork is not the preferred start method (a thread is running, Python 3.14's
forkserver default, macOS, Windows), ``BackgroundSpeculation`` starts the pool
once calibration has run ``BACKGROUND_AFTER_S``, and gives the first items to its
workers once they booted; an item not handed over when calibration ends runs in
the caller.  Whole calls run in child interpreters (a thread there makes fork
unsafe); the claim protocol is driven directly, with real workers.
"""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
from pathlib import Path

import attrs
import pytest

import helpers
from autopar import _pools
from autopar._core._plans import Speculate, speculation_plan
from autopar._gather import call_facts
from autopar._model import Options, PlatformFacts, PoolSpec, Shipping
from autopar._platform import probe_platform
from autopar._speculation_thread import BackgroundSpeculation
from autopar._worker import Failure

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif("forkserver" not in probe_platform().start_methods, reason="needs the forkserver start method"),
]

#: A child interpreter: a thread runs (fork is unsafe), then one auto call whose log and pids it prints.
_SCRIPT = """
import json, logging, os, sys, threading
import autopar, helpers
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger("autopar").addHandler(Keep())
logging.getLogger("autopar").setLevel(logging.DEBUG)
stop = threading.Event()
threading.Thread(target=stop.wait, daemon=True).start()
out = autopar.map(helpers.{func}, {items})
stop.set()
print(json.dumps({{"out": out, "caller": os.getpid(), "log": records}}))
"""


def _call_in_child(tmp_path: Path, func: str, items: str) -> dict[str, object]:
    env = {"PYTHONPATH": os.pathsep.join([helpers.SRC, str(Path(__file__).parent)])}
    done = helpers.run_python(["-c", textwrap.dedent(_SCRIPT.format(func=func, items=items))], tmp_path, env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_a_threaded_process_hands_its_first_item_to_a_forkserver_worker(tmp_path: Path) -> None:
    """Items of ~0.25 s: the forkserver pool starts while the caller measures, runs the first items, then serves the call."""
    plan = speculation_plan(attrs.evolve(call_facts(), python_threads=2), Options(), 8, Shipping(name="f"))
    assert plan is not None
    assert plan.in_background
    first = plan.items  # one per CPU: the workers boot while the caller computes
    got = _call_in_child(tmp_path, "pid_and_slow_square", f"[(x, {first}) for x in range(8)]")
    pids = [pid for pid, _ in got["out"]]  # type: ignore[union-attr]
    assert [square for _, square in got["out"]] == [x * x for x in range(8)]  # type: ignore[union-attr]
    assert got["caller"] not in pids[:first]
    assert pids[first] == got["caller"]  # the caller's sample follows the workers' first items
    log = "\n".join(got["log"])  # type: ignore[arg-type]
    assert f"{first} item(s) in process workers meanwhile" in log, log
    assert "fork is unsafe" in log, log


def test_short_work_in_a_threaded_process_starts_no_worker(tmp_path: Path) -> None:
    """Calibration of tiny items ends before the thread would start a pool: no process is ever started."""
    code = textwrap.dedent(
        """
        import json, threading, psutil, autopar
        stop = threading.Event()
        threading.Thread(target=stop.wait, daemon=True).start()
        out = autopar.map(abs, range(-500, 500))
        children = psutil.Process().children(recursive=True)
        stop.set()
        print(json.dumps([out == [abs(x) for x in range(-500, 500)], len(children)]))
        """
    )
    done = helpers.run_python(["-c", code], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [True, 0]


def test_every_item_runs_exactly_once_with_background_workers(tmp_path: Path) -> None:
    """Each item is recorded by exactly one process, whoever ran it."""
    directory = tmp_path / "items"
    directory.mkdir()
    got = _call_in_child(tmp_path, "record_item_slowly", f"[({str(directory)!r}, x) for x in range(40)]")
    assert got["out"] == [x * x for x in range(40)]
    lines = [line for path in directory.iterdir() for line in path.read_text().split("\n") if line]
    assert sorted(int(line.split()[1]) for line in lines) == list(range(40))


# --- the claim protocol, driven directly ---------------------------------------------------------------------------


def _speculation(after_s: float) -> tuple[BackgroundSpeculation, Speculate, PlatformFacts]:
    facts = probe_platform(memory=False)
    plan = Speculate("forkserver", 2, 1, in_background=True, after_s=after_s)
    return BackgroundSpeculation(plan, PoolSpec(), facts), plan, facts


def test_an_item_not_yet_handed_over_is_taken_back_and_runs_in_the_caller() -> None:
    """Calibration over before ``after_s``: the first item runs in the caller, once, and no pool starts."""
    speculation, _, _ = _speculation(after_s=5.0)
    rest = speculation.start(helpers.pid_and_square, iter(range(5)), capture_errors=False)
    assert list(rest) == [1, 2, 3, 4]
    assert speculation.collect(lambda: None) == {0: (os.getpid(), 0)}
    assert speculation.take("forkserver", 2) is None  # no pool was started: the call starts its own
    speculation.release()
    _pools.shutdown_all()
    assert not speculation.started


def test_a_booted_pool_runs_the_first_item_and_serves_the_decision() -> None:
    """After ``after_s`` the thread starts the pool and submits the item; ``take`` hands the pool over."""
    speculation, _, _ = _speculation(after_s=0.0)
    speculation.start(helpers.pid_and_square, iter(range(3)), capture_errors=False)
    deadline = time.monotonic() + 60
    while speculation.started is False or speculation._thread.is_alive():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    [(pid, square)] = speculation.collect(lambda: None).values()
    assert (pid != os.getpid(), square) == (True, 0)
    held = speculation.take("forkserver", 2)
    assert held is not None
    pool, _ = held
    pool.submit(7, helpers.pid_and_square, [3], 3, False)
    while not (outcomes := list(pool.poll(30))):
        pass
    assert outcomes[0][1][0][1] == 9
    _pools.release(pool, healthy=True)  # the test's leak check then finds no worker left


def test_a_failing_first_item_in_the_caller_keeps_its_exception_in_its_slot() -> None:
    """A claimed item that raises leaves a ``Failure`` in its slot, as a worker's failure does."""
    speculation, _, _ = _speculation(after_s=5.0)
    speculation.start(helpers.fail_on_0, iter(range(3)), capture_errors=False)
    [slot] = speculation.collect(lambda: None).values()
    assert isinstance(slot, Failure)
    assert isinstance(slot.exception(), ValueError)
    speculation.release()


def test_a_pool_still_booting_when_the_call_goes_elsewhere_is_shut_down_at_exit() -> None:
    """``release`` while the thread starts the pool: the thread gives it back, and ``shutdown_all`` waits for it."""
    speculation, _, _ = _speculation(after_s=0.0)
    speculation.start(helpers.pid_and_square, iter(range(3)), capture_errors=False)
    while not speculation.started:
        time.sleep(0.001)
    speculation.release()  # the thread may still be booting the workers
    _pools.shutdown_all()
    assert not any(t.name == "autopar-speculation" and t.is_alive() for t in threading.enumerate())
    # No worker is left either: the test's leak check, after this, finds none.


def test_a_decision_for_more_workers_of_the_pool_grows_it_and_keeps_its_first_items() -> None:
    """A decision of 3 forkserver workers takes the early pool of 2, grown by one; every item runs once."""
    from autopar._dispatch import Dispatch

    facts = probe_platform(memory=False)
    plan = Speculate("forkserver", 2, 2, in_background=True, after_s=0.0)
    speculation = BackgroundSpeculation(plan, PoolSpec(), facts)
    rest = speculation.start(helpers.pid_and_square, iter(range(7)), capture_errors=False)
    assert speculation.hand_over("forkserver", 1) is None  # fewer workers: the pool is not shrunk
    handover = speculation.hand_over("forkserver", 3)
    assert handover is not None
    try:
        assert handover.pool.workers == 3
        caller = [helpers.pid_and_square(next(rest))]
        dispatch = Dispatch(handover.pool, helpers.pid_and_square, rest, 4, chunksize=1, capture_errors=False)
        dispatch.adopt(handover.sent, handover.unsent, [None, None, *caller])
        out = [result for chunk in dispatch.chunks(ordered=True) for result in chunk]
        assert [square for _, square in out] == [x * x for x in range(7)]
        assert os.getpid() not in {pid for pid, _ in out[3:]}  # the rest ran in the pool, not here
    finally:
        _pools.release(handover.pool, healthy=True)
        speculation.release()


def test_a_decision_for_the_pool_takes_it_with_the_first_items_sent_or_not() -> None:
    """``hand_over`` waits for the boot, stops the thread sending, and the dispatch adopts every first item once."""
    from autopar._dispatch import Dispatch

    facts = probe_platform(memory=False)
    plan = Speculate("forkserver", 2, 2, in_background=True, after_s=0.0)
    speculation = BackgroundSpeculation(plan, PoolSpec(), facts)
    rest = speculation.start(helpers.pid_and_square, iter(range(6)), capture_errors=False)
    assert speculation.hand_over("spawn", 2) is None  # another decision: ``collect`` and ``take`` as before
    handover = speculation.hand_over("forkserver", 2)
    assert handover is not None
    assert [position for position, _ in handover.sent + handover.unsent] == [0, 1]
    caller = [helpers.pid_and_square(next(rest))]  # what calibration ran in the caller: item 2
    dispatch = Dispatch(handover.pool, helpers.pid_and_square, rest, 3, chunksize=1, capture_errors=False)
    dispatch.adopt(handover.sent, handover.unsent, [None, None, *caller])
    out = [result for chunk in dispatch.chunks(ordered=True) for result in chunk]
    assert [square for _, square in out] == [x * x for x in range(6)]
    assert out[2][0] == os.getpid()
    assert os.getpid() not in {pid for pid, _ in out[:2]}
    assert speculation.take("forkserver", 2) is None  # handed over once only
    _pools.release(handover.pool, healthy=True)
    speculation.release()
