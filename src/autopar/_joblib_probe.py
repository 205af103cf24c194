"""The thread probe of a joblib call: its first batches after the sample run on k threads, timed.

Its driver (``_joblib_pool.PoolDriver``) reports each batch from its own thread;
once the quota is done, the Router decides on the measurements ``measurements`` adds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from ._core._joblib import assumed_items
from ._core._sizing import MAX_ADAPTIVE_CHUNK
from ._core._workload import probe_speedup
from ._joblib_pool import start_driver
from ._model import Decision

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._core._sampling import ProbePlan
    from ._joblib_pool import PoolDriver
    from ._model import Measurements, Options, PlatformFacts, SerialSample

__all__ = ["Probe", "probe_quota", "start_probe"]


def probe_quota(plan: ProbePlan) -> int:
    """Tasks the thread probe runs: ``per_thread`` on each thread (at most an adaptive chunk's worth)."""
    return plan.threads * min(plan.per_thread, MAX_ADAPTIVE_CHUNK)


@attrs.define
class Probe:
    """The thread probe under way: its driver, its quota and what it measured."""

    plan: ProbePlan
    driver: PoolDriver
    started_s: float
    sent: int = 0
    done: int = 0
    cpu_s: float = 0.0

    def record(self, tasks: int, cpu_s: float) -> bool:
        """Count a finished batch; True once the quota (and every batch sent) is done."""
        self.done += tasks
        self.cpu_s += cpu_s
        return self.done >= max(self.sent, probe_quota(self.plan))

    def measurements(self, m: Measurements, sample: SerialSample, n_tasks: int | None, now_s: float) -> Measurements:
        """``m`` (from the serial sample) with the probe's tasks and its speedup over the sample."""
        speedup = probe_speedup(sample, now_s - self.started_s, self.done, self.cpu_s)
        return attrs.evolve(
            m,
            n_items=assumed_items(n_tasks, sample.count + self.done),
            sampled=sample.count + self.done,
            thread_probe_workers=self.plan.threads,
            thread_speedup=speedup,
        )


def start_probe(
    plan: ProbePlan,
    options: Options,
    facts: PlatformFacts,
    on_done: Callable[[int, float, float], None],
    started_s: float,
) -> Probe:
    """Start the thread probe's pool of ``plan.threads`` threads; ``on_done`` hears of each of its batches."""
    placeholder = Decision(strategy="threads", workers=plan.threads, chunksize=1)
    driver = start_driver(placeholder, "threads", plan.threads, options, facts, None, on_done=on_done)
    return Probe(plan=plan, driver=driver, started_s=started_s)
