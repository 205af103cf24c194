"""The parts behind ``autopar.Executor``: ``PoolSet``, the ``hand_over`` generator and ``SubmitRouter``."""

from __future__ import annotations

import concurrent.futures
import gc
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

import pytest

import autopar
from autopar._core._identity import function_identity as _identity
from autopar._executor._map import hand_over
from autopar._executor._pools import PoolSet
from autopar._executor._router import SubmitRouter
from autopar._model import Options
from autopar._platform import probe_platform
from helpers import exit_on_3, square

if TYPE_CHECKING:
    from collections.abc import Iterator


# -- PoolSet -----------------------------------------------------------------------------------------------------------


def _pool_set(*, replace_broken: bool) -> PoolSet:
    return PoolSet(Options(workers=1), probe_platform(), replace_broken=replace_broken)


def test_pool_set_get_replaces_a_broken_pool_once() -> None:
    """get(name, broken=pool) starts one replacement, which every later caller gets; the broken pool is shut down."""
    pools = _pool_set(replace_broken=True)
    try:
        first = pools.get("threads")
        assert pools.get("threads") is first
        second = pools.get("threads", broken=first)
        assert second is not first
        assert pools.get("threads", broken=first) is second  # a second thread that saw the same broken pool
        assert pools.get("threads") is second
        with pytest.raises(RuntimeError, match="after shutdown"):
            first.submit(square, 2)
    finally:
        pools.shutdown(wait=True, cancel_futures=False)


def test_pool_set_submit_replaces_a_pool_broken_by_a_dead_worker() -> None:
    """With replace_broken, a dead worker fails its own call only; the next submit runs on a new process pool."""
    pools = _pool_set(replace_broken=True)
    try:
        error = pools.submit("forkserver", exit_on_3, (3,), {}).exception(timeout=30)
        assert isinstance(error, autopar.WorkerCrashedError)
        assert "the next call starts a new one" in str(error)
        assert pools.submit("forkserver", square, (4,), {}).result(timeout=30) == 16
    finally:
        pools.shutdown(wait=True, cancel_futures=False)


def test_pool_set_after_shutdown_raises_runtime_error() -> None:
    """After shutdown, get, submit and check_open raise the standard executors' RuntimeError."""
    pools = _pool_set(replace_broken=False)
    pools.shutdown(wait=True, cancel_futures=False)
    assert pools.is_shut_down
    with pytest.raises(RuntimeError, match="after shutdown"):
        pools.get("threads")
    with pytest.raises(RuntimeError, match="after shutdown"):
        pools.submit("serial", square, (2,), {})
    with pytest.raises(RuntimeError, match="after shutdown"):
        pools.check_open()


# -- hand_over ---------------------------------------------------------------------------------------------------------


class _Item:
    """A result that can be referred to weakly."""


def _closing_source(log: list[str], count: int) -> Iterator[_Item]:
    try:
        for _ in range(count):
            yield _Item()
    finally:
        log.append("closed")


def test_hand_over_reports_each_result_and_closes_the_source_when_stopped() -> None:
    """on_result sees the running count before each result; closing the generator early closes the source."""
    log: list[str] = []
    counts: list[int] = []
    results = hand_over(_closing_source(log, 5), on_result=counts.append)
    assert [isinstance(next(results), _Item) for _ in range(2)] == [True, True]
    results.close()
    assert (counts, log) == ([1, 2], ["closed"])


def test_hand_over_keeps_no_reference_to_a_yielded_result() -> None:
    """Once a result is yielded, only the caller refers to it."""
    results = hand_over(_closing_source([], 3))
    item = next(results)
    ref = weakref.ref(item)
    del item
    gc.collect()
    assert ref() is None
    results.close()


def _failing(exc: Exception) -> Iterator[int]:
    yield 1
    raise exc


def test_hand_over_translates_an_exception_chained_from_the_original() -> None:
    """An exception translate replaces is raised from the original; one it returns unchanged is re-raised as is."""
    original = KeyError("inner")
    results = hand_over(_failing(original), translate=lambda exc: ValueError(f"outer {exc}"))
    assert next(results) == 1
    with pytest.raises(ValueError, match="outer") as caught:
        next(results)
    assert caught.value.__cause__ is original

    unchanged = KeyError("same")
    results = hand_over(_failing(unchanged), translate=lambda exc: exc)
    assert next(results) == 1
    with pytest.raises(KeyError) as caught_same:
        next(results)
    assert caught_same.value is unchanged
    assert caught_same.value.__cause__ is None


def _past(deadline: float) -> Iterator[str]:
    yield "in time"
    while time.monotonic() <= deadline:  # a result that is awaited across the deadline
        time.sleep(0.001)
    yield "late"


def test_hand_over_deadline_passed_while_awaiting_raises_timeout_error() -> None:
    """A result awaited across the deadline raises concurrent.futures.TimeoutError, even though it arrived."""
    deadline = time.monotonic() + 0.05
    results = hand_over(_past(deadline), deadline=deadline)
    assert next(results) == "in time"
    with pytest.raises(concurrent.futures.TimeoutError, match="not ready before the timeout"):
        next(results)


# -- SubmitRouter ------------------------------------------------------------------------------------------------------


def _router(rule: Any, *, exclude_fork: bool = False) -> SubmitRouter:
    return SubmitRouter(rule, exclude_fork=exclude_fork)


def test_router_asks_the_rule_once_with_the_sums_of_three_calls() -> None:
    """After 3 recorded calls the rule gets their summed times; its choice routes the function's later calls."""
    seen: list[tuple[Any, ...]] = []

    def rule(*args: Any) -> str:
        seen.append(args)
        return "forkserver"

    router = _router(rule)
    key = _identity(square)
    for _ in range(3):
        assert router.route(square) is None
        router.record(key, square, ((2,), {}, 4), 0.25, 0.5)
    assert router.route(square) == "forkserver"
    assert len(seen) == 1
    cpu_s, wall_s, calls, _facts, shippable = seen[0]
    assert (cpu_s, wall_s, calls, shippable) == (0.75, 1.5, 3, True)


def test_router_rule_none_times_another_round() -> None:
    """A rule that answers None leaves the function on timed threads; the next 3 calls are measured afresh."""
    answers = iter([None, "threads"])
    calls_seen: list[int] = []

    def rule(cpu_s: float, wall_s: float, calls: int, facts: Any, shippable: bool) -> str | None:
        calls_seen.append(calls)
        return next(answers)

    router = _router(rule)
    key = _identity(square)
    for _ in range(3):
        router.record(key, square, None, 0.1, 0.1)
    assert router.route(square) is None
    for _ in range(3):
        router.record(key, square, None, 0.1, 0.1)
    assert (router.route(square), calls_seen) == ("threads", [3, 3])


def test_router_unpicklable_call_and_excluded_fork_reach_the_rule() -> None:
    """Arguments that do not pickle make the function unshippable; exclude_fork removes fork from the facts."""
    seen: list[tuple[Any, ...]] = []

    def rule(*args: Any) -> str:
        seen.append(args)
        return "threads"

    router = _router(rule, exclude_fork=True)
    key = _identity(square)
    for x in range(3):
        router.record(key, square, ((threading.Lock(),), {}, x), 0.1, 0.1)
    _, _, _, facts, shippable = seen[0]
    assert shippable is False
    assert "fork" not in facts.start_methods


def test_router_timed_runs_the_call_and_records_it() -> None:
    """timed returns the call's result; the third timed call of a function settles its route."""
    router = _router(lambda *_: "threads")
    assert [router.timed(square, (x,), {}) for x in range(3)] == [0, 1, 4]
    assert router.route(square) == "threads"
