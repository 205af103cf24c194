"""Faults in workers and in pickling: the caller gets a clear error, never a hang, and the next call works.

The matrix follows CPython's ``test_concurrent_futures/test_deadlock.py``: objects
that fail to pickle or unpickle on either side, workers that segfault, exit or
are killed, exceptions that cannot be rebuilt, and a very large result, under
every process start method.  Each case checks the exception and, where the
workers should be sound, that a following call with the same strategy works; the autouse fixture in
``conftest.py`` checks that no worker process is left.
"""

from __future__ import annotations

import os
import signal
import traceback
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

import psutil
import pytest

import autopar
import helpers
from conftest import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: Generous deadlock guard for every test here; a healthy run takes well under a second per case.
pytestmark = pytest.mark.timeout(60)

ITEMS = list(range(6))


def assert_next_call_works(strategy: str) -> None:
    """A plain call with ``strategy`` right after a failure returns correct results."""
    assert autopar.map(helpers.square, ITEMS, strategy=strategy, workers=2) == [x * x for x in ITEMS]


# -- pickling, in the caller and in the worker ---------------------------------


def test_unpicklable_argument_raises_serialization_error_in_caller(process_strategy: str) -> None:
    """An argument whose ``__reduce__`` raises fails the call with SerializationError naming its position."""
    items: list[object] = [0, 1, 2, helpers.ReduceRaises(), 4, 5]
    with pytest.raises(autopar.SerializationError, match="could not be pickled") as info:
        autopar.map(helpers.identity, items, strategy=process_strategy, workers=2, chunksize=1)
    message = str(info.value)
    assert "input positions 3..3" in message
    assert "ReduceRaises refuses to be pickled" in message
    assert isinstance(info.value.__cause__, TypeError)
    assert_next_call_works(process_strategy)


def test_argument_failing_to_unpickle_raises_serialization_error_from_worker(process_strategy: str) -> None:
    """An argument that pickles but cannot be unpickled in the worker fails the call with the unpickling error."""
    items: list[object] = [0, 1, 2, helpers.UnpickleRaises(), 4, 5]
    with pytest.raises((autopar.SerializationError, ValueError)) as info:
        autopar.map(helpers.identity, items, strategy=process_strategy, workers=2, chunksize=1)
    assert "UnpickleRaises refuses to be unpickled" in str(info.value)
    assert_next_call_works(process_strategy)


def test_unpicklable_result_raises_serialization_error_from_worker(process_strategy: str) -> None:
    """A result whose pickling fails in the worker fails the call with SerializationError."""
    with pytest.raises(autopar.SerializationError, match="could not be pickled to return to the caller") as info:
        autopar.map(helpers.unpicklable_result_on_3, ITEMS, strategy=process_strategy, workers=2, chunksize=1)
    assert "ReduceRaises refuses to be pickled" in str(info.value)
    assert_next_call_works(process_strategy)


def test_result_failing_to_unpickle_raises_serialization_error_in_caller(process_strategy: str) -> None:
    """A result that pickles in the worker but cannot be unpickled in the caller fails with SerializationError."""
    with pytest.raises(autopar.SerializationError, match="could not be unpickled in the caller") as info:
        autopar.map(helpers.unloadable_result_on_3, ITEMS, strategy=process_strategy, workers=2, chunksize=1)
    assert "UnpickleRaises refuses to be unpickled" in str(info.value)
    assert_next_call_works(process_strategy)


def test_function_failing_to_unpickle_raises_serialization_error_from_worker(process_strategy: str) -> None:
    """A callable that pickles but cannot be unpickled in the worker fails the call with SerializationError."""
    with pytest.raises(autopar.SerializationError, match="UnpickleRaises refuses to be unpickled"):
        autopar.map(helpers.UnloadableDoubler(), ITEMS, strategy=process_strategy, workers=2, chunksize=1)


def test_function_failing_to_unpickle_leaves_worker_without_internal_error(capfd: pytest.CaptureFixture[str]) -> None:
    """After a function fails to unpickle, its worker ends cleanly at shutdown instead of dying on an internal error."""
    with pytest.raises(autopar.SerializationError):
        autopar.map(helpers.UnloadableDoubler(), [1], strategy="fork", workers=1)
    autopar.shutdown()  # joins the worker, so anything it wrote to stderr is captured
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("strategy", ["serial", "threads"])
def test_unpicklable_objects_pass_through_unchanged_without_processes(strategy: str) -> None:
    """Serial and threads never pickle: unpicklable arguments come back as the very same objects."""
    items = [helpers.ReduceRaises(), helpers.UnpickleRaises(), 3]
    results = autopar.map(helpers.identity, items, strategy=strategy, workers=2, chunksize=1)
    assert len(results) == len(items)
    assert all(result is item for result, item in zip(results, items, strict=True))


# -- workers that die ----------------------------------------------------------

#: The value 3 sits at input position 4, in the middle of the second chunk of three,
#: so the index in the error must come from the worker's running-item slot.
CRASH_ITEMS = [0, 1, 2, 4, 3, 5]
CRASH_INDEX = 4

DEATHS = [
    pytest.param(helpers.segfault_quietly_on_3, -signal.SIGSEGV, "SIGSEGV", id="segfault"),
    pytest.param(helpers.exit_on_3, 7, "exit code 7", id="os-exit"),
    pytest.param(helpers.sigkill_on_3, -signal.SIGKILL, "SIGKILL", id="sigkill"),
]


