"""Real jobs: an initializer per worker, one read-only object shared by every call, and long calls that survive bad items.

Workers are told apart by files in ``tmp_path`` named by process id and thread id
(see ``helpers.record_init`` and ``helpers.record_item``): each line is ``init`` or
``item X``, in the order that worker ran them.  Attempts at an item, pickles of a
shared object and initializer attempts are counted the same way, in files, so
process workers can report them.
"""

from __future__ import annotations

import _thread
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from multiprocessing import shared_memory
from typing import TYPE_CHECKING, Any

import psutil
import pytest

import autopar
import helpers
from autopar import _pools
from autopar._model import PoolSpec
from autopar._strategies._process._pool import ProcessPool
from conftest import BUILTIN_STRATEGIES, wait_until

TESTS = os.path.dirname(os.path.abspath(__file__))

if TYPE_CHECKING:
    from pathlib import Path

#: Generous deadlock guard for every test here; a healthy one takes about a second at most.
pytestmark = pytest.mark.timeout(60)

#: Start methods whose workers receive the shared object with their start-up (fork inherits it).
FRESH_METHODS = ("forkserver", "spawn")
ITEMS = list(range(20))


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


def is_dead(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie not yet reaped counts as ended)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def psm_segments() -> set[str]:
    """The shared-memory segments of ``multiprocessing.shared_memory`` that exist now, in every process."""
    return {name for name in os.listdir("/dev/shm") if name.startswith("psm_")}


