"""Calibration: measures real items exactly once, with scripted clocks instead of waiting."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import attrs
import pytest

import autopar
import helpers
from autopar._bytecode import CShare
from autopar._calibrate import Clocks, calibrate
from autopar._core import _sampling
from autopar._core._decide import decide
from autopar._model import Options
from autopar._platform import probe_platform
from autopar._sample import sample_serially
from autopar._thread_probe import probe_threads
from autopar._worker import Failure


class FakeClock:
    """Time that moves only when the measured function says so."""

    def __init__(self) -> None:
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self.lock = threading.Lock()

    def compute(self, seconds: float) -> None:
        with self.lock:
            self.wall_s += seconds
            self.cpu_s += seconds

    def wait(self, seconds: float) -> None:
        with self.lock:
            self.wall_s += seconds

    def clocks(self, waits: int | None = 0) -> Clocks:
        # Fake time never queues for a CPU.
        return Clocks(
            wall=lambda: self.wall_s,
            thread=lambda: self.cpu_s,
            process=lambda: self.cpu_s,
            waits=lambda: waits,
            queued=lambda: 0.0,
        )


def test_calibration_keeps_results_in_order_and_leaves_the_rest_unread() -> None:
    """Sampled items' results come back in input order; the source continues right after them."""
    clock = FakeClock()

    def work(x: int) -> int:
        clock.compute(0.001)
        return x * 10

    source = iter(range(1000))
    cal = calibrate(work, source, n_items=1000, facts=probe_platform(), clocks=clock.clocks())
    count = len(cal.results)
    assert cal.results == [x * 10 for x in range(count)]
    assert next(source) == count
    assert cal.measurements.sampled == count


def test_serial_sample_stops_once_enough_work_is_seen() -> None:
    """With 1 ms items the serial sample stops at about the sample target, in doubling batches."""
    clock = FakeClock()

    def work(x: int) -> int:
        clock.compute(0.001)
        return x

    facts = attrs.evolve(probe_platform(), cpu_count=1)  # one CPU: no thread probe
    cal = calibrate(work, iter(range(100_000)), n_items=100_000, facts=facts, clocks=clock.clocks())
    m = cal.measurements
    assert m.item_wall_s == pytest.approx(0.001)
    assert m.item_cpu_s == pytest.approx(0.001)
    # Batches of 1, 2, 4 and 8 items reach the 15 ms target.
    assert m.sampled == 15
    assert m.thread_probe_workers == 0


