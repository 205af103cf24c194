"""The wide thread probe that carries on through the input: every item once, in order, stopped when told."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import autopar
import helpers
from autopar._calibrate import Clocks, calibrate
from autopar._core._decide import decide
from autopar._core._sampling import ProbePlan
from autopar._gather import call_facts
from autopar._model import Options
from autopar._thread_carry import carry_threads
from autopar._thread_probe import ProbeReading
from autopar._worker import Failure

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.timeout(60)


class Counted:
    """Sleeps a little (so threads overlap) and counts each item it runs."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()
        self.fail_on = fail_on

    def __call__(self, x: int) -> int:
        time.sleep(0.002)
        with self.lock:
            self.calls.append(x)
        if x == self.fail_on:
            raise ValueError(f"bad item {x}")
        return x * 10


def _carry(
    func: Any, items: list[int], keep: bool, *, threads: int = 4, capture: bool = False, before: int = 0
) -> tuple[ProbeReading | None, bool, list[Any], Any]:
    source = iter(items)
    results: list[Any] = [None] * before  # items calibration ran before the probe
    readings: list[ProbeReading] = []

    def judge(reading: ProbeReading) -> bool:
        readings.append(reading)
        return keep

    reading, ended = carry_threads(
        func, source, ProbePlan(threads, 1, carry=True), capture, results, Clocks(), judge, lambda: None
    )
    assert readings == ([] if reading is None else [reading])  # judged once, on the first round
    return reading, ended, results[before:], source


def test_carries_on_through_the_input_in_order_each_item_once() -> None:
    """Kept, the threads run every item exactly once; results come back in input order after the earlier ones."""
    before = threading.active_count()
    func = Counted()
    reading, ended, results, _ = _carry(func, list(range(50)), keep=True, before=3)
    assert ended
    assert results == [x * 10 for x in range(50)]
    assert sorted(func.calls) == list(range(50))
    assert reading is not None
    assert reading.items == 4
    assert reading.wall_s > 0
    assert threading.active_count() == before


def test_every_item_run_has_one_span_naming_its_thread_and_position() -> None:
    """The spans the report shows: one per item run, on one of the plan's threads, in input order."""
    spans: list[tuple[int, int, float, float]] = []
    results: list[Any] = [None] * 2
    carry_threads(
        Counted(), iter(range(30)), ProbePlan(4, 1, carry=True), False, results, Clocks(), bool, lambda: None, spans
    )
    assert [position for _, position, _, _ in spans] == list(range(2, 32))
    assert {thread for thread, _, _, _ in spans} <= set(range(4))
    assert all(began <= ended for _, _, began, ended in spans)


def test_stops_after_the_first_round_when_threads_lose() -> None:
    """Not kept, the threads take no more items: the rest of the input is left unread, for the decided strategy."""
    func = Counted()
    reading, ended, results, source = _carry(func, list(range(50)), keep=False)
    assert not ended
    assert reading is not None
    ran = len(results)
    assert results == [x * 10 for x in range(ran)]
    assert sorted(func.calls) == list(range(ran))
    assert 4 <= ran < 50
    assert next(source) == ran  # the next item is the first one not run


def test_a_short_input_ends_before_the_first_round() -> None:
    """Fewer items than threads: every item runs, no reading, the input ended."""
    func = Counted()
    reading, ended, results, _ = _carry(func, [1, 2], keep=True)
    assert reading is None
    assert ended
    assert results == [10, 20]


def test_a_failing_item_raises_after_the_items_before_it_and_stops_taking_more() -> None:
    """Without captured errors the first failing item's exception propagates; no item is taken after it."""
    func = Counted(fail_on=7)
    with pytest.raises(ValueError, match="bad item 7"):
        _carry(func, list(range(200)), keep=True)
    assert sorted(func.calls)[:8] == list(range(8))
    assert len(func.calls) < 200


def test_an_input_that_raises_ends_the_carry_and_its_error_follows_every_item_taken() -> None:
    """A Sized input whose iterator raises mid-way: each item read runs once, then the input's error propagates."""
    func = Counted()

    def broken() -> Iterator[int]:
        yield from range(30)
        raise OSError("the input broke")

    results: list[Any] = []
    with pytest.raises(OSError, match="the input broke"):
        carry_threads(func, broken(), ProbePlan(4, 1, carry=True), False, results, Clocks(), bool, lambda: None)
    assert results == [x * 10 for x in range(30)]
    assert sorted(func.calls) == list(range(30))


def test_captured_errors_take_their_slot_and_the_rest_goes_on() -> None:
    func = Counted(fail_on=7)
    _, ended, results, _ = _carry(func, list(range(30)), keep=True, capture=True)
    assert ended
    assert isinstance(results[7], Failure)
    assert [r for i, r in enumerate(results) if i != 7] == [x * 10 for x in range(30) if x != 7]


def test_a_deadline_stops_the_threads_taking_items_and_returns_at_once() -> None:
    """A timeout while the threads carry on: the caller raises at once; the threads end after their item."""
    func = Counted()
    started = time.monotonic()

    def check() -> None:
        if time.monotonic() - started > 0.1:
            raise TimeoutError("deadline")

    before = threading.active_count()
    with pytest.raises(TimeoutError):
        carry_threads(func, iter(range(100_000)), ProbePlan(4, 1, carry=True), False, [], Clocks(), bool, check)
    assert time.monotonic() - started < 2
    taken = len(func.calls)
    time.sleep(0.05)
    assert len(func.calls) <= taken + 4  # at most the items running then
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


