"""Run a decided call's remaining items through its pool, and give the pool back as its health says.

A pool of subinterpreters chosen by auto runs its first item alone first (``_trial``); when that
trial fails, the first chunk goes back to the call's input and ``TrialFailed`` tells the call to
decide again without subinterpreters, which the cached measurements of the function remember.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import attrs

from . import _cache, _pools
from ._dispatch import Dispatch
from ._pool_spec import is_single_use
from ._trial import TrialFailed, TrialPool, needs_trial

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._call import Call
    from ._model import Decision, PoolSpec
    from ._types import Pool

__all__ = ["TrialFailed", "run_pooled"]


def run_pooled(call: Call, decision: Decision, spec: PoolSpec, pool: Pool, ordered: bool) -> Iterator[list[Any]]:
    """Yield the results of the call's remaining items, run on ``pool`` by ``_dispatch``.

    The pool goes back to the registry afterwards: kept when the call ended well, when the consumer
    stopped early, or after a user exception; shut down after a crash, a timeout, Ctrl-C, or when it
    was built for this call only.  A speculation's pool comes with its first items (``call.handover``).

    Raises:
        TrialFailed: before any result, when auto's trial of subinterpreters failed.
    """
    healthy, recorder, handover, call.handover = False, call.recorder, call.handover, None
    if recorder is not None:
        pool.record(recorder)
    try:
        call.deadline.check()  # the pool took time to start: a timeout or cancellation since sends no work
        dispatch = Dispatch(
            TrialPool(pool, decision) if needs_trial(decision) else pool,
            call.call_func,
            call.source,
            call.done,
            chunksize=decision.chunksize,
            capture_errors=call.capture_errors,
            retries=call.opts.retries,
            retry_on=call.opts.retry_on,
            check_deadline=call.deadline.check,
            advance=call.advance,
            # A chunk size the caller gave is kept to the end; a chosen one shrinks at the tail.
            total=call.n_items if call.opts.chunksize is None else None,
            recorder=recorder,
        )
        if handover is not None:  # the first items, in flight since calibration, then the caller's results
            dispatch.adopt(handover.sent, handover.unsent, call.prefix)
        yield from dispatch.chunks(ordered=ordered)
        healthy = True
    except TrialFailed as failed:
        healthy = _give_back(call, failed)
        raise
    except GeneratorExit:
        pool.cancel()  # the consumer stopped early: drop in-flight work
        healthy = True
        raise
    except BaseException as exc:
        pool.cancel()  # Ctrl-C: process workers are terminated before re-raising
        healthy = _pools.stays_healthy(exc)
        raise
    finally:
        if recorder is not None:
            recorder.pool_ended()
            pool.record(None)
        _pools.release(pool, healthy=healthy and not is_single_use(spec))


def _give_back(call: Call, failed: TrialFailed) -> bool:
    """Put the first chunk back at the head of the input; remember the failure with the function's measurements.

    Returns True: the pool is sound, only this function's modules do not load there.
    """
    call.source = itertools.chain(failed.items, call.source)
    measurements = failed.decision.measurements
    if measurements is not None:
        _cache.put(call.key, attrs.evolve(measurements, interpreters_problem=str(failed)))
    return True