def test_first_item_that_imports_a_module_is_run_but_not_timed(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An import on first use costs once: the sample times the items after it, and the thread counts are read again."""
    clock = FakeClock()
    (tmp_path / "heavy_on_first_use.py").write_text("IMPORTED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def work(x: int) -> int:
        if "heavy_on_first_use" not in sys.modules:
            clock.compute(0.5)  # what the import costs
            import heavy_on_first_use  # noqa: F401
        clock.compute(0.001)
        return x + 1

    facts = attrs.evolve(probe_platform(), cpu_count=1)  # one CPU: no thread probe
    cal = calibrate(work, iter(range(1000)), n_items=1000, facts=facts, clocks=clock.clocks())
    m = cal.measurements
    assert m.warmup_items == 1
    assert m.item_wall_s == pytest.approx(0.001)
    assert cal.results == [x + 1 for x in range(m.sampled)]
    assert "the first 1 untimed (it imported modules)" in str(decide(m, facts, Options()))


def test_thread_probe_of_gil_bound_work_reads_about_one() -> None:
    """Items that advance one shared clock (as the GIL serializes them) probe at about 1x on threads."""
    clock = FakeClock()

    def work(x: int) -> int:
        clock.compute(0.001)
        return x

    # No process pool here, so whether threads scale decides the strategy: the probe runs.  Without a
    # GIL no item is profiled first (the scripted clock's work would read as Python bytecode).
    facts = attrs.evolve(probe_platform(), cpu_count=2, start_methods=(), gil_enabled=False)
    cal = calibrate(work, iter(range(100_000)), n_items=100_000, facts=facts, clocks=clock.clocks())
    assert cal.measurements.thread_probe_workers == 2
    assert cal.measurements.thread_speedup == pytest.approx(1.0)


def test_thread_probe_skipped_when_a_cheap_process_pool_settles_it() -> None:
    """Computing work that a fork pool runs with little overhead needs no thread probe."""
    clock = FakeClock()

    def work(x: int) -> int:
        clock.compute(0.01)
        return x

    facts = attrs.evolve(
        probe_platform(),
        cpu_count=2,
        start_methods=("fork", "spawn"),
        default_start_method="fork",
        python_threads=1,
        native_threads=1,
    )
    cal = calibrate(work, iter(range(2000)), n_items=2000, facts=facts, clocks=clock.clocks())
    assert cal.measurements.thread_probe_workers == 0
    assert cal.measurements.thread_speedup is None


def test_small_input_samples_at_most_a_few_percent() -> None:
    """On a run estimated at 10 ms the sample is a single item and no thread probe runs."""
    clock = FakeClock()

    def work(x: int) -> int:
        clock.compute(0.001)
        return x

    cal = calibrate(work, iter(range(10)), n_items=10, facts=probe_platform(), clocks=clock.clocks())
    assert cal.measurements.sampled == 1
    assert cal.measurements.thread_speedup is None


def test_waiting_function_shows_low_thread_cpu() -> None:
    """A function that only waits measures no thread CPU and its blocking waits are recorded."""
    clock = FakeClock()

    def work(x: int) -> int:
        clock.wait(0.002)
        return x

    cal = calibrate(work, iter(range(500)), n_items=500, facts=probe_platform(), clocks=clock.clocks(waits=3))
    assert cal.measurements.item_cpu_s == 0.0
    assert cal.measurements.item_wall_s == pytest.approx(0.002)
    assert cal.measurements.item_waits == 0.0  # the scripted counter never moves


def _blocking_work(*, compute_s: float, wait_s: float) -> tuple[Callable[[int], int], Clocks]:
    """An item that computes, then blocks once, and the scripted clocks that count its blocking waits."""
    clock = FakeClock()
    blocked = [0]

    def work(x: int) -> int:
        clock.compute(compute_s)
        clock.wait(wait_s)
        blocked[0] += 1
        return x

    return work, attrs.evolve(clock.clocks(), waits=lambda: blocked[0])


def test_thread_probe_skipped_for_work_that_clearly_waits() -> None:
    """An item that blocks and barely computes goes to threads anyway: no probe delays the run."""
    work, clocks = _blocking_work(compute_s=0.0001, wait_s=0.02)
    facts = attrs.evolve(probe_platform(), cpu_count=2)
    cal = calibrate(work, iter(range(60)), n_items=60, facts=facts, clocks=clocks)
    m = cal.measurements
    assert m.sampled == 1
    assert m.thread_probe_workers == 0
    assert m.item_waits == 1.0
    decision = decide(m, facts, Options())
    assert decision.strategy == "threads"
    assert decision.workers > facts.cpu_count


def test_thread_probe_runs_for_work_that_waits_and_computes_where_its_computing_may_run_in_parallel() -> None:
    """An item that computes for a third of its time gets a probe when nothing tells its computing holds a GIL."""
    work, clocks = _blocking_work(compute_s=0.003, wait_s=0.006)
    facts = attrs.evolve(probe_platform(), cpu_count=2, start_methods=(), gil_enabled=False)
    cal = calibrate(work, iter(range(2000)), n_items=2000, facts=facts, clocks=clocks)
    assert cal.measurements.thread_probe_workers == 2


def test_items_whose_cpu_runs_python_bytecode_get_a_profile_instead_of_a_probe() -> None:
    """Under a GIL, an item whose computing is all Python bytecode is profiled, not probed: threads cannot run it.

    The profiled item runs once, its result kept in order, and the rest of the input stays unread.
    """
    facts = attrs.evolve(probe_platform(), cpu_count=2, start_methods=())
    work, clocks = _blocking_work(compute_s=0.003, wait_s=0.006)
    no_gil = attrs.evolve(facts, gil_enabled=False)
    probed = calibrate(work, iter(range(2000)), n_items=2000, facts=no_gil, clocks=clocks)
    work, clocks = _blocking_work(compute_s=0.003, wait_s=0.006)
    source = iter(range(2000))
    cal = calibrate(work, source, n_items=2000, facts=attrs.evolve(facts, gil_enabled=True), clocks=clocks)
    m = cal.measurements
    assert m.thread_probe_workers == 0
    assert cal.results == list(range(m.sampled))
    assert next(source) == m.sampled
    assert m.calibration_s < probed.measurements.calibration_s


@pytest.mark.parametrize("version", [(3, 10), (3, 11), (3, 12), (3, 15)])
def test_the_sample_reads_the_c_share_itself(version: tuple[int, int]) -> None:
    """The timed sample runs under the meter, so no item runs apart to be profiled before the probe.

    Its Python bytecode rules the probe out.  Before 3.12 the meter traces lines, and the
    time it may have added (at most its budget) is taken out of the batch it watched: here,
    where fake time moves in Python code, the first 9 ms item reads as 7-8 ms.  The rest of
    the input stays unread.
    """
    work, clocks = _blocking_work(compute_s=0.003, wait_s=0.006)
    facts = attrs.evolve(probe_platform(), cpu_count=2, start_methods=(), gil_enabled=True, python_version=version)
    source = iter(range(2000))
    cal = calibrate(work, source, n_items=2000, facts=facts, clocks=clocks)
    m = cal.measurements
    traced = sys.version_info < (3, 12)
    assert m.thread_probe_workers == 0
    assert m.sampled >= 2  # items of 9 ms reach the 15 ms target in their second batch
    taken_out = _sampling.PROFILE_S if traced else 0.0
    assert m.item_wall_s == pytest.approx((0.009 * m.sampled - taken_out) / m.sampled)
    assert cal.results == list(range(m.sampled))
    assert next(source) == m.sampled


class _SlowingMeter(CShare):
    """A meter that reports 1 ms of its own time in every batch it watches, as ``TracedShare`` reports its tracing."""

    batches = 0

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)  # type: ignore[arg-type]
        self.batches += 1
        self.slowed_s += 0.001


def test_the_sample_takes_the_meters_own_time_out_of_each_batch() -> None:
    clock = FakeClock()

    def work(x: int) -> int:
        clock.compute(0.003)
        return x

    meter = _SlowingMeter(thread_time=lambda: clock.cpu_s, wall_time=lambda: clock.wall_s)
    results: list[int] = []
    sample, ended = sample_serially(work, iter(range(100)), 100, clock.clocks(), False, results, lambda: None, meter)
    assert not ended
    assert results == list(range(sample.count))
    assert meter.batches >= 2
    taken_out = 0.001 * meter.batches
    assert sample.wall_s == pytest.approx(0.003 * sample.count - taken_out)
    assert sample.cpu_s == pytest.approx(0.003 * sample.count - taken_out)
    assert sample.process_s == pytest.approx(0.003 * sample.count - taken_out)


def test_exception_during_calibration_ends_the_sample_with_its_type() -> None:
    """A failing item ends the sample: its ``Failure`` holds its own exception type, and no item after it is read."""
    source = iter([3, 1, 2])
    cal = calibrate(helpers.fail_on, source, n_items=3, facts=probe_platform())
    assert cal.exhausted
    [failure] = cal.results
    assert isinstance(failure, Failure)
    with pytest.raises(ValueError, match="bad item 3"):
        raise failure.exception()
    assert list(source) == [1, 2]


def test_exception_during_calibration_is_captured_with_errors_return() -> None:
    """With capture_errors the failing item's slot holds a Failure and the sample goes on."""
    # Unknown length: tiny items are sampled until the input runs out.
    cal = calibrate(helpers.fail_on_3, iter(range(6)), n_items=None, facts=probe_platform(), capture_errors=True)
    assert cal.exhausted
    assert [type(r) for r in cal.results[3:4]] == [Failure]
    assert cal.results[:3] == [0, 1, 2]


def test_deadline_is_checked_between_batches() -> None:
    """The call's deadline check runs between sample batches and can stop calibration."""
    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) > 2:
            raise TimeoutError("time is up")

    with pytest.raises(TimeoutError):
        calibrate(helpers.square, iter(range(10**7)), n_items=None, facts=probe_platform(), check_deadline=check)