@pytest.fixture(name="segments_created")
def _segments_created(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the shared-memory segments this process creates during the test.

    Other processes (another test run, say) may create and remove segments meanwhile,
    so a test checks its own segments rather than the whole of ``/dev/shm``.
    """
    created: list[str] = []

    class Recording(shared_memory.SharedMemory):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if kwargs.get("create") or (len(args) > 1 and args[1]):
                created.append(self.name)

    monkeypatch.setattr(shared_memory, "SharedMemory", Recording)
    return created


def assert_segments_gone(created: list[str], before: set[str]) -> None:
    """The call made its own segments (absent before it) and left none of them in ``/dev/shm``."""
    assert created, "no shared-memory segment was made"
    assert not set(created) & before
    left = set(created) & psm_segments()
    assert not left, f"segments left behind: {left}"


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
    workers = 1 if strategy == "serial" else 2
    # A thread that got no item may still be in its initializer when the call returns.
    assert wait_until(lambda: [bool(lines) for lines in worker_logs(tmp_path).values()] == [True] * workers)
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


@pytest.mark.parametrize(
    "strategy_or_auto",
    [
        "serial",
        "threads",
        "fork",
        "forkserver",
        "spawn",
        "auto",
    ],
)
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
    autopar.shutdown()
    tried = (tmp_path / "attempts").read_text().splitlines()
    assert 1 <= len(tried) <= 2  # at most once per worker: no worker was started again after the failure
    assert_next_call_works("serial" if strategy_or_auto == "auto" else strategy_or_auto)


@pytest.mark.parametrize("strategy", ["threads", "spawn"])
def test_initializer_accepts_unhashable_initargs(strategy: str) -> None:
    """``initargs`` may hold unhashable objects, such as a dict of settings, as in ``ProcessPoolExecutor``."""
    out = autopar.map(
        helpers.square, ITEMS, strategy=strategy, workers=2, initializer=helpers.record_settings, initargs=({"a": 1},)
    )
    assert out == [x * x for x in ITEMS]


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
        # A thread that got no item may still be in its initializer when the call returns.
        assert wait_until(lambda d=directory: all(worker_logs(d).values()))
        logs = worker_logs(directory)
        assert_initialized_once_before_items(logs)
        assert items_run(logs) == ITEMS
        assert 1 <= len(logs) <= 2
        assert (os.getpid() in {pid for pid, _ in logs}) == (kind == "threads")


def start_up_note_s(note: str) -> float:
    """The seconds in a candidate's ``start-up X per worker`` note."""
    match = re.search(r"start-up ([0-9.]+) (us|ms|s) per worker", note)
    assert match, note
    return float(match[1]) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[match[2]]


def test_explain_start_up_per_worker_includes_the_initializer() -> None:
    """Each cold process candidate in ``explain()`` reports a start-up per worker that includes a 0.2 s initializer."""
    decision = autopar.explain(helpers.countdown, [2000] * 2000, initializer=helpers.sleep_for, initargs=(0.2,))
    notes = [c.note for c in decision.candidates if c.strategy in ("fork", "forkserver", "spawn")]
    assert notes
    assert all(start_up_note_s(note) >= 0.2 for note in notes), notes


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


@pytest.mark.parametrize("method", FRESH_METHODS)
def test_shared_bytes_arrive_read_only_through_shared_memory(method: str, segments_created: list[str]) -> None:
    """spawn and forkserver workers see large shared bytes as a read-only memoryview; the segment is gone afterwards."""
    data = bytes(range(256)) * 1024
    before = psm_segments()
    positions = [0, 1, 255, 4097, len(data) - 1]
    out = autopar.map(helpers.describe_shared, positions, strategy=method, workers=2, chunksize=1, shared=data)
    assert out == [("memoryview", True, data[x]) for x in positions]
    assert_segments_gone(segments_created, before)


#: Run in a child interpreter: importing NumPy here would start BLAS threads that make fork unsafe for later tests.
_NUMPY_SCRIPT = """
import os, sys
from multiprocessing import shared_memory
sys.path.insert(0, {tests!r})
import numpy
import autopar, helpers

created = []

class Recording(shared_memory.SharedMemory):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if kwargs.get("create"):
            created.append(self.name)

if __name__ == "__main__":
    shared_memory.SharedMemory = Recording
    table = numpy.arange(100_000, dtype=numpy.int64)
    positions = [0, 1, 4097, 99_999]
    out = autopar.map(helpers.describe_shared, positions, strategy={method!r}, workers=2, chunksize=1, shared=table)
    print(out == [("ndarray", True, x) for x in positions], out)
    print(bool(created) and not any(os.path.exists("/dev/shm/" + name) for name in created), created)
"""


@pytest.mark.parametrize("method", FRESH_METHODS)
def test_shared_numpy_array_arrives_read_only_through_shared_memory(method: str, tmp_path: Path) -> None:
    """spawn and forkserver workers see a shared NumPy array as a non-writeable ndarray; the segment is gone afterwards."""
    if importlib.util.find_spec("numpy") is None:
        pytest.skip("NumPy is not installed")
    script = tmp_path / "numpy_shared.py"
    script.write_text(textwrap.dedent(_NUMPY_SCRIPT.format(tests=TESTS, method=method)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPAR_")}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=50, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("True"), proc.stdout
    assert proc.stdout.splitlines()[1].startswith("True"), proc.stdout


def test_shared_memory_is_unlinked_after_a_worker_crash(segments_created: list[str]) -> None:
    """A worker that segfaults while large bytes are shared raises WorkerCrashedError and leaves no segment."""
    data = bytes(range(256)) * (32 * 1024)  # 8 MiB
    before = psm_segments()
    with pytest.raises(autopar.WorkerCrashedError, match="item 3"):
        autopar.map(
            helpers.segfault_quietly_on_3_shared, range(8), strategy="spawn", workers=2, chunksize=1, shared=data
        )
    assert_segments_gone(segments_created, before)


def test_shared_memory_is_unlinked_after_a_timeout(tmp_path: Path, segments_created: list[str]) -> None:
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
    assert_segments_gone(segments_created, before)


def test_shared_memory_is_unlinked_after_keyboard_interrupt(tmp_path: Path, segments_created: list[str]) -> None:
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
    assert_segments_gone(segments_created, before)
    pids = {int(name) for name in os.listdir(tmp_path)}
    assert wait_until(lambda: all(is_dead(pid) for pid in pids), timeout=10)


# -- errors="return" -------------------------------------------------------------


def test_errors_return_keeps_other_results_when_a_worker_segfaults(process_strategy: str) -> None:
    """With errors="return", one segfaulting item of 200 gets WorkerCrashedError; the other 199 results come in order."""
    # One item per chunk: see the next test for a crash in the middle of a longer chunk.
    out = autopar.map(
        helpers.segfault_quietly_on_3, range(200), strategy=process_strategy, workers=2, chunksize=1, errors="return"
    )
    assert len(out) == 200
    crash = out[3]
    assert isinstance(crash, autopar.WorkerCrashedError)
    assert crash.index == 3
    assert "item 3" in str(crash)
    assert "SIGSEGV" in str(crash)
    assert out[:3] + out[4:] == [x for x in range(200) if x != 3]


def test_crash_found_at_submit_keeps_the_results_streamed_before_it(process_strategy: str) -> None:
    """A worker that streamed three results, then died before the next poll, is reported with those results and the right item."""
    pool = ProcessPool(process_strategy, 2, PoolSpec(stream=True))
    try:
        pids = pool.pids()
        pool.submit(0, helpers.segfault_quietly_on_3, [0, 1, 2, 3, 4], 0, True)
        assert wait_until(lambda: any(is_dead(pid) for pid in pids))
        pool.submit(1, helpers.square, [5], 5, True)  # the caller meets the dead worker here, before polling
        outcomes: dict[int, tuple[Any, BaseException | None]] = {}
        deadline = time.monotonic() + 30
        while len(outcomes) < 2 and time.monotonic() < deadline:
            outcomes.update({task: (results, error) for task, results, error in pool.poll(1)})
        assert outcomes[1] == ([25], None)
        results, error = outcomes[0]
        assert isinstance(error, autopar.WorkerCrashedError)
        assert (results, error.index) == ([0, 1, 2], 3)
    finally:
        pool.shutdown()


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
    assert wait_until(lambda: is_dead(sleeper))
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


def test_retries_never_rerun_an_item_that_raised_timeout_error_outside_retry_on(
    process_strategy: str, tmp_path: Path
) -> None:
    """A TimeoutError raised by the function itself (a network timeout) is final unless ``retry_on`` names it."""
    items = [(str(tmp_path), x) for x in range(8)]
    out = autopar.map(
        helpers.raise_timeout_on_3_counting,
        items,
        strategy=process_strategy,
        workers=2,
        retries=2,
        retry_on=ConnectionError,
        errors="return",
    )
    assert isinstance(out[3], TimeoutError)
    assert attempts(tmp_path, 3) == 1


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
