"""A process pool started on speculation for a joblib call of unknown length, while the caller runs on.

::

    Router, once the sample is in: speculative_decision (pure, _core._joblib) says which pool
      start_speculation --> PoolDriver(background): its thread starts the workers
                            each worker runs ImportModules: the modules of the batch's functions
      caller: runs the next batches itself, timed, while waits_for_pool says so
      every worker imported --> ready: the pool counts as warm for the next decision
      the decision takes it --> take() hands its driver over; otherwise stop() ends it

The bet costs the workers' start and imports when the caller ends up running the
call alone; it saves them when processes win, since by then the workers are ready.
"""

from __future__ import annotations

import logging
import sys
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ._core._joblib_speculate import on_speculative_pool, speculative_decision, starting_pool_timing, waits_for_pool
from ._joblib_batch import ImportModules
from ._joblib_pool import start_driver
from ._main_module import preload_in_forkserver

if TYPE_CHECKING:
    from ._core._joblib import JoblibRequest
    from ._joblib_pool import PoolDriver
    from ._model import Decision, Measurements, Options, PlatformFacts, SerialSample

__all__ = ["Speculation", "batch_modules", "speculate", "start_speculation"]

logger = logging.getLogger("autopar")

#: Most modules a worker imports ahead (a batch names a few: its functions', its arguments' classes').
_MAX_MODULES = 32


def batch_modules(batch: Any) -> tuple[str, ...]:
    """The modules of a joblib batch's functions and of its arguments' types, which a worker imports to unpickle it.

    ``__main__`` and the standard library's ``builtins`` are left out: autopar's workers
    never import ``__main__`` (its objects travel by value).
    """
    names: dict[str, None] = {}
    for task in getattr(batch, "items", ()):
        func, args, kwargs = task
        # scikit-learn wraps each function (``function``); functools.partial holds it as ``func``.
        inner = (getattr(func, "function", None), getattr(func, "func", None))
        for obj in (func, *inner, *args, *kwargs.values()):
            if obj is None:
                continue
            module = getattr(obj, "__module__", None)
            if not isinstance(module, str):
                module = type(obj).__module__
            if module != "builtins" and not module.startswith("__main__") and module in sys.modules:
                names[module] = None
    return tuple(names)[:_MAX_MODULES]


class Speculation:
    """A pool starting for a call that may need it: ``key`` is its (strategy, workers), ``ready`` once imported."""

    def __init__(self, key: tuple[str, int], driver: PoolDriver, warm_ups: int) -> None:
        self.key = key
        self.driver = driver
        self.ready = False
        #: The workers did not start: the pool never serves the call.
        self.failed = False
        self._lock = threading.Lock()
        self._pending = warm_ups
        self._taken = False

    def warm(self) -> frozenset[tuple[str, int]]:
        """The pool as the cost model's warm pools: ready, not yet taken."""
        return frozenset({self.key}) if self.ready and not self._taken else frozenset()

    def starting(self) -> bool:
        """The workers are still starting or importing (and no decision took or ended the pool)."""
        return not self.ready and not self.failed and not self._taken

    def timing(self, wall_s: float, cpu_s: float, waits: int | None) -> tuple[float, int | None]:
        """A caller's batch timing, corrected while the pool starts (``starting_pool_timing``)."""
        return starting_pool_timing(wall_s, cpu_s, waits) if self.starting() else (wall_s, waits)

    def waits(self, decision: Decision) -> bool:
        """Whether the caller runs the next batch itself, as ``decision`` wants this pool, still starting."""
        return self.starting() and waits_for_pool(decision, self.key, self.ready)

    def take(self, decision: Decision) -> tuple[PoolDriver, Decision] | None:
        """The driver and the decision run on it, when ``decision`` may run on this pool (``on_speculative_pool``).

        Otherwise the pool ends, and None.
        """
        moved = None if self._taken or self.failed else on_speculative_pool(decision, self.key)
        if moved is None:
            self.stop(keep=True)
            return None
        self._taken = True
        return self.driver, moved

    def stop(self, *, keep: bool) -> None:
        """End the pool unless a decision took it: ready and ``keep``, it goes back idle; else its workers end.

        A pool still starting is not waited for unless ``keep`` is False (an abort): its driver
        ends it once its workers have started, so a short call does not pay for the bet it lost.
        """
        if self._taken:
            return
        self._taken = True
        if keep and self.ready:
            self.driver.retire()
            self.driver.join()
        else:
            self.driver.stop(wait=not keep)

    def send(self, warm_up: ImportModules) -> None:
        """Queue ``warm_up`` once per worker: each worker holds one batch at a time, so each runs one."""
        for worker in range(self._pending):
            future: Future[Any] = Future()
            future.add_done_callback(self._warmed)
            self.driver.put(-1 - worker, warm_up, future)

    def _warmed(self, future: Future[Any]) -> None:
        if future.exception() is not None:
            self.failed = True  # the workers did not start: the pool never counts as warm
            return
        with self._lock:
            self._pending -= 1
            self.ready = self._pending == 0
        if self.ready:
            logger.debug("autopar joblib: the %s pool started on speculation is ready", self.key[0])


def speculate(
    sample: SerialSample,
    m: Measurements,
    batch: Any,
    facts: PlatformFacts,
    options: Options,
    request: JoblibRequest,
    inner_threads: int | None,
) -> Speculation | None:
    """The pool ``speculative_decision`` bets on, started, with ``batch``'s modules to import; or None."""
    bet = speculative_decision(sample, m, facts, options, request)
    if bet is None:
        return None
    logger.debug("autopar joblib: starting a pool on speculation\n%s", bet)
    return start_speculation(bet, batch, options, facts, inner_threads)


def start_speculation(
    decision: Decision, batch: Any, options: Options, facts: PlatformFacts, inner_threads: int | None
) -> Speculation:
    """Start ``decision``'s pool from a thread of its own and have each worker import ``batch``'s modules.

    A forkserver's server imports them first, if it is not running yet: its workers then inherit them.
    """
    modules = batch_modules(batch)
    if decision.strategy == "forkserver":
        preload_in_forkserver(modules)
    driver = start_driver(decision, decision.strategy, decision.workers, options, facts, inner_threads, background=True)
    speculation = Speculation((decision.strategy, decision.workers), driver, decision.workers)
    speculation.send(ImportModules(modules))
    return speculation
