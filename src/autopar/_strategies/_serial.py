"""The serial strategy: run every chunk in the calling thread, in order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._worker import ChunkFailed, run_chunk

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .._model import PlatformFacts, PoolSpec
    from .._types import Outcome

__all__ = ["SerialPool", "SerialStrategy"]


class SerialPool:
    """A pool of one worker, the caller: ``submit`` runs the chunk at once."""

    def __init__(self, spec: PoolSpec) -> None:
        self.workers = 1
        self._done: list[Outcome] = []
        if spec.initializer is not None:
            spec.initializer(*spec.initargs)

    def capacity(self) -> int:
        return 1

    def submit(
        self, task_id: int, func: Callable[[Any], Any], items: Sequence[Any], start: int, capture_errors: bool
    ) -> None:
        try:
            results = run_chunk(func, items, start, capture_errors=capture_errors, in_process=False)
        except ChunkFailed as failed:
            self._done.append((task_id, failed.results, failed.wrapped.rebuild()))
        else:
            self._done.append((task_id, results, None))

    def poll(self, timeout: float | None) -> list[Outcome]:
        done, self._done = self._done, []
        return done

    def cancel(self) -> None:
        self._done = []

    def is_reusable(self) -> bool:
        return True

    def shutdown(self) -> None:
        self._done = []


class SerialStrategy:
    """Run in the caller: no start-up, no pickling, no parallelism."""

    name = "serial"
    uses_processes = False

    def create_pool(self, workers: int, facts: PlatformFacts, spec: PoolSpec) -> SerialPool:
        return SerialPool(spec)
