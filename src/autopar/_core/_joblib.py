"""joblib's rules: what ``n_jobs``, ``prefer`` and ``require`` allow, and what a ``Parallel`` call runs on.

The ``"autopar"`` joblib backend asks these functions at three points of a ``Parallel`` call:

* ``configure``, before any item: ``workers_bound`` reads ``n_jobs`` as an upper bound, and
  ``configured_workers`` says 1 when the call must run in the caller (``n_jobs=1``, a nested call),
  which makes joblib run every task there without batches;
* after each batch the caller ran and timed: ``assumed_items`` and ``next_batch`` (the serial sample's
  doubling batches, reused), and whether to keep sampling (``keeps_sampling``);
* once the sample is in: ``joblib_decision``, which is ``decide`` on the platform as this call may use
  it (at most ``n_jobs`` CPUs; no process start method under ``require="sharedmem"``), with
  ``prefer`` breaking ties within ``CLOSE_RATIO`` of the fastest.

A call of unknown length may start a process pool on speculation: ``_core._joblib_speculate``.

No clock, no OS calls: the backend measures, these functions only reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from ._costs import CLOSE_RATIO
from ._decide import decide, forced_decision, serial_exit
from ._safety import PROCESS_METHODS
from ._sampling import MAX_SAMPLE_ITEMS, next_batch_size
from ._sizing import serial_batch_size

if TYPE_CHECKING:
    from .._model import Candidate, Decision, Measurements, Options, PlatformFacts, SerialSample

__all__ = [
    "JoblibRequest",
    "assumed_items",
    "check_require",
    "configured_workers",
    "forced_joblib_decision",
    "joblib_decision",
    "joblib_facts",
    "keeps_sampling",
    "next_batch",
    "probe_items",
    "workers_bound",
]

_PREFER = (None, "threads", "processes")
#: Most tasks in a batch the caller runs.  joblib builds ``n_jobs`` batches of ``delayed`` calls at a
#: time and keeps them alive until they ran; past a few hundred tasks per batch the garbage collector's
#: passes over them cost more than the batch dispatch they save (50,000 tiny tasks ran 12% faster in
#: batches of 256 than of 8,192, on the 2-core machine of ``benchmarks/sklearn_backend.py``).
MAX_CALLER_BATCH = 256
_REQUIRE = (None, "sharedmem")


@attrs.frozen(kw_only=True)
class JoblibRequest:
    """What one ``Parallel`` call allows: its worker bound, joblib's hints and, when known, its task count."""

    #: ``n_jobs`` as a count: at most this many workers (1: every task runs in the caller).
    n_jobs: int
    #: ``prefer=``: ``"threads"``, ``"processes"`` or None, a hint that breaks ties.
    prefer: str | None = None
    #: ``require="sharedmem"``: tasks write to shared memory, so they run on threads or serially.
    sharedmem: bool = False
    #: Tasks in the call when the input has a length (joblib's ``n_tasks``), else None.
    n_tasks: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.prefer not in _PREFER:
            msg = f"prefer={self.prefer!r} is not a joblib hint: use 'threads', 'processes' or None"
            raise ValueError(msg)


def workers_bound(n_jobs: object, cpu_count: int) -> int:
    """``n_jobs`` read as joblib reads it, as an upper bound on workers.

    None means 1 (joblib's unset marker); -1 every CPU, -2 all but one, and so on, never below 1.

    Raises:
        TypeError: ``n_jobs`` is not an integer or None.
        ValueError: ``n_jobs`` is 0.
    """
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int):
        msg = f"n_jobs={n_jobs!r} is not an integer: use a positive count, -1 for every CPU, or None for 1"
        raise TypeError(msg)
    if n_jobs == 0:
        msg = "n_jobs=0 has no meaning: use a positive count, -1 for every CPU, or None for 1"
        raise ValueError(msg)
    if n_jobs < 0:
        return max(cpu_count + 1 + n_jobs, 1)
    return n_jobs


def check_require(require: object) -> bool:
    """Whether ``require`` asks for shared memory.

    Raises:
        ValueError: ``require`` is neither None nor ``"sharedmem"``.
    """
    if require not in _REQUIRE:
        msg = f"require={require!r} is not a joblib constraint: use 'sharedmem' or None"
        raise ValueError(msg)
    return require == "sharedmem"


def configured_workers(request: JoblibRequest, facts: PlatformFacts) -> int:
    """Workers ``configure`` reports: 1 when the call runs in the caller whatever it measures, else the bound."""
    if request.n_jobs <= 1 or serial_exit(facts) is not None:
        return 1
    return request.n_jobs


def joblib_facts(facts: PlatformFacts, request: JoblibRequest) -> PlatformFacts:
    """The platform as this call may use it: at most ``n_jobs`` CPUs, no process start method under sharedmem."""
    return attrs.evolve(
        facts,
        cpu_count=max(min(facts.cpu_count, request.n_jobs), 1),
        start_methods=() if request.sharedmem else facts.start_methods,
    )


