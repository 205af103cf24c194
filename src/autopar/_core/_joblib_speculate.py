"""The rules of a process pool started on speculation by a joblib call of unknown length.

* once, when the sample is first in: ``speculative_decision``, the pool to start without waiting for it;
* while it starts: the caller's batches are timed by CPU (``starting_pool_timing``), and the caller
  runs them itself while the decision wants that pool (``waits_for_pool``);
* when a decision wants processes: whether it runs on that pool (``on_speculative_pool``).

No clock, no OS calls: the backend starts the pool and measures, these functions only reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from ._joblib import joblib_decision, joblib_facts
from ._safety import PROCESS_METHODS
from ._workload import NATIVE_CORES_RATIO, is_computing

if TYPE_CHECKING:
    from .._model import Decision, Measurements, Options, PlatformFacts, SerialSample
    from ._joblib import JoblibRequest

__all__ = [
    "SPECULATION_TASKS_PER_WORKER",
    "on_speculative_pool",
    "speculative_decision",
    "starting_pool_timing",
    "waits_for_pool",
]

#: A process pool is started on speculation when processes would win a call of this many tasks per worker.
SPECULATION_TASKS_PER_WORKER = 4


def speculative_decision(
    sample: SerialSample, m: Measurements, facts: PlatformFacts, options: Options, request: JoblibRequest
) -> Decision | None:
    """The process pool to start while the caller runs the next batches, or None.

    joblib gives no length (scikit-learn's searches hand it a generator), so the caller
    runs batches until the doubling argument (``assumed_items``) says a pool pays; only
    then would process workers start, and each imports the modules of the batch's functions
    (about a second for scikit-learn) while the caller waits.  Started on speculation as
    soon as the sample is in, the workers start and import while the caller runs on.  The
    bet is taken on computing work only, which only processes speed up: the caller's thread
    never blocked (``is_computing``) and did the process's computing alone (``_single_threaded``:
    a first task that warms up BLAS threads, say, does not count), and only when processes would
    win a call of ``SPECULATION_TASKS_PER_WORKER`` more tasks per worker: tasks long enough
    that a few rounds pay for the start.  A call whose length is known, that forces a
    strategy, that allows one worker or that prefers threads (its library expects the tasks
    to release the GIL: the thread probe reads it) never speculates.
    """
    if request.n_tasks is not None or options.forced or not (is_computing(sample) and _single_threaded(sample)):
        return None
    workers = joblib_facts(facts, request).cpu_count
    if workers < 2 or request.sharedmem or request.prefer == "threads":
        return None
    guess = attrs.evolve(m, n_items=m.sampled + SPECULATION_TASKS_PER_WORKER * workers)
    decision = joblib_decision(guess, facts, options, request)
    return decision if decision.strategy in PROCESS_METHODS else None


def _single_threaded(sample: SerialSample) -> bool:
    """The caller's thread used the process's CPU time, give or take ``NATIVE_CORES_RATIO``: no native threads.

    CPU clocks only, so another program's load on the machine does not change the reading.
    """
    return sample.process_s <= NATIVE_CORES_RATIO * sample.cpu_s


def starting_pool_timing(wall_s: float, cpu_s: float, waits: int | None) -> tuple[float, int | None]:
    """A batch the caller ran while a speculative pool started, timed as if it had the CPU alone: (wall, waits).

    The pool's workers, starting and importing, compete with the caller for the CPUs, and
    its driver thread takes the GIL from the caller at each poll; the wall clock and the
    thread's waits would then read computing work as waiting work (and threads would win).
    The bet was taken on computing work, so its thread CPU time stands for its wall time.
    """
    return min(wall_s, cpu_s), 0 if waits is not None else None


def on_speculative_pool(decision: Decision, speculative: tuple[str, int]) -> Decision | None:
    """``decision`` run on the speculative pool when it wants process workers as many as it has; else None.

    Another start method would start its workers from nothing while these are started or
    starting, so a process decision takes the speculative pool's method; its start-up, measured
    while it competed with the caller for the CPUs, may have priced it above another method's.
    """
    method, workers = speculative
    if decision.strategy not in PROCESS_METHODS or decision.workers != workers:
        return None
    if decision.strategy == method:
        return decision
    reasons = (*decision.reasons, f"{method} instead: its workers started while the caller sampled")
    return attrs.evolve(decision, strategy=method, reasons=reasons)


def waits_for_pool(decision: Decision, speculative: tuple[str, int] | None, ready: bool) -> bool:
    """Whether the caller runs the next batch itself: ``decision`` wants the speculative pool, still starting.

    Its batches would wait for the workers' imports; the caller runs them meanwhile, and the call
    moves to the pool once every worker is ready.
    """
    return speculative is not None and not ready and on_speculative_pool(decision, speculative) is not None
