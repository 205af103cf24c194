"""The ``"autopar"`` joblib backend: joblib's ``ParallelBackendBase`` over autopar's measurements and pools.

joblib calls, in order, for each ``Parallel`` call::

    configure(n_jobs, parallel, prefer, require)  -> the worker bound, or 1: joblib then runs every task itself
    start_call()                                  -> a Router for this call
    compute_batch_size()                          -> tasks in the next batch (the Router's phase says)
    submit(batch, callback) / apply_async         -> the Router runs it in the caller, on threads or processes
    retrieve_result_callback(future)              -> the batch's results, or its exception
    abort_everything()                            -> running batches cancelled, process workers terminated
    stop_call()                                   -> the Router ends; its decision is kept for ``last_decision``

A batch (``BatchedCalls``) is pickled with the nested backend, a fresh backend one
level deeper: in a worker, or in the caller while it runs a batch, a nested
``Parallel`` call runs serially (``_core._decide.serial_exit``).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from joblib.parallel import ParallelBackendBase

from ._core._decide import serial_exit
from ._core._joblib import JoblibRequest, check_require, configured_workers, workers_bound
from ._gather import call_facts
from ._joblib_route import Router
from ._model import Decision
from ._platform import cpu_count

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._model import PlatformFacts

__all__ = ["AutoparBackend", "last_decision"]

_local = threading.local()


def last_decision() -> Decision | None:
    """The decision of the last ``Parallel`` call this thread made on the ``"autopar"`` backend, or None."""
    return getattr(_local, "decision", None)


def _record(decision: Decision | None) -> None:
    if decision is not None:
        _local.decision = decision


class AutoparBackend(ParallelBackendBase):  # type: ignore[misc]  # joblib has no type hints
    """A joblib backend that lets autopar choose serial, threads or processes for each ``Parallel`` call.

    ``n_jobs`` is an upper bound on workers (``n_jobs=1`` runs in the caller),
    ``prefer`` breaks ties, ``require="sharedmem"`` allows threads or serial only.
    The first batches run in the caller, timed; the rest go where ``decide`` says.
    """

    supports_retrieve_callback = True
    supports_timeout = True
    supports_return_generator = True
    supports_inner_max_num_threads = True
    supports_sharedmem = True
    uses_threads = False
    default_n_jobs = -1

    def __init__(self, nesting_level: int | None = None, inner_max_num_threads: int | None = None, **kwargs: Any):
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads, **kwargs)
        self._request: JoblibRequest | None = None
        self._router: Router | None = None
        # Probed in ``configure``, not here: joblib builds a nested backend for every batch.
        self._facts: PlatformFacts | None = None
        self.parallel: Any = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled inside every batch as the nested backend: its settings only, never a call's state.
        return AutoparBackend, (self.nesting_level, self.inner_max_num_threads)

    def effective_n_jobs(self, n_jobs: Any) -> int:
        """Workers a call of ``n_jobs`` may use: 1 inside a worker, else ``n_jobs`` as a count."""
        if n_jobs == 1:
            return 1
        bound = workers_bound(n_jobs, cpu_count())
        return 1 if serial_exit(call_facts()) is not None else bound

    def configure(
        self,
        n_jobs: Any = 1,
        parallel: Any = None,
        prefer: str | None = None,
        require: str | None = None,
        **kwargs: Any,
    ) -> int:
        """Fix the worker bound before any task: 1 makes joblib run every task in the caller."""
        self.parallel = parallel
        facts = call_facts()
        self._request = JoblibRequest(
            n_jobs=workers_bound(n_jobs, facts.cpu_count), prefer=prefer, sharedmem=check_require(require)
        )
        workers = configured_workers(self._request, facts)
        if workers == 1:
            reason = serial_exit(facts) or f"n_jobs={n_jobs!r}: at most one worker"
            _record(Decision(strategy="serial", workers=1, chunksize=1, reasons=(reason,)))
        self._facts = facts
        return workers

    def start_call(self) -> None:
        """A new ``Parallel`` call begins: its Router, with the call's task count when the input has a length."""
        request = self._request or JoblibRequest(n_jobs=1)
        n_tasks = getattr(self.parallel, "n_tasks", None)
        if n_tasks is not None:
            request = JoblibRequest(
                n_jobs=request.n_jobs, prefer=request.prefer, sharedmem=request.sharedmem, n_tasks=n_tasks
            )
        facts = self._facts if self._facts is not None else call_facts()
        self._router = Router(request, facts, inner_threads=self.inner_max_num_threads)

    def stop_call(self) -> None:
        """The call ended: its pools go back (kept for the next call), its decision is recorded."""
        router, self._router = self._router, None
        if router is not None:
            router.close(cancel=False)
            _record(router.decision)

    def terminate(self) -> None:
        """Nothing of a call is left: a Router still open is closed, running batches cancelled."""
        router, self._router = self._router, None
        if router is not None:
            router.close(cancel=True)
            _record(router.decision)

    def compute_batch_size(self) -> int:
        """Tasks in the next batch: doubling while the caller samples, then as the decision says."""
        return self._router.batch_size if self._router is not None else 1

    def batch_completed(self, batch_size: int, duration: float) -> None:
        """Batches are timed where they run (in the caller, or by the worker), not by joblib's dispatch clock."""

    def submit(self, func: Callable[[], list[Any]], callback: Callable[[Any], Any] | None = None) -> Future[Any]:
        """Run one batch where the call's Router says; ``callback`` runs with its future when it is done."""
        future: Future[Any] = Future()
        if callback is not None:
            future.add_done_callback(callback)
        if self._router is None:
            self.start_call()
        assert self._router is not None
        self._router.submit(func, future)
        return future

    def apply_async(self, func: Callable[[], list[Any]], callback: Callable[[Any], Any] | None = None) -> Future[Any]:
        """joblib 1.4's name for ``submit``."""
        return self.submit(func, callback)

    def retrieve_result_callback(self, out: Any) -> Any:
        """The batch's results, or its exception (with the worker's traceback text as ``__cause__``)."""
        return out.result()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Drop the call's remaining batches: running ones are cancelled and their process workers terminated."""
        router, self._router = self._router, None
        if router is not None:
            router.close(cancel=True)
            _record(router.decision)
        if ensure_ready and self.parallel is not None:
            self.start_call()

    def get_nested_backend(self) -> tuple[AutoparBackend, None]:
        """A fresh backend one level deeper, for ``Parallel`` calls made inside a batch."""
        return AutoparBackend(
            nesting_level=(self.nesting_level or 0) + 1, inner_max_num_threads=self.inner_max_num_threads
        ), None