def assumed_items(n_tasks: int | None, seen: int) -> int:
    """Tasks the call is taken to have: ``n_tasks`` when known, else twice those seen so far.

    joblib hands most calls a generator (scikit-learn always does), so the length
    is unknown.  Assuming the stream runs as long again as it has (rather than
    autopar's long-stream default) keeps a short call in the caller, and deciding
    again at each doubling of the sample moves a long one to a pool after at most
    about as much serial work as it has left, the classic doubling argument.
    """
    return n_tasks if n_tasks is not None else 2 * max(seen, 1)


def keeps_sampling(decision: Decision, request: JoblibRequest) -> bool:
    """Whether the caller keeps running and timing batches: serial so far, on a call of unknown length."""
    return decision.strategy == "serial" and request.n_tasks is None


def next_batch(sample: SerialSample, last: int) -> int:
    """Tasks in the next batch the caller runs: doubling as the serial sample does, up to ``MAX_CALLER_BATCH``."""
    if sample.count < MAX_SAMPLE_ITEMS:
        return min(next_batch_size(sample, last), MAX_CALLER_BATCH)
    return min(max(last, serial_batch_size(sample.per_item_s)), MAX_CALLER_BATCH)


def probe_items(request: JoblibRequest, seen: int) -> int | None:
    """The task count the thread probe's plan assumes (None: a long stream, as ``autopar.imap`` assumes).

    ``prefer="threads"`` says the library expects its tasks to release the GIL (scikit-learn's forests
    do): threads are probed as soon as the sample is in, as on a long stream, and a probe of GIL-bound
    tasks costs little, since it runs them at serial speed.  Otherwise the probe is planned for the
    tasks the decision assumes (``assumed_items``), so it runs only where the rest of the call dwarfs it.
    """
    if request.prefer == "threads" and request.n_tasks is None:
        return None
    return assumed_items(request.n_tasks, seen)


def _kinds(prefer: str | None) -> tuple[str, ...]:
    """Strategy kinds in the order ties go, for a ``prefer`` hint."""
    if prefer == "threads":
        return ("threads", "serial", "process")
    if prefer == "processes":
        return ("process", "serial", "threads")
    return ("serial", "threads", "process")


def _kind(strategy: str) -> str:
    return "process" if strategy in PROCESS_METHODS else strategy


def _pick(candidates: tuple[Candidate, ...], prefer: str | None, allowed: tuple[str, ...]) -> Candidate | None:
    """The candidate the hint picks: the first kind in hint order within ``CLOSE_RATIO`` of the fastest allowed."""
    pool = [c for c in candidates if _kind(c.strategy) in allowed]
    if not pool:
        return None
    best_s = min(c.predicted_s for c in pool)
    order = _kinds(prefer)
    ranked = sorted(pool, key=lambda c: order.index(_kind(c.strategy)))
    return next(c for c in ranked if c.predicted_s <= best_s * CLOSE_RATIO)


def joblib_decision(m: Measurements, facts: PlatformFacts, options: Options, request: JoblibRequest) -> Decision:
    """The strategy, workers and batch size for the rest of a ``Parallel`` call, from ``decide``.

    ``decide`` prices every candidate on ``joblib_facts``; under sharedmem only serial and
    threads may win (a forced process strategy too gives way); ``prefer`` puts its kind
    first among those within ``CLOSE_RATIO`` of the fastest; no candidate has more workers
    than ``n_jobs``.
    """
    decision = decide(m, joblib_facts(facts, request), options)
    allowed = ("serial", "threads") if request.sharedmem else ("serial", "threads", "process")
    reasons = list(decision.reasons)
    chosen = None
    if request.prefer is not None or _kind(decision.strategy) not in allowed:
        chosen = _pick(decision.candidates, request.prefer, allowed)
    if chosen is not None and (chosen.strategy, chosen.workers) != (decision.strategy, decision.workers):
        why = "require='sharedmem'" if _kind(decision.strategy) not in allowed else f"prefer={request.prefer!r}"
        reasons.append(f"{why}: {chosen.strategy} with {chosen.workers} workers")
        decision = attrs.evolve(
            decision,
            strategy=chosen.strategy,
            workers=chosen.workers,
            chunksize=chosen.chunksize,
            predicted_s=chosen.predicted_s,
            limit_native_threads=chosen.strategy in PROCESS_METHODS,
        )
    if request.sharedmem:
        reasons.append("require='sharedmem': threads or serial only")
    if decision.workers > request.n_jobs:
        reasons.append(f"n_jobs={request.n_jobs} bounds the workers")
        decision = attrs.evolve(decision, workers=request.n_jobs)
    return attrs.evolve(decision, reasons=tuple(reasons))


def forced_joblib_decision(facts: PlatformFacts, options: Options, request: JoblibRequest) -> Decision:
    """A strategy forced by configuration runs without a sample, within ``n_jobs``; sharedmem turns processes to threads."""
    if request.sharedmem and options.strategy in PROCESS_METHODS:
        options = attrs.evolve(options, strategy="threads")
    decision = forced_decision(joblib_facts(facts, request), options, request.n_tasks)
    reasons = (
        (*decision.reasons, "require='sharedmem': threads instead")
        if options.strategy == "threads" and request.sharedmem
        else decision.reasons
    )
    return attrs.evolve(
        decision,
        workers=min(decision.workers, request.n_jobs),
        chunksize=max(decision.chunksize, 1),
        reasons=reasons,
        limit_native_threads=decision.strategy in PROCESS_METHODS,
    )