def test_every_item_runs_exactly_once_under_auto(tmp_path) -> None:
    """Under auto, calibration items and the rest each run once, and results keep input order."""
    items = list(range(300))
    out = autopar.map(helpers.append_line, [(str(tmp_path / "log"), i) for i in items])
    assert out == items
    lines = (tmp_path / "log").read_text().split()
    assert sorted(int(x) for x in lines) == items


def test_second_call_skips_calibration(caplog: pytest.LogCaptureFixture) -> None:
    """A second map over the same function and size class reuses the cached measurements."""
    with caplog.at_level(logging.DEBUG, logger="autopar"):
        assert autopar.map(helpers.square, range(5000)) == [x * x for x in range(5000)]
        assert autopar.map(helpers.square, range(5000)) == [x * x for x in range(5000)]
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("autopar calibration:") for m in messages) == 1
    assert sum(m.startswith("autopar (cached measurements):") for m in messages) == 1


def test_sample_target_is_a_module_constant() -> None:
    """The sample target is small: calibration stays a few percent of a one-second run."""
    assert _sampling.SERIAL_SAMPLE_S <= 0.05


def test_thread_probe_that_cannot_start_a_thread_runs_its_items_in_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process or thread limit stops the second probe thread: the probe gives no reading, and every
    item still runs exactly once, in order, with no probe thread left waiting."""
    starts = 0
    real_start = threading.Thread.start

    def limited_start(thread: threading.Thread) -> None:
        nonlocal starts
        starts += 1
        if starts > 1:
            raise RuntimeError("can't start new thread")
        real_start(thread)

    ran: list[int] = []
    results: list[int] = []
    clock = FakeClock()
    before = threading.active_count()
    monkeypatch.setattr(threading.Thread, "start", limited_start)
    reading = probe_threads(
        ran.append, iter(range(6)), _sampling.ProbePlan(threads=3, per_thread=2), False, results, clock.clocks()
    )
    monkeypatch.undo()
    assert reading is None
    assert ran == list(range(6))
    assert results == [None] * 6
    assert threading.active_count() == before


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_queued_clock_reads_time_spent_behind_another_process_on_the_same_cpu() -> None:
    """The sample's ``queued`` clock (Linux schedstat) grows while another process holds this thread's CPU."""
    clock = Clocks().queued
    if clock() is None:
        pytest.skip("this kernel gives no schedstat for threads")
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    rival = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(rival.pid, {cpu})
        os.sched_setaffinity(0, {cpu})  # this thread only: pytest's others keep theirs
        time.sleep(0.05)
        q0, w0, c0 = clock(), time.perf_counter(), time.thread_time()
        n = 3_000_000
        while n:
            n -= 1
        q1, w1, c1 = clock(), time.perf_counter(), time.thread_time()
    finally:
        os.sched_setaffinity(0, before)
        rival.kill()
        rival.wait(timeout=30)
    assert q0 is not None
    assert q1 is not None
    queued, wall, cpu_s = q1 - q0, w1 - w0, c1 - c0
    # Sharing one CPU with a busy loop, the thread waits for it a good part of the time, and
    # wall time is about CPU time plus time queued (the rest is scheduling slack).
    assert queued > 0.2 * wall, (queued, wall, cpu_s)
    assert cpu_s + queued == pytest.approx(wall, rel=0.25)


def test_calibration_reads_the_peak_memory_growth_of_the_serial_sample_only() -> None:
    """The growth of the process's peak memory over the serial sample: what one item holds at once."""
    clock = FakeClock()
    peaks = iter([500 * 2**20, 700 * 2**20])

    def work(x: int) -> int:
        clock.compute(0.001)
        return x

    clocks = attrs.evolve(clock.clocks(), peak=lambda: next(peaks))
    cal = calibrate(work, iter(range(1000)), n_items=1000, facts=probe_platform(), clocks=clocks, thread_probe=False)
    assert cal.measurements.peak_growth_bytes == 200 * 2**20


