"""Auto's trial of a pool of subinterpreters: the first item runs there alone before any other.

Data flow, in the calling thread::

    Dispatch --submit(first chunk)--> TrialPool --submit(its first item alone)--> pool
    pool.poll --> the item's outcome, judged by _core._safety.is_environment_failure:
        it ran (or the function itself raised)  --> the rest of the first chunk is submitted,
                                                    its outcome joined to the item's; the trial is over
        its modules did not load there           --> TrialFailed: the first chunk ran nowhere (the item
                                                    failed to load, or to import a module it needs)

While the trial runs, ``capacity()`` is 0, so Dispatch reads no further input: a
failed trial leaves exactly the first chunk to run elsewhere, and no item runs
twice.  Only auto-selection tries; a forced ``"interpreters"`` fails with the
error itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._core._safety import INTERPRETERS, is_environment_failure
from ._errors import WorkerStartError
from ._worker import Failure

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._model import Decision
    from ._recorder import Recorder
    from ._types import Outcome, Pool

__all__ = ["TrialFailed", "TrialPool", "needs_trial"]


def needs_trial(decision: Decision) -> bool:
    """Whether the pool of ``decision`` is tried on the first item first: subinterpreters chosen by auto."""
    return decision.strategy == INTERPRETERS and not decision.forced


class TrialFailed(WorkerStartError):
    """The first item could not run in a subinterpreter; ``items``, the first chunk, ran nowhere.

    A ``WorkerStartError``, so the call decides again without subinterpreters (``reason`` says why).
    """

    def __init__(self, reason: str, items: list[Any], decision: Decision) -> None:
        super().__init__(f"the trial of the first item in a subinterpreter failed: {reason}")
        self.reason = reason
        self.items = items
        self.decision = decision


class TrialPool:
    """Wraps a subinterpreter pool for auto: its first chunk starts with one item alone, as the trial."""

    def __init__(self, pool: Pool, decision: Decision) -> None:
        self.pool = pool
        self.workers = pool.workers
        self.decision = decision
        #: The first chunk while its first item is tried: (task id, function, items, start, capture errors).
        self._first: tuple[int, Callable[[Any], Any], list[Any], int, bool] | None = None
        #: After the trial, the first chunk's id and its first item's results, until its rest comes back.
        self._held: tuple[int, list[Any]] | None = None
        self._passed = False

    def capacity(self) -> int:
        if self._passed:
            return self.pool.capacity()
        return 0 if self._first is not None else 1

    def submit(
        self, task_id: int, func: Callable[[Any], Any], items: Sequence[Any], start: int, capture_errors: bool
    ) -> None:
        if self._passed or self._first is not None:
            self.pool.submit(task_id, func, items, start, capture_errors)
            return
        self._first = (task_id, func, list(items), start, capture_errors)
        self.pool.submit(task_id, func, list(items[:1]), start, capture_errors)

    def poll(self, timeout: float | None) -> list[Outcome]:
        ready: list[Outcome] = []
        for outcome in self.pool.poll(timeout):
            if self._first is not None and outcome[0] == self._first[0]:
                ready += self._judge(self._first, outcome[1], outcome[2])
            elif self._held is not None and outcome[0] == self._held[0]:
                held, self._held = self._held[1], None
                ready.append((outcome[0], [*held, *(outcome[1] or [])], outcome[2]))
            else:
                ready.append(outcome)
        return ready

    def _judge(
        self,
        first: tuple[int, Callable[[Any], Any], list[Any], int, bool],
        results: list[Any] | None,
        error: BaseException | None,
    ) -> list[Outcome]:
        """The trial item's outcome: raise ``TrialFailed`` if its modules did not load, else go on with the chunk."""
        first_id, func, items, start, capture_errors = first
        failed = error
        if error is None and results and isinstance(results[0], Failure):
            failed = results[0].exception()  # errors="return": the function raised
        if is_environment_failure(failed, ran=results is not None):
            raise TrialFailed(str(failed), items, self.decision)
        self._first, self._passed = None, True
        if error is not None or len(items) == 1:
            return [(first_id, results, error)]  # the chunk stops at its first error, as in any pool
        # The rest of the chunk, under the same task id: its outcome is joined to the item's in ``poll``.
        self._held = (first_id, results or [])
        self.pool.submit(first_id, func, items[1:], start + 1, capture_errors)
        return []

    def cancel(self) -> None:
        self._first = self._held = None
        self.pool.cancel()

    def is_reusable(self) -> bool:
        return self.pool.is_reusable()

    def record(self, recorder: Recorder | None) -> None:
        self.pool.record(recorder)

    def shutdown(self) -> None:
        self.pool.shutdown()
