"""One joblib ``Parallel`` call: where each of its batches runs, from measurements on the first ones.

::

    submit(batch) --> "sample": the caller runs it, timed (wall, thread and process CPU, waits)
                        sample_done? --> speculative_decision? --> a process pool starts meanwhile (_joblib_speculate)
                                     --> probe_plan? --> "probe": the next batches on k threads, timed
                                     --> joblib_decision (pure, _core._joblib)
                      "caller": decided serial, the caller runs it
                      "pool":   a PoolDriver runs it on threads or process workers

The outermost ``submit`` runs the caller's batches one after another (joblib's callback
dispatches the next batch from inside ``submit``: running it there would recurse once per
batch); a result is reported after the decision it led to, so the next batch goes there.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import TYPE_CHECKING, Any

import attrs

from . import _pools
from ._calibrate import Clocks, sample_measurements
from ._config import resolve
from ._core._joblib import (
    assumed_items,
    forced_joblib_decision,
    joblib_decision,
    joblib_facts,
    keeps_sampling,
    next_batch,
    probe_items,
)
from ._core._plans import serial_decision
from ._core._reasons import EXHAUSTED
from ._core._sampling import probe_plan, sample_done
from ._core._sizing import MAX_ADAPTIVE_CHUNK, serial_batch_size
from ._gather import call_facts
from ._joblib_batch import run_batch
from ._joblib_pool import start_decided
from ._joblib_probe import probe_quota, start_probe
from ._joblib_speculate import Speculation, speculate
from ._model import Decision, Measurements, SerialSample
from ._sample import add_batch, run_in_caller
from ._serialize import shipping
from ._transfer import PickleCost, measure_pickling

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ._core._joblib import JoblibRequest
    from ._core._sampling import ProbePlan
    from ._joblib_pool import PoolDriver
    from ._joblib_probe import Probe
    from ._model import PlatformFacts

__all__ = ["Router"]

logger = logging.getLogger("autopar")
_Job = tuple[int, Any, "Future[Any]"]


class Router:
    """Where each batch of one ``Parallel`` call runs; ``decision`` is the latest choice, for the log and tests."""

    def __init__(
        self, request: JoblibRequest, facts: PlatformFacts, *, inner_threads: int | None, clocks: Clocks | None = None
    ) -> None:
        self.request = request
        self.facts = facts
        self.options = resolve({})
        self.clocks = clocks or Clocks()
        self.phase = "sample"
        self.batch_size = 1
        self.sample = SerialSample()
        self.decision: Decision | None = None
        self._inner_threads = inner_threads
        self._lock = threading.RLock()
        self._queue: collections.deque[_Job] = collections.deque()
        self._held: list[_Job] = []
        self._draining = False
        self._failed = False
        self._seen = 0
        self._cost: PickleCost | tuple[list[Any], list[Any]] | None = None  # or the first batch and its output
        self._probe: Probe | None = None
        self._probed = False
        self._driver: PoolDriver | None = None
        self._retired: list[PoolDriver] = []
        self._speculation: Speculation | None = None
        if self.options.forced:
            # A forced strategy runs without a sample, as autopar.map runs it; its pool starts with the first batch.
            self.decision = forced_joblib_decision(facts, self.options, request)
            self.phase = "forced"
            self.batch_size = self.decision.chunksize

    # -- joblib's side ----------------------------------------------------------------------------------------------

    def submit(self, batch: Any, future: Future[Any]) -> None:
        """Run ``batch`` where the call's phase says; its outcome goes to ``future``."""
        with self._lock:
            job = (self._seen, batch, future)
            self._seen += len(batch)
            if self.phase == "forced" and self.decision is not None and self.decision.strategy == "serial":
                self.phase = "caller"
            in_caller = self.phase in ("sample", "caller")
            if in_caller:
                self._queue.append(job)
                if self._draining:
                    return  # the outermost submit runs it, after the batch running now
                self._draining = True
        if in_caller:
            self._drain()
        else:
            self._route(job)

    def close(self, *, cancel: bool) -> None:
        """End the call: drivers end now (``cancel``) or once their batches are done; their pools go back."""
        with self._lock:
            drivers = [*self._retired, self._driver, None if self._probe is None else self._probe.driver]
            speculation, self._speculation = self._speculation, None
            self._queue.clear()
            self._held.clear()
        if speculation is not None:
            speculation.stop(keep=not cancel)
        for driver in dict.fromkeys(d for d in drivers if d is not None):
            if cancel:
                driver.stop()
            else:
                driver.retire()
                driver.join()
        if self.decision is None and self.sample.count:
            self.decision = serial_decision(EXHAUSTED)  # the input ran out while the caller sampled or probed

    # -- batches in the caller --------------------------------------------------------------------------------------

    def _drain(self) -> None:
        try:
            while True:
                with self._lock:
                    if not self._queue or self._failed or self.phase not in ("sample", "caller"):
                        rest = [] if self._failed else list(self._queue)
                        self._queue.clear()
                        self._draining = False
                        break
                    job = self._queue.popleft()
                self._run_here(*job)
        except BaseException:
            with self._lock:
                self._queue.clear()
                self._draining = False
            raise
        for job in rest:
            self._route(job)

    def _run_here(self, task_id: int, batch: Any, future: Future[Any]) -> None:
        c = self.clocks
        v0, w0, t0, p0 = c.waits(), c.wall(), c.thread(), c.process()
        try:
            out = run_in_caller(run_batch, [batch], task_id, False)[0][0]
        except Exception as exc:  # the function's own exception, its traceback text as __cause__
            self._failed = True
            future.set_exception(exc)
            return
        if self.phase == "sample":
            wall, v1, cpu = c.wall() - w0, c.waits(), c.thread() - t0
            waits = None if v0 is None or v1 is None else v1 - v0
            if self._speculation is not None:
                wall, waits = self._speculation.timing(wall, cpu, waits)
            self.sample = add_batch(self.sample, len(batch), wall, cpu, c.process() - p0, waits)
            self._cost = self._cost or ([batch], [out])  # priced once a decision needs it
            self._after_sample_batch(batch)
        future.set_result(out)

    def _measurements(self) -> Measurements:
        n_items = assumed_items(self.request.n_tasks, self.sample.count)
        if not isinstance(self._cost, PickleCost):
            self._cost = measure_pickling(run_batch, *(self._cost or ([], [])), self.clocks.wall)
        return attrs.evolve(
            sample_measurements(self.sample, self._cost, shipping(run_batch), n_items),
            sampled=self.sample.count,
            worker_startup_s=_pools.measured_startup_s(),
            warm_pools=_pools.warm_pools() | (self._speculation.warm() if self._speculation else frozenset()),
        )

    def _after_sample_batch(self, batch: Any) -> None:
        if not sample_done(self.sample, self.request.n_tasks):
            self.batch_size = next_batch(self.sample, self.batch_size)
            return
        m = self._measurements()
        if self.decision is None:  # the sample is first in: a pool may start on speculation
            self._speculation = speculate(
                self.sample, m, batch, self.facts, self.options, self.request, self._inner_threads
            )
        if not self._probed:
            probing = attrs.evolve(m, n_items=probe_items(self.request, self.sample.count))
            plan = probe_plan(self.sample, probing, joblib_facts(self.facts, self.request), allowed=True)
            if plan is not None:
                self._probed = True
                self._start_probe(plan)
                return
        self._decide(m, in_caller=True)

    # -- the decision -----------------------------------------------------------------------------------------------

    def _decide(self, m: Measurements, *, in_caller: bool) -> None:
        decision = joblib_decision(m, self.facts, self.options, self.request)
        bet = self._speculation
        starting = bet is not None and bet.starting()
        if in_caller and (keeps_sampling(decision, self.request) or (bet is not None and bet.waits(decision))):
            self.decision = decision
            # While a pool starts, short batches: the call can move to it soon after it is ready.
            size = serial_batch_size(self.sample.per_item_s) if starting else next_batch(self.sample, self.batch_size)
            self.batch_size = size
            logger.debug("autopar joblib: %s, sampling on\n%s", "pool starting" if starting else "serial", decision)
            return
        if decision.strategy == "serial" and in_caller:
            self.decision = decision
            self.phase = "caller"
            self.batch_size = serial_batch_size(self.sample.per_item_s)
            logger.info("%s", decision)
            return
        driver, decision = self._start_pool(decision, m)
        self.decision = decision
        self.batch_size = max(decision.chunksize, 1)
        logger.info("%s", decision)
        with self._lock:
            self._driver = driver
            self.phase = "pool"
            held, self._held = self._held, []
        for job in held:
            driver.put(*job)

    def _start_pool(self, decision: Decision, m: Measurements) -> tuple[PoolDriver, Decision]:
        """The driver of the decided pool (the probe's when it is the same); serial here runs on one thread."""
        probe, bet = self._probe, self._speculation
        if probe is not None and (decision.strategy, decision.workers) == ("threads", probe.plan.threads):
            self._probe = None
            return probe.driver, decision
        taken = None if bet is None else bet.take(decision)
        if taken is not None:
            return taken
        driver, decision, self.facts = start_decided(
            decision, m, self.facts, self.options, self.request, self._inner_threads
        )
        return driver, decision

    def _start_forced(self) -> None:
        """Start the forced decision's pool (serial runs in the caller), on the first batch."""
        assert self.decision is not None
        if self.decision.strategy == "serial":
            self.phase = "caller"
            return
        m = Measurements(n_items=self.request.n_tasks)
        self._driver, self.decision = self._start_pool(self.decision, m)
        logger.info("%s", self.decision)
        self.phase = "pool"

    # -- the thread probe -------------------------------------------------------------------------------------------

    def _start_probe(self, plan: ProbePlan) -> None:
        self._probe = start_probe(plan, self.options, self.facts, self._probe_done, self.clocks.wall())
        self.batch_size = min(plan.per_thread, MAX_ADAPTIVE_CHUNK)
        self.phase = "probe"

    def _route(self, job: _Job) -> None:
        """Send a batch to the probe (within its quota), hold it until the probe's decision, or to the pool."""
        with self._lock:
            if self.phase == "forced":
                self._start_forced()
            probe = self._probe
            driver: PoolDriver | None
            if self.phase == "probe" and probe is not None:
                if probe.sent >= probe_quota(probe.plan):
                    self._held.append(job)
                    return
                probe.sent += len(job[1])
                driver = probe.driver
            else:
                driver = self._driver
        if driver is not None:
            driver.put(*job)

    def _probe_done(self, tasks: int, wall_s: float, cpu_s: float) -> None:
        """A probe batch finished (on the probe's driver thread): once the quota is done, decide."""
        with self._lock:
            probe = self._probe
            if probe is None or self.phase != "probe" or not probe.record(tasks, cpu_s):
                return
        self.facts = call_facts()  # the probe's threads run now: fork may no longer be safe
        m = probe.measurements(self._measurements(), self.sample, self.request.n_tasks, self.clocks.wall())
        self._decide(m, in_caller=False)
        if self._probe is not None:  # the decision did not keep the probe's pool
            self._retired.append(probe.driver)
            probe.driver.retire()
            self._probe = None