_PEAK_SCRIPT = """
import autopar, logging

class Keep(logging.Handler):
    def emit(self, record):
        if record.getMessage().startswith("autopar calibration:"):
            print(record.args[0].peak_growth_bytes)

def hold(x):
    block = b"x" * (160 * 2**20)  # every page written
    return len(block) + x

logging.getLogger("autopar").addHandler(Keep())
logging.getLogger("autopar").setLevel(logging.DEBUG)
assert autopar.map(hold, range(4)) == [160 * 2**20 + x for x in range(4)]
"""


@pytest.mark.skipif(sys.platform == "win32", reason="the peak is read from getrusage, which Windows lacks")
@pytest.mark.timeout(120)
def test_a_first_call_measures_the_memory_its_items_hold(tmp_path) -> None:
    """Items that each write 160 MiB: the fresh process's peak grew by about that over the serial sample.

    Started from this large process: on Linux the peak it inherits must not hide the growth."""
    done = helpers.run_python(["-c", _PEAK_SCRIPT], tmp_path)
    assert done.returncode == 0, done.stderr
    assert 150 * 2**20 <= int(done.stdout.split()[-1]) <= 400 * 2**20, done.stdout


def test_available_memory_is_read_only_where_an_items_memory_may_limit_the_workers() -> None:
    from autopar._gather import call_facts
    from autopar._model import Measurements
    from autopar._platform import with_memory

    before = call_facts()
    assert before.memory_available_bytes == 0  # a call does not read it up front
    assert with_memory(before, Measurements(n_items=8, peak_growth_bytes=2**20)) is before
    after = with_memory(before, Measurements(n_items=8, peak_growth_bytes=2**30))
    assert after.memory_available_bytes > 0


