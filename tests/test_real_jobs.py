"""Real jobs: an initializer per worker, one read-only object shared by every call, and long calls that survive bad items.

Workers are told apart by files in ``tmp_path`` named by process id and thread id
(see ``helpers.record_init`` and ``helpers.record_item``): each line is ``init`` or
``item X``, in the order that worker ran them.  Attempts at an item, pickles of a
shared object and initializer attempts are counted the same way, in files, so
process workers can report them.
"""

from __future__ import annotations

import _thread
import os
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil
import pytest

import autopar
import helpers
from autopar import _pools
from conftest import BUILTIN_STRATEGIES, wait_until

if TYPE_CHECKING:
    from pathlib import Path

#: Generous deadlock guard for every test here; a healthy one takes about a second at most.
pytestmark = pytest.mark.timeout(60)

#: Start methods whose workers receive the shared object with their start-up (fork inherits it).
FRESH_METHODS = ("forkserver", "spawn")
ITEMS = list(range(20))


@pytest.fixture(autouse=True, scope="module")
def _session_processes() -> None:
    """Start the session-long forkserver and resource tracker before the leak check records child processes."""
    helpers.start_session_processes()


@pytest.fixture(name="strategy_or_auto", params=(*BUILTIN_STRATEGIES, "auto"))
def _strategy_or_auto(request: pytest.FixtureRequest) -> str:
    """Each built-in strategy, and auto."""
    name: str = request.param
    return name


@pytest.fixture(name="method_or_auto", params=("fork", "forkserver", "spawn", "auto"))
def _method_or_auto(request: pytest.FixtureRequest) -> str:
    """Each process start method, and auto."""
    name: str = request.param
    return name


def worker_logs(directory: Path) -> dict[tuple[int, int], list[str]]:
    """The lines each worker wrote in ``directory``, keyed by (process id, thread id)."""
    logs = {}
    for path in directory.iterdir():
        pid, _, tid = path.name.partition("-")
        if pid.isdigit() and tid.isdigit():
            logs[int(pid), int(tid)] = path.read_text().splitlines()
    return logs


def assert_initialized_once_before_items(logs: dict[tuple[int, int], list[str]]) -> None:
    """Every worker ran the initializer exactly once, before its first item."""
    assert logs, "no worker wrote anything"
    for worker, lines in logs.items():
        assert lines.count("init") == 1, f"worker {worker} ran the initializer {lines.count('init')} times: {lines}"
        assert lines[0] == "init", f"worker {worker} ran an item before the initializer: {lines}"


def items_run(logs: dict[tuple[int, int], list[str]]) -> list[int]:
    """Every item the workers ran, sorted."""
    return sorted(int(line.split()[1]) for lines in logs.values() for line in lines if line.startswith("item "))


def psm_segments() -> set[str]:
    """The shared-memory segments of ``multiprocessing.shared_memory`` that exist now."""
    return {name for name in os.listdir("/dev/shm") if name.startswith("psm_")}