@pytest.mark.parametrize(("func", "exitcode", "words"), DEATHS)
def test_worker_death_raises_worker_crashed_error_naming_item(
    process_strategy: str, func: object, exitcode: int, words: str
) -> None:
    """A worker that dies while running an item raises WorkerCrashedError naming the item and the exit status."""
    with pytest.raises(autopar.WorkerCrashedError) as info:
        autopar.map(func, CRASH_ITEMS, strategy=process_strategy, workers=2, chunksize=3)  # type: ignore[arg-type]
    error = info.value
    assert isinstance(error, BrokenProcessPool)
    assert error.index == CRASH_INDEX
    assert error.exitcode == exitcode
    message = str(error)
    assert f"item {CRASH_INDEX}" in message
    assert words in message
    assert process_strategy in message
    assert_next_call_works(process_strategy)


def test_worker_death_with_large_arguments_raises_worker_crashed_error(process_strategy: str) -> None:
    """Workers that die on arguments larger than a pipe buffer fail the call with WorkerCrashedError, not a hang."""
    data = b"a" * (4 * 1024 * 1024)
    with pytest.raises(autopar.WorkerCrashedError, match="SIGSEGV"):
        autopar.map(helpers.segfault_quietly, [data] * 6, strategy=process_strategy, workers=2, chunksize=1)
    assert_next_call_works(process_strategy)


def _worker_in_file_dead(pid_file: str) -> bool:
    try:
        with open(pid_file) as f:
            pid = int(f.read())
    except (FileNotFoundError, ValueError):
        return False  # not written yet
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _items_read_after_first_worker_dies(pid_file: str) -> Iterator[tuple[str, int]]:
    """Item 0 kills its worker; the next item is read only once that worker is dead."""
    yield (pid_file, 0)
    assert wait_until(lambda: _worker_in_file_dead(pid_file), timeout=20)
    for x in range(1, 6):
        yield (pid_file, x)


def test_worker_death_while_input_is_read_raises_worker_crashed_error(tmp_path: Path) -> None:
    """A worker that dies before the next item is submitted still fails the call with WorkerCrashedError."""
    # The bookkeeping is shared by every start method; fork keeps the failing run short.
    items = _items_read_after_first_worker_dies(str(tmp_path / "pid"))
    # timeout turns the hang into a TimeoutError; a correct run ends in milliseconds.
    with pytest.raises(autopar.WorkerCrashedError) as info:
        autopar.map(helpers.sigkill_on_0_after_pid_file, items, strategy="fork", workers=2, chunksize=1, timeout=2)
    assert info.value.index == 0
    assert "SIGKILL" in str(info.value)


# -- exceptions ----------------------------------------------------------------


def test_function_exception_keeps_type_and_traceback_every_strategy(strategy: str) -> None:
    """An exception raised by the function reaches the caller with its type, message and the function's frames."""
    with pytest.raises(ValueError, match="bad item 3") as info:
        autopar.map(helpers.fail_on_3, ITEMS, strategy=strategy, workers=2, chunksize=1)
    # A worker's traceback travels as text in __cause__; in the caller it is the exception's own.
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "fail_on" in str(info.value.__cause__) or "fail_on" in frames
    assert_next_call_works(strategy)


def test_exception_that_cannot_be_rebuilt_raises_remote_error(process_strategy: str) -> None:
    """An exception whose class cannot be rebuilt from its args arrives as RemoteError naming the class."""
    with pytest.raises((autopar.RemoteError, helpers.TwoArgError)) as info:
        autopar.map(helpers.raise_two_arg_error_on_3, ITEMS, strategy=process_strategy, workers=2, chunksize=1)
    message = str(info.value)
    assert "TwoArgError" in message or isinstance(info.value, helpers.TwoArgError)
    assert "item failed with code 3" in message
    if isinstance(info.value, autopar.RemoteError):
        assert info.value.type_name.endswith("TwoArgError")
    assert_next_call_works(process_strategy)


@pytest.mark.parametrize("strategy", ["serial", "threads"])
def test_exception_that_cannot_be_rebuilt_arrives_unchanged_without_processes(strategy: str) -> None:
    """Serial and threads raise the function's own exception object, even one that cannot be pickled."""
    with pytest.raises(helpers.TwoArgError, match="item failed with code 3") as info:
        autopar.map(helpers.raise_two_arg_error_on_3, ITEMS, strategy=strategy, workers=2, chunksize=1)
    assert info.value.code == 3
    assert_next_call_works(strategy)


# -- large data ----------------------------------------------------------------


def test_large_result_arrives_intact(process_strategy: str) -> None:
    """A 50 MB result crosses the process boundary byte for byte."""
    results = autopar.map(helpers.big_result_on_3, ITEMS, strategy=process_strategy, workers=2, chunksize=1)
    assert [len(r) for r in results] == [0, 0, 0, helpers.BIG_PAYLOAD_BYTES, 0, 0]
    assert results[3] == helpers.big_payload()
    assert_next_call_works(process_strategy)


def test_items_run_in_worker_processes_not_in_caller(process_strategy: str) -> None:
    """Items of a process strategy run outside the caller, so the faults above really crossed a process boundary."""
    pids = set(autopar.map(helpers.pid_of, ITEMS, strategy=process_strategy, workers=2, chunksize=1))
    assert os.getpid() not in pids
