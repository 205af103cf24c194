"""Shared type aliases, type variables and the protocols strategies satisfy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from typing_extensions import ParamSpec

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._model import Measurements, PlatformFacts, PoolSpec
    from ._recorder import Recorder

__all__ = [
    "EarlyWorkers",
    "ErrorsMode",
    "Outcome",
    "P",
    "Pool",
    "R",
    "Strategy",
    "StrategyName",
    "T",
]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

#: The built-in strategy names.  The registry is open: other names may be registered.
StrategyName = Literal["auto", "serial", "threads", "fork", "forkserver", "spawn", "interpreters", "dask"]

#: What a failed item does to the call.
ErrorsMode = Literal["raise", "return"]

#: A finished chunk: (task id, list of results or None, exception or None).
Outcome = tuple[int, "list[Any] | None", "BaseException | None"]


class Pool(Protocol):
    """A set of workers that runs chunks of items, driven by the calling thread.

    The caller submits at most ``capacity()`` tasks, then calls ``poll`` to
    collect finished ones.  Every submitted task produces exactly one outcome,
    unless ``cancel`` drops it.
    """

    workers: int

    def capacity(self) -> int:
        """How many more tasks may be submitted now."""
        ...

    def submit(
        self, task_id: int, func: Callable[[Any], Any], items: Sequence[Any], start: int, capture_errors: bool
    ) -> None:
        """Start ``func`` over ``items`` (whose first input position is ``start``).

        With ``capture_errors`` a failing item's result slot holds its exception
        and the chunk goes on; otherwise the chunk's outcome is the first exception.
        """
        ...

    def poll(self, timeout: float | None) -> list[Outcome]:
        """Wait up to ``timeout`` seconds for at least one outcome; return those ready."""
        ...

    def cancel(self) -> None:
        """Drop every running and queued task: process workers running them are terminated."""
        ...

    def is_reusable(self) -> bool:
        """Whether the pool can serve another call."""
        ...

    def record(self, recorder: Recorder | None) -> None:
        """Feed ``recorder`` with the timing of each task that follows (``report=True``).

        ``None`` stops, and tells the recorder when each worker was created, began and was ready.
        A pool that measures nothing ignores it.
        """
        ...

    def shutdown(self) -> None:
        """Stop every worker and release every resource; never blocks on stuck user code forever."""
        ...


class Strategy(Protocol):
    """A named way to run work: a factory of pools."""

    name: str
    #: True when work crosses a process boundary (items and results are pickled).
    uses_processes: bool

    def create_pool(self, workers: int, facts: PlatformFacts, spec: PoolSpec) -> Pool:
        """Start a pool of ``workers`` workers built as ``spec`` says."""
        ...


class EarlyWorkers(Protocol):
    """The process workers a first call starts before it measures (``_speculation``), told what calibration sees."""

    def sampled(self, m: Measurements, c_share: float | None) -> Measurements:
        """The serial sample ``m`` is in (``c_share``: its share of CPU time in C, None: not profiled): ``m``, updated."""

    def blocked(self) -> None:
        """The caller's first item blocks (called from the watching thread, while that item runs)."""