@pytest.mark.parametrize("kind", [list, iter])
def test_map_over_items_that_wait_then_hash_in_c_runs_each_once_in_order(tmp_path: Path, kind: Any) -> None:
    """A first call on items that wait, then hash in C (threads carry on through a list): each runs once, in order."""
    items = [(str(tmp_path), x) for x in range(40)]
    assert autopar.map(helpers.record_wait_then_hash, kind(items)) == [x * x for x in range(40)]
    lines = [line for path in tmp_path.iterdir() for line in path.read_text().split("\n") if line]
    assert sorted(int(line.split()[1]) for line in lines) == list(range(40))


def test_a_carried_call_reports_threads_and_each_item_once_in_rows_of_their_own(tmp_path: Path) -> None:
    """report=True on a call whose probe carried on: threads decided, each item in one row once, the threads' own rows.

    Calibration is the caller's items and the probe's first round, one item on each thread.
    """
    items = [(str(tmp_path), x) for x in range(40)]
    assert autopar.map(helpers.record_wait_then_hash, items, report=True) == [x * x for x in range(40)]
    report = autopar.last_report()
    assert report is not None
    assert report.decision is not None
    m = report.decision.measurements
    assert m is not None
    positions = sorted(p for w in report.workers for s in w.spans for p in range(s.start, s.start + s.items))
    assert positions == list(range(40))
    threads = [w for w in report.workers if w.name.startswith("thread ")]
    assert [w.name for w in report.workers][-len(threads) :] == [f"thread {i}" for i in range(len(threads))]
    assert report.strategy == "threads"
    assert report.decision.workers <= len(threads)  # the threads that carried on, for the items after their first round
    caller = next(w for w in report.workers if w.name == "caller")
    assert report.calibration_items == m.sampled == caller.items + len(threads)
    assert report.predicted_s == report.calibration_s + (report.decision.predicted_s or 0.0)


def _wait_then_hash(x: int) -> int:
    time.sleep(0.02)
    hashlib.sha256(bytes(8_000_000)).digest()
    return x * 3


def test_a_carried_calibration_hands_the_call_the_measurements_its_judge_kept_threads_on() -> None:
    """The call decides on what the judge saw (the caller's items and the first round): threads, as the judge said.

    Priced from before the probe, the rest looked long enough for a process pool, which a call whose
    input the threads had already run to its end then took as its own and returned nothing.
    """
    judged: list[Any] = []

    def judge(m: Any) -> bool:
        judged.append(m)
        return True

    facts = call_facts()
    cal = calibrate(_wait_then_hash, iter(range(40)), n_items=40, facts=facts, judge=judge)
    assert cal.carried
    assert cal.results == [x * 3 for x in range(40)]
    assert len(judged) == 1
    assert (
        cal.measurements.sampled
        == judged[0].sampled
        == 40 - len(cal.thread_spans) + cal.measurements.thread_probe_workers
    )
    assert cal.measurements.thread_speedup == judged[0].thread_speedup
    assert decide(cal.measurements, facts, Options()).strategy == decide(judged[0], facts, Options()).strategy
    round_ended = sorted(ended for *_, ended in cal.thread_spans)[cal.measurements.thread_probe_workers - 1]
    first_began = min(began for _, _, began, _ in cal.thread_spans)
    assert first_began < round_ended
    assert sorted(position for _, position, _, _ in cal.thread_spans) == list(range(40 - len(cal.thread_spans), 40))


_CTRL_C_CARRY = """
import hashlib, multiprocessing, os, signal, sys, threading, time
import autopar

def item(path):
    open(path, "w").close()
    time.sleep(0.02)
    hashlib.sha256(bytes(8_000_000)).digest()
    return path

def interrupt(directory):
    deadline = time.monotonic() + 60
    while len(os.listdir(directory)) < 12 and time.monotonic() < deadline:
        time.sleep(0.002)
    global interrupted_at, threads_then
    threads_then = threading.active_count()
    interrupted_at = time.monotonic()
    os.kill(os.getpid(), signal.SIGINT)

if __name__ == "__main__":
    directory = sys.argv[1]
    threading.Thread(target=interrupt, args=(directory,), daemon=True).start()
    before = threading.active_count()  # the interrupting thread's included: it ends first
    try:
        autopar.map(item, [os.path.join(directory, str(i)) for i in range(60)])
    except KeyboardInterrupt:
        returned_s = time.monotonic() - interrupted_at
        time.sleep(0.5)  # the threads end after their item
        print(f"returned_s={returned_s:.3f} threads_then={threads_then} threads_after={threading.active_count()} threads_before={before} "
              f"workers_left={len(multiprocessing.active_children())}")
"""


def test_ctrl_c_while_the_probe_carries_on_returns_within_2_s_and_leaves_nothing(tmp_path: Path) -> None:
    """SIGINT while the carrying probe's threads run items that wait, then hash: KeyboardInterrupt within 2 s;
    the threads end after their item, and no process is left."""
    script = tmp_path / "interrupt_me.py"
    script.write_text(_CTRL_C_CARRY)
    started = tmp_path / "started"
    started.mkdir()
    done = helpers.run_python([str(script), str(started)], tmp_path, timeout=100)
    assert "returned_s=" in done.stdout, done.stdout + done.stderr
    report = {name: float(value) for name, value in (part.split("=") for part in done.stdout.split())}
    assert report["threads_then"] >= 4, report  # the items ran on the probe's threads
    assert report["returned_s"] < 2.0, report
    assert report["threads_after"] < report["threads_before"], report
    assert report["workers_left"] == 0, report