def full_traceback(exc: BaseException) -> str:
    """The traceback text of ``exc`` as printed, causes included."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def attempts(directory: Path, x: int) -> int:
    """How many times item ``x`` was attempted (``helpers._count_attempt``)."""
    path = directory / f"attempts-{x}"
    return len(path.read_text().splitlines()) if path.exists() else 0


def assert_next_call_works(strategy: str) -> None:
    """A plain call with ``strategy`` returns correct results."""
    assert autopar.map(helpers.square, ITEMS, strategy=strategy, workers=2) == [x * x for x in ITEMS]


# -- initializer -----------------------------------------------------------------


def test_initializer_runs_once_per_worker_before_its_items_every_strategy(strategy: str, tmp_path: Path) -> None:
    """The initializer runs exactly once in each worker, before its first item: the caller, each thread, each process."""
    items = [(str(tmp_path), x) for x in ITEMS]
    out = autopar.map(
        helpers.record_item,
        items,
        strategy=strategy,
        workers=2,
        chunksize=1,
        initializer=helpers.record_init,
        initargs=(str(tmp_path),),
    )
    assert out == [x * x for x in ITEMS]
    logs = worker_logs(tmp_path)
    assert_initialized_once_before_items(logs)
    assert items_run(logs) == ITEMS
    pids = {pid for pid, _ in logs}
    if strategy == "serial":
        assert list(logs) == [(os.getpid(), threading.get_ident())]
    elif strategy == "threads":
        assert len(logs) == 2
        assert pids == {os.getpid()}
        assert threading.get_ident() not in {tid for _, tid in logs}
    else:
        assert len(logs) == 2
        assert len(pids) == 2
        assert os.getpid() not in pids


def test_initializer_runs_at_most_once_per_worker_before_its_items_auto(tmp_path: Path) -> None:
    """Under auto, the initializer runs at most once in each thread or process that runs items, before the first one.

    The items wait 2 ms each, enough work for calibration to try threads.
    """
    items = [(str(tmp_path), x) for x in range(200)]
    out = autopar.map(
        helpers.record_item_slowly, items, workers=2, initializer=helpers.record_init, initargs=(str(tmp_path),)
    )
    assert out == [x * x for x in range(200)]
    logs = worker_logs(tmp_path)
    assert items_run(logs) == list(range(200))
    assert_initialized_once_before_items(logs)


@pytest.mark.xfail(
    reason="calibration's thread probe (_calibrate._probe_threads) runs items on threads that never ran the initializer",
    strict=True,
)
def test_initializer_runs_before_items_on_calibration_probe_threads(tmp_path: Path) -> None:
    """Every thread that runs an item during calibration ran the initializer first, like any worker thread."""
    items = [(str(tmp_path), x) for x in range(200)]
    decision = autopar.explain(
        helpers.record_item_slowly, items, initializer=helpers.record_init, initargs=(str(tmp_path),)
    )
    assert decision.strategy != "serial"  # the work is large enough for the thread probe to run
    logs = worker_logs(tmp_path)
    assert len({tid for _, tid in logs}) > 1  # items ran on probe threads besides the caller
    assert_initialized_once_before_items(logs)


def test_initializer_exception_fails_the_call_without_respawning(strategy_or_auto: str, tmp_path: Path) -> None:
    """An initializer that raises fails the call with its exception type and traceback, attempted at most once per worker."""
    started = time.monotonic()
    with pytest.raises(helpers.InitFailedError, match="failed on purpose") as info:
        autopar.map(
            helpers.square,
            ITEMS,
            strategy=strategy_or_auto,
            workers=2,
            initializer=helpers.failing_init,
            initargs=(str(tmp_path),),
        )
    assert time.monotonic() - started < 20  # a guard: a respawn loop or a hang would not end
    assert "failing_init" in full_traceback(info.value)
    tried = (tmp_path / "attempts").read_text().splitlines()
    assert 1 <= len(tried) <= 2
    autopar.shutdown()
    assert len((tmp_path / "attempts").read_text().splitlines()) == len(tried)  # nothing went on trying
    assert_next_call_works("serial" if strategy_or_auto == "auto" else strategy_or_auto)


def test_initializer_accepted_by_decorator_config_and_executor(tmp_path: Path) -> None:
    """``initializer=``/``initargs=`` work through ``@parallel(...)``, ``config(...)`` and ``Executor(...)``."""
    expected = [x * x for x in ITEMS]
    decorated_dir, config_dir, executor_dir = (tmp_path / name for name in ("decorator", "config", "executor"))
    for directory in (decorated_dir, config_dir, executor_dir):
        directory.mkdir()

    decorated = autopar.parallel(
        strategy="threads", workers=2, initializer=helpers.record_init, initargs=(str(decorated_dir),)
    )(helpers.record_item)
    assert decorated.map([(str(decorated_dir), x) for x in ITEMS], chunksize=1) == expected

    with autopar.config(initializer=helpers.record_init, initargs=(str(config_dir),)):
        items = [(str(config_dir), x) for x in ITEMS]
        assert autopar.map(helpers.record_item, items, strategy="spawn", workers=2, chunksize=1) == expected

    with autopar.Executor(
        strategy="spawn", workers=2, initializer=helpers.record_init, initargs=(str(executor_dir),)
    ) as executor:
        assert list(executor.map(helpers.record_item, [(str(executor_dir), x) for x in ITEMS])) == expected

    for directory, kind in ((decorated_dir, "threads"), (config_dir, "spawn"), (executor_dir, "spawn")):
        logs = worker_logs(directory)
        assert_initialized_once_before_items(logs)
        assert items_run(logs) == ITEMS
        assert 1 <= len(logs) <= 2
        assert (os.getpid() in {pid for pid, _ in logs}) == (kind == "threads")


# -- shared= ---------------------------------------------------------------------


def test_shared_is_passed_as_second_argument(strategy_or_auto: str) -> None:
    """``func(item, shared)`` gets the shared object and returns correct results under every strategy."""
    table = tuple(range(100, 140))
    out = autopar.map(helpers.lookup, range(40), strategy=strategy_or_auto, workers=2, chunksize=3, shared=table)
    assert out == list(table)


def test_shared_is_pickled_at_most_once_per_worker(strategy: str, tmp_path: Path) -> None:
    """The shared object is pickled once per spawn or forkserver worker, and never for fork, threads or serial."""
    log = tmp_path / "pickled"
    table = helpers.CountedPickle(str(log), tuple(range(1000, 1040)))
    out = autopar.map(helpers.lookup, range(40), strategy=strategy, workers=2, chunksize=1, shared=table)
    assert out == list(range(1000, 1040))
    pickles = log.read_text().splitlines() if log.exists() else []
    if strategy in FRESH_METHODS:
        assert 1 <= len(pickles) <= 2
    else:
        assert pickles == []


@pytest.mark.parametrize("kind", ["bytes", "numpy"])
@pytest.mark.parametrize("method", FRESH_METHODS)
def test_shared_bytes_and_arrays_arrive_read_only_through_shared_memory(method: str, kind: str) -> None:
    """spawn and forkserver workers see large bytes as a read-only memoryview and arrays as read-only ndarrays."""
    data: Any = bytes(range(256)) * 1024 if kind == "bytes" else np.arange(100_000, dtype=np.int64)
    before = psm_segments()
    positions = [0, 1, 255, 4097, 99_999]
    out = autopar.map(helpers.describe_shared, positions, strategy=method, workers=2, chunksize=1, shared=data)
    name = "memoryview" if kind == "bytes" else "ndarray"
    assert out == [(name, True, int(data[x])) for x in positions]
    assert psm_segments() == before


def test_shared_memory_is_unlinked_after_a_worker_crash() -> None:
    """A worker that segfaults while large bytes are shared raises WorkerCrashedError and leaves no segment."""
    data = bytes(range(256)) * (32 * 1024)  # 8 MiB
    before = psm_segments()
    with pytest.raises(autopar.WorkerCrashedError, match="item 3"):
        autopar.map(
            helpers.segfault_quietly_on_3_shared, range(8), strategy="spawn", workers=2, chunksize=1, shared=data
        )
    assert psm_segments() == before


def test_shared_memory_is_unlinked_after_a_timeout(tmp_path: Path) -> None:
    """A call with large bytes shared that runs past ``timeout=`` raises TimeoutError and leaves no segment."""
    data = bytes(range(256)) * (32 * 1024)
    before = psm_segments()
    items = [(str(tmp_path), 30.0)] * 2
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        autopar.map(
            helpers.touch_then_sleep_shared, items, strategy="spawn", workers=2, chunksize=1, timeout=2, shared=data
        )
    assert time.monotonic() - started < 15  # a guard: the items alone would take 30 s
    assert psm_segments() == before


def test_shared_memory_is_unlinked_after_keyboard_interrupt(tmp_path: Path) -> None:
    """Ctrl-C once both workers run items raises KeyboardInterrupt and leaves no segment.

    ``_thread.interrupt_main`` only sets a flag the caller sees when it wakes up,
    so the items are short (50 ms) and the caller wakes up often.
    """
    data = bytes(range(256)) * (32 * 1024)
    before = psm_segments()
    items = [(str(tmp_path), 0.05)] * 2000
    call_over = threading.Event()
    interrupted = threading.Event()

    def interrupt_when_both_run() -> None:
        wait_until(lambda: call_over.is_set() or len(os.listdir(tmp_path)) == 2, timeout=30)
        if not call_over.is_set():
            interrupted.set()
            _thread.interrupt_main()

    interrupter = threading.Thread(target=interrupt_when_both_run, name="interrupter")
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            autopar.map(helpers.touch_then_sleep_shared, items, strategy="spawn", workers=2, chunksize=1, shared=data)
    finally:
        call_over.set()
        interrupter.join(timeout=30)
    assert interrupted.is_set(), "the workers never started"
    assert psm_segments() == before
    pids = {int(name) for name in os.listdir(tmp_path)}
    assert wait_until(lambda: not any(psutil.pid_exists(pid) for pid in pids), timeout=10)


# -- errors="return" -------------------------------------------------------------


def test_errors_return_keeps_other_results_when_a_worker_segfaults(process_strategy: str) -> None:
    """With errors="return", one segfaulting item of 200 gets WorkerCrashedError; the other 199 results come in order."""
    out = autopar.map(helpers.segfault_quietly_on_3, range(200), strategy=process_strategy, workers=2, errors="return")
    assert len(out) == 200
    crash = out[3]
    assert isinstance(crash, autopar.WorkerCrashedError)
    assert crash.index == 3
    assert "item 3" in str(crash)
    assert "SIGSEGV" in str(crash)
    assert out[:3] + out[4:] == [x for x in range(200) if x != 3]


def test_errors_return_holds_exceptions_with_traceback(strategy_or_auto: str) -> None:
    """With errors="return", items that raise ValueError hold it, with the traceback text as ``__cause__``; others complete."""
    out = autopar.map(
        helpers.fail_on_multiples_of_5, range(30), strategy=strategy_or_auto, workers=2, chunksize=4, errors="return"
    )
    for x, value in enumerate(out):
        if x % 5 == 0:
            assert isinstance(value, ValueError)
            assert str(value) == f"bad item {x}"
            assert "fail_on_multiples_of_5" in str(value.__cause__)
        else:
            assert value == x * x


@pytest.mark.timeout(30)
def test_item_timeout_fails_only_the_slow_item_and_replaces_its_worker(method_or_auto: str, tmp_path: Path) -> None:
    """An item that overruns ``item_timeout`` holds TimeoutError, the others complete, and its worker is killed and replaced."""
    items = [(str(tmp_path), x) for x in range(12)]
    options: dict[str, Any] = {"strategy": method_or_auto, "workers": 2, "item_timeout": 1, "errors": "return"}
    started = time.monotonic()
    out = autopar.map(helpers.sleep_on_3, items, **options)
    assert time.monotonic() - started < 10  # a guard: the slow item alone sleeps 30 s
    assert isinstance(out[3], TimeoutError)
    assert "item 3" in str(out[3])
    assert out[:3] + out[4:] == [x * x for x in range(12) if x != 3]
    (sleeper,) = (int(line) for line in (tmp_path / "sleeper").read_text().splitlines())
    assert wait_until(lambda: not psutil.pid_exists(sleeper) or psutil.Process(sleeper).status() == "zombie")
    # The next call with the same options reuses the pool: the killed worker has been replaced.
    assert autopar.map(helpers.square, ITEMS, **options) == [x * x for x in ITEMS]
    live = [pid for pool in _pools.live_pools() for pid in pool.pids()]
    assert len(live) == 2
    assert sleeper not in live


@pytest.mark.parametrize("strategy", ["serial", "threads"])
def test_item_timeout_with_forced_serial_or_threads_raises_value_error(strategy: str) -> None:
    """``item_timeout`` with a strategy whose workers cannot be stopped raises ValueError naming the option."""
    with pytest.raises(ValueError, match="item_timeout"):
        autopar.map(helpers.square, ITEMS, strategy=strategy, workers=2, item_timeout=1)


# -- retries and retry_on --------------------------------------------------------


def test_retries_rerun_an_item_whose_worker_crashed(process_strategy: str, tmp_path: Path) -> None:
    """With ``retries=1``, an item whose first attempt ends its worker runs once more and its result is correct."""
    items = [(str(tmp_path), x) for x in range(8)]
    out = autopar.map(helpers.crash_first_attempt_on_3, items, strategy=process_strategy, workers=2, retries=1)
    assert out == [x * x for x in range(8)]
    assert attempts(tmp_path, 3) == 2
    assert [attempts(tmp_path, x) for x in range(8) if x != 3] == [1] * 7


@pytest.mark.parametrize("retry_on", [(), KeyError])
def test_retries_never_rerun_an_item_that_raised_outside_retry_on(
    process_strategy: str, tmp_path: Path, retry_on: Any
) -> None:
    """An item whose function raised a type not in ``retry_on`` runs once, whatever ``retries`` says."""
    items = [(str(tmp_path), x) for x in range(8)]
    out = autopar.map(
        helpers.raise_on_3_counting,
        items,
        strategy=process_strategy,
        workers=2,
        retries=3,
        retry_on=retry_on,
        errors="return",
    )
    assert isinstance(out[3], ValueError)
    assert attempts(tmp_path, 3) == 1
    assert [attempts(tmp_path, x) for x in range(8)] == [1] * 8


def test_retry_on_reruns_a_raising_item_up_to_retries(process_strategy: str, tmp_path: Path) -> None:
    """With ``retry_on=ValueError`` and ``retries=2``, an item that always raises ValueError runs 3 times, then holds it."""
    items = [(str(tmp_path), x) for x in range(8)]
    out = autopar.map(
        helpers.raise_on_3_counting,
        items,
        strategy=process_strategy,
        workers=2,
        retries=2,
        retry_on=ValueError,
        errors="return",
    )
    assert isinstance(out[3], ValueError)
    assert attempts(tmp_path, 3) == 3
    assert out[:3] + out[4:] == [x * x for x in range(8) if x != 3]


def test_retry_on_reruns_until_an_item_succeeds(process_strategy: str, tmp_path: Path) -> None:
    """With ``retry_on=ValueError``, an item that raises only the first time succeeds on its second attempt."""
    items = [(str(tmp_path), x) for x in range(8)]
    out = autopar.map(
        helpers.raise_first_attempt_on_3, items, strategy=process_strategy, workers=2, retries=2, retry_on=ValueError
    )
    assert out == [x * x for x in range(8)]
    assert attempts(tmp_path, 3) == 2
