"""The serial strategy: run every chunk in the calling thread, in order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._recorder import CALLER
from .._worker import ChunkFailed, ItemClock, run_chunk

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .._model import PlatformFacts, PoolSpec
    from .._recorder import Recorder
    from .._types import Outcome

__all__ = ["SerialPool", "SerialStrategy"]


class SerialPool:
    """A pool of one worker, the caller: ``submit`` runs the chunk at once."""

    def __init__(self, spec: PoolSpec) -> None:
        self.workers = 1
        self._recorder: Recorder | None = None
        self._done: list[Outcome] = []
        if spec.initializer is not None:
            spec.initializer(*spec.initargs)

    def capacity(self) -> int:
        return 1

    def submit(
        self, task_id: int, func: Callable[[Any], Any], items: Sequence[Any], start: int, capture_errors: bool
    ) -> None:
        clock = None if self._recorder is None else ItemClock(func, start)
        try:
            results = run_chunk(clock or func, items, start, capture_errors=capture_errors, in_process=False)
        except ChunkFailed as failed:
            self._done.append((task_id, failed.results, failed.wrapped.rebuild()))
        else:
            self._done.append((task_id, results, None))
        if clock is not None and self._recorder is not None:
            self._recorder.ran(CALLER, start, clock.timing(start), failed=self._done[-1][2] is not None)

    def poll(self, timeout: float | None) -> list[Outcome]:
        done, self._done = self._done, []
        return done

    def cancel(self) -> None:
        self._done = []

    def is_reusable(self) -> bool:
        return True

    def record(self, recorder: Recorder | None) -> None:
        self._recorder = recorder  # its one worker is the caller, there from the call's start

    def shutdown(self) -> None:
        self._done = []


class SerialStrategy:
    """Run in the caller: no start-up, no pickling, no parallelism."""

    name = "serial"
    uses_processes = False

    def create_pool(self, workers: int, facts: PlatformFacts, spec: PoolSpec) -> SerialPool:
        return SerialPool(spec)
