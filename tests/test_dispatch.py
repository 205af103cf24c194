"""The dispatch loop's chunking: chosen chunk sizes shrink at the end of an input of known length."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import autopar
from autopar import _registry
from autopar._core._sizing import TAIL_CHUNKS_PER_WORKER
from autopar._dispatch import Dispatch
from autopar._model import PoolSpec
from autopar._strategies._serial import SerialPool
from autopar._worker import ChunkFailed, Failure, run_chunk

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


class _RecordingPool(SerialPool):
    """The serial pool, claiming ``workers`` workers, recording each task's (start, size)."""

    def __init__(self, workers: int) -> None:
        super().__init__(PoolSpec())
        self.workers = workers
        self.tasks: list[tuple[int, int]] = []

    def submit(
        self, task_id: int, func: Callable[[Any], Any], items: Sequence[Any], start: int, capture_errors: bool
    ) -> None:
        self.tasks.append((start, len(items)))
        super().submit(task_id, func, items, start, capture_errors)


def _run(n: int, *, start: int, chunksize: int, workers: int, total: int | None) -> tuple[list[Any], _RecordingPool]:
    pool = _RecordingPool(workers)
    dispatch = Dispatch(
        pool, lambda x: x * 10, iter(range(start, n)), start, chunksize=chunksize, capture_errors=False, total=total
    )
    results = [r for chunk in dispatch.chunks(ordered=True) for r in chunk]
    return results, pool


def test_chunks_shrink_to_single_items_at_the_end_of_a_known_length() -> None:
    results, pool = _run(40, start=0, chunksize=8, workers=2, total=40)
    assert results == [x * 10 for x in range(40)]
    sizes = [size for _, size in pool.tasks]
    assert sizes == [8, 8, 6, 5, 4, 3, 2, 1, 1, 1, 1]
    # The last two items, where slow items hurt most, go to different tasks.
    assert pool.tasks[-2:] == [(38, 1), (39, 1)]


def test_chunks_keep_their_size_without_a_known_length() -> None:
    results, pool = _run(40, start=0, chunksize=8, workers=2, total=None)
    assert results == [x * 10 for x in range(40)]
    assert [size for _, size in pool.tasks] == [8, 8, 8, 8, 8]


def test_tail_counts_from_where_calibration_left_off() -> None:
    results, pool = _run(20, start=12, chunksize=4, workers=2, total=20)
    assert results == [x * 10 for x in range(12, 20)]
    assert pool.tasks == [(12, 2), (14, 2), (16, 1), (17, 1), (18, 1), (19, 1)]


@given(
    n=st.integers(min_value=1, max_value=400),
    start=st.integers(min_value=0, max_value=50),
    chunksize=st.integers(min_value=1, max_value=64),
    workers=st.integers(min_value=1, max_value=8),
)
def test_tail_chunks_cover_the_input_once_within_the_guided_bound(
    n: int, start: int, chunksize: int, workers: int
) -> None:
    start = min(start, n - 1)
    results, pool = _run(n, start=start, chunksize=chunksize, workers=workers, total=n)
    assert results == [x * 10 for x in range(start, n)]
    position = start
    for task_start, size in pool.tasks:
        assert task_start == position
        left = n - task_start
        assert 1 <= size <= min(chunksize, max(1, math.ceil(left / (TAIL_CHUNKS_PER_WORKER * workers))))
        position += size
    assert position == n
    assert pool.tasks[-1][1] == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("chunksize", "tail_shrinks"), [(None, True), (5, False)])
def test_map_shrinks_only_a_chosen_chunksize(chunksize: int | None, tail_shrinks: bool) -> None:
    """A chunk size the caller gives is the number of items per task, the last tasks included."""
    pools: list[_RecordingPool] = []

    class Recording:
        name = "recording-chunks"
        uses_processes = False

        def create_pool(self, workers: int, facts: Any, spec: PoolSpec) -> _RecordingPool:
            pools.append(_RecordingPool(workers))
            return pools[-1]

    autopar.register_strategy("recording-chunks", Recording)
    try:
        out = autopar.map(abs, range(-20, 0), strategy="recording-chunks", workers=2, chunksize=chunksize)
    finally:
        _registry.unregister_strategy("recording-chunks")
    assert out == list(range(20, 0, -1))
    sizes = [size for pool in pools for _, size in pool.tasks]
    assert sum(sizes) == 20
    assert (sizes[-1] == 1) is tail_shrinks
    if not tail_shrinks:
        assert sizes == [5, 5, 5, 5]


@pytest.mark.parametrize("capture_errors", [False, True])
def test_run_chunk_keeps_the_results_before_a_failure_and_goes_on_after_it(capture_errors: bool) -> None:
    """In the caller (no slot): item 3 fails; items 0-2 keep their results, each item runs once, and with
    capture_errors the items after it run too, in order."""
    ran: list[int] = []

    def fail_on_3(x: int) -> int:
        ran.append(x)
        if x == 3:
            raise ValueError(x)
        return x * 10

    if capture_errors:
        results = run_chunk(fail_on_3, range(6), 0, capture_errors=True, in_process=False)
        assert [r if not isinstance(r, Failure) else "failed" for r in results] == [0, 10, 20, "failed", 40, 50]
        assert ran == list(range(6))
    else:
        with pytest.raises(ChunkFailed) as info:
            run_chunk(fail_on_3, range(6), 0, capture_errors=False, in_process=False)
        assert (info.value.offset, info.value.results) == (3, [0, 10, 20])
        assert ran == [0, 1, 2, 3]