def test_thread_counts_are_read_again_after_an_import_on_first_use() -> None:
    """A first item's import may start threads (OpenBLAS does): the decision sees today's count, not the call's start."""
    from autopar._gather import call_facts, threads_now
    from autopar._model import Measurements

    before = call_facts()
    with helpers.a_waiting_thread():
        assert threads_now(before, Measurements(n_items=10)) is before  # nothing imported: nothing re-read
        after = threads_now(before, Measurements(n_items=10, warmup_items=1))
    assert after.python_threads == before.python_threads + 1
    assert after.native_threads >= before.native_threads + 1


def test_the_first_items_cold_run_is_not_the_slowest_item_once_later_batches_are_in() -> None:
    """The first item runs alone and cold (the function's first call, the profiler's start): 40,000 items of 9 us
    whose first took 84 us read as skewed, and ran in chunks of 670 instead of 2,200."""
    from autopar._model import SerialSample
    from autopar._sample import add_batch

    first = add_batch(SerialSample(), 1, 0.001, 0.001, 0.001, 0)
    assert first.max_item_s == pytest.approx(0.001)  # alone, it is all there is
    later = add_batch(first, 2, 0.0002, 0.0002, 0.0002, 0)
    assert later.max_item_s == pytest.approx(0.0001)
    slow = add_batch(later, 4, 0.002, 0.002, 0.002, 0)
    assert slow.max_item_s == pytest.approx(0.0005)  # a slow batch after it still counts
    assert add_batch(slow, 8, 0.0008, 0.0008, 0.0008, 0).max_item_s == pytest.approx(0.0005)
