"""Auto's trial of subinterpreters (``_trial.TrialPool``), driven through a scripted pool on every Python."""

from __future__ import annotations

from typing import Any

import pytest

from autopar._errors import SerializationError
from autopar._model import Decision
from autopar._trial import TrialFailed, TrialPool, needs_trial
from autopar._worker import Failure

AUTO_INTERP = Decision(strategy="interpreters", workers=2, chunksize=3)
NOT_LOADED = ImportError("module psutil._psutil_linux does not support loading in subinterpreters")


class ScriptedPool:
    """Records what is submitted; ``poll`` returns the outcomes the test queued."""

    workers = 2

    def __init__(self) -> None:
        self.submitted: list[tuple[int, list[Any], int, bool]] = []
        self.outcomes: list[tuple[int, list[Any] | None, BaseException | None]] = []
        self.cancelled = False

    def capacity(self) -> int:
        return 4

    def submit(self, task_id: int, func: Any, items: Any, start: int, capture_errors: bool) -> None:
        self.submitted.append((task_id, list(items), start, capture_errors))

    def poll(self, timeout: float | None) -> list[tuple[int, list[Any] | None, BaseException | None]]:
        done, self.outcomes = self.outcomes, []
        return done

    def cancel(self) -> None:
        self.cancelled = True

    def is_reusable(self) -> bool:
        return True

    def record(self, recorder: object) -> None:
        pass

    def shutdown(self) -> None:
        pass


def test_trial_only_for_interpreters_chosen_by_auto() -> None:
    """A forced pool of subinterpreters, or any other strategy, runs without a trial."""
    assert needs_trial(AUTO_INTERP)
    assert not needs_trial(Decision(strategy="interpreters", workers=2, chunksize=3, forced=True))
    assert not needs_trial(Decision(strategy="spawn", workers=2, chunksize=3))


def test_trial_sends_the_first_item_alone_then_the_rest_of_its_chunk() -> None:
    """The first chunk starts with one item; once it ran, the rest follows and the results come back joined."""
    inner = ScriptedPool()
    pool = TrialPool(inner, AUTO_INTERP)
    assert pool.capacity() == 1
    pool.submit(0, abs, [10, 11, 12], 5, False)
    assert inner.submitted == [(0, [10], 5, False)]
    assert pool.capacity() == 0  # nothing more is read from the input during the trial
    inner.outcomes = [(0, [100], None)]
    assert pool.poll(None) == []
    assert inner.submitted[1] == (0, [11, 12], 6, False)
    assert pool.capacity() == 4
    pool.submit(1, abs, [13], 8, False)
    inner.outcomes = [(1, [169], None), (0, [121, 144], None)]
    assert pool.poll(None) == [(1, [169], None), (0, [100, 121, 144], None)]


@pytest.mark.parametrize(
    ("results", "error"),
    [
        (None, NOT_LOADED),  # the function's module did not load
        (None, SerializationError("the function or an item could not be unpickled in the subinterpreter")),
        ([], NOT_LOADED),  # the function imported psutil lazily and raised
        ([Failure(NOT_LOADED)], None),  # the same, with errors="return"
    ],
    ids=["module", "unpickle", "lazy-import", "lazy-import-captured"],
)
def test_trial_fails_when_the_first_item_did_not_load(results: list[Any] | None, error: BaseException | None) -> None:
    """TrialFailed carries the whole first chunk, which ran nowhere, and the reason."""
    inner = ScriptedPool()
    pool = TrialPool(inner, AUTO_INTERP)
    pool.submit(0, abs, [10, 11, 12], 0, results is not None and error is None)
    inner.outcomes = [(0, results, error)]
    with pytest.raises(TrialFailed) as info:
        pool.poll(None)
    assert info.value.items == [10, 11, 12]
    assert info.value.decision is AUTO_INTERP
    assert info.value.reason in str(info.value)
    assert len(inner.submitted) == 1


@pytest.mark.parametrize(
    ("results", "error"),
    [
        ([], ValueError("bad item")),  # the function raised: the chunk stops there
        ([], ImportError("No module named 'missing'")),  # the function's own ImportError, not the environment's
    ],
)
def test_trial_passes_on_an_error_of_the_function(results: list[Any], error: BaseException) -> None:
    """An exception the function raised is the chunk's outcome, as on any pool; the trial is over."""
    inner = ScriptedPool()
    pool = TrialPool(inner, AUTO_INTERP)
    pool.submit(0, abs, [10, 11, 12], 0, False)
    inner.outcomes = [(0, results, error)]
    assert pool.poll(None) == [(0, results, error)]
    assert len(inner.submitted) == 1
    assert pool.capacity() == 4


def test_trial_pool_cancel_reaches_the_pool() -> None:
    """cancel() drops the trial's state and cancels the pool underneath."""
    inner = ScriptedPool()
    pool = TrialPool(inner, AUTO_INTERP)
    pool.submit(0, abs, [1, 2], 0, False)
    pool.cancel()
    assert inner.cancelled
