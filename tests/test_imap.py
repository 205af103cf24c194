"""``autopar.imap``: lazy results in order or as completed, bounded read-ahead, early close, endless input."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar

import pytest

import autopar
import helpers
from autopar import _pools, _registry
from autopar._core._sizing import WINDOW_PER_WORKER

T = TypeVar("T")


def closable(results: Iterator[T]) -> Generator[T, None, None]:
    """The iterator imap returned, checked to be a generator so the test can close() it."""
    assert isinstance(results, Generator)
    return results


class CountingSource:
    """An endless (or ``limit``-long) iterator of 0, 1, 2... that counts how many items were pulled."""

    def __init__(self, limit: int | None = None) -> None:
        self.pulled = 0
        self.limit = limit

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        if self.limit is not None and self.pulled >= self.limit:
            raise StopIteration
        self.pulled += 1
        return self.pulled - 1


@pytest.mark.parametrize("strategy", ["serial", "threads", "fork", "spawn"])
def test_imap_yields_results_in_input_order(strategy: str) -> None:
    """imap yields func(x) for every item, in input order, for a list and a generator."""
    assert list(autopar.imap(helpers.square, list(range(60)), strategy=strategy, workers=2, chunksize=3)) == [
        x * x for x in range(60)
    ]
    gen = (x for x in range(60))
    assert list(autopar.imap(helpers.square, gen, strategy=strategy, workers=2, chunksize=3)) == [
        x * x for x in range(60)
    ]


def test_imap_with_auto_strategy_yields_results_in_input_order() -> None:
    """imap without a strategy (calibration first, then the chosen way) yields every result in input order."""
    assert list(autopar.imap(helpers.square, range(500))) == [x * x for x in range(500)]


@pytest.mark.parametrize("strategy", ["serial", "threads", "fork", "spawn"])
def test_imap_unordered_yields_the_same_multiset(strategy: str) -> None:
    """ordered=False yields the same results as ordered, each exactly once, in any order."""
    items = [x % 7 for x in range(70)]
    got = list(autopar.imap(helpers.square, items, ordered=False, strategy=strategy, workers=2, chunksize=1))
    assert Counter(got) == Counter(x * x for x in items)


def test_imap_is_lazy_until_the_first_result_is_requested() -> None:
    """Creating the iterator reads no input; the first next() starts the work."""
    source = CountingSource()
    results = closable(autopar.imap(helpers.square, source, strategy="threads", workers=2, chunksize=1))
    assert source.pulled == 0
    assert next(results) == 0
    results.close()


@pytest.mark.parametrize("chunksize", [1, 3])
def test_imap_reads_the_input_a_bounded_window_ahead_of_the_consumer(chunksize: int) -> None:
    """After k results are consumed, at most k + workers * _WINDOW_PER_WORKER chunks of input have been read."""
    workers = 2
    window_items = workers * WINDOW_PER_WORKER * chunksize
    source = CountingSource()
    results = closable(autopar.imap(helpers.square, source, strategy="threads", workers=workers, chunksize=chunksize))
    try:
        for consumed in range(1, 101):
            assert next(results) == (consumed - 1) ** 2
            # A partly consumed chunk was read whole: allow the rest of the current chunk.
            assert source.pulled <= consumed + window_items + chunksize, (consumed, source.pulled)
    finally:
        results.close()


def test_imap_close_early_leaves_no_process_behind_with_fork() -> None:
    """Breaking out of a fork imap and closing it cancels the work in flight; no worker process is left."""
    source = CountingSource(limit=10_000)
    gen = closable(autopar.imap(helpers.square, source, strategy="fork", workers=2, chunksize=1))
    seen = []
    for value in gen:
        seen.append(value)
        if len(seen) == 5:
            break
    gen.close()
    assert seen == [x * x for x in range(5)]
    assert source.pulled < 10_000
    autopar.shutdown()
    assert _pools.live_pools() == []


def test_imap_close_before_first_result_leaves_no_pool() -> None:
    """Closing an imap that was never started runs nothing and starts no pool."""
    source = CountingSource()
    gen = closable(autopar.imap(helpers.square, source, strategy="fork", workers=2))
    gen.close()
    assert source.pulled == 0
    assert _pools.live_pools() == []


@pytest.mark.parametrize("strategy", ["auto", "threads"])
def test_imap_over_an_endless_generator_with_islice_terminates(strategy: str) -> None:
    """islice of imap over itertools.count() returns the first results and stops."""
    gen = closable(autopar.imap(helpers.square, itertools.count(), strategy=strategy, workers=2))
    try:
        assert list(itertools.islice(gen, 100)) == [x * x for x in range(100)]
    finally:
        gen.close()


def test_imap_raises_the_exception_of_a_failing_item() -> None:
    """An exception in func ends the iteration with that exception, its type and message intact."""
    gen = autopar.imap(helpers.fail_on_3, range(10), strategy="threads", workers=2, chunksize=1)
    with pytest.raises(ValueError, match=r"^bad item 3$"):
        list(gen)


class ErrorsFirstPool:
    """A fake pool: runs each chunk at submit, and ``poll`` reports failed chunks before finished ones.

    Real pools do the same when a later item fails faster than earlier ones run.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._outcomes: list[tuple[int, list[Any] | None, BaseException | None]] = []

    def capacity(self) -> int:
        return max(self.workers * 2 - len(self._outcomes), 0)

    def submit(
        self, task_id: int, func: Callable[[Any], Any], items: Sequence[Any], start: int, capture_errors: bool
    ) -> None:
        try:
            self._outcomes.append((task_id, [func(item) for item in items], None))
        except Exception as exc:
            self._outcomes.append((task_id, None, exc))

    def poll(self, timeout: float | None) -> list[tuple[int, list[Any] | None, BaseException | None]]:
        done = sorted(self._outcomes, key=lambda outcome: outcome[2] is None)
        self._outcomes = []
        return done

    def cancel(self) -> None:
        self._outcomes = []

    def is_reusable(self) -> bool:
        return True

    def shutdown(self) -> None:
        self._outcomes = []


class ErrorsFirstStrategy:
    """A strategy whose pools are ``ErrorsFirstPool``."""

    name = "errors-first"
    uses_processes = False

    def create_pool(self, workers: int, facts: object, spec: object) -> ErrorsFirstPool:
        return ErrorsFirstPool(workers)


@pytest.fixture(name="errors_first")
def _errors_first() -> Iterator[str]:
    """Register ``ErrorsFirstStrategy`` for one test, and unregister it afterwards."""
    autopar.register_strategy(ErrorsFirstStrategy.name, ErrorsFirstStrategy)
    yield ErrorsFirstStrategy.name
    _registry.unregister_strategy(ErrorsFirstStrategy.name)


def test_unregister_strategy_removes_a_plugin() -> None:
    """A registered name is usable until unregistered; then it is unknown again, and can be registered anew."""
    autopar.register_strategy(ErrorsFirstStrategy.name, ErrorsFirstStrategy)
    assert ErrorsFirstStrategy.name in autopar.strategy_names()
    assert isinstance(_registry.get_strategy(ErrorsFirstStrategy.name), ErrorsFirstStrategy)
    _registry.unregister_strategy(ErrorsFirstStrategy.name)
    assert ErrorsFirstStrategy.name not in autopar.strategy_names()
    with pytest.raises(ValueError, match="not a known strategy"):
        _registry.get_strategy(ErrorsFirstStrategy.name)
    with pytest.raises(ValueError, match="nothing to undo"):
        _registry.unregister_strategy(ErrorsFirstStrategy.name)


def test_unregister_strategy_restores_a_replaced_built_in() -> None:
    """Undoing ``replace=True`` on a built-in brings the built-in back; a built-in never replaced cannot be removed."""
    built_in = _registry.get_strategy("serial")
    autopar.register_strategy("serial", ErrorsFirstStrategy, replace=True)
    try:
        assert isinstance(_registry.get_strategy("serial"), ErrorsFirstStrategy)
    finally:
        _registry.unregister_strategy("serial")
    assert type(_registry.get_strategy("serial")) is type(built_in)
    assert autopar.strategy_names()[0] == "serial"
    with pytest.raises(ValueError, match="nothing to undo"):
        _registry.unregister_strategy("serial")


def test_imap_fake_strategy_runs_every_item(errors_first: str) -> None:
    """The fake errors-first strategy returns every result in input order when nothing fails."""
    assert list(autopar.imap(helpers.square, range(10), strategy=errors_first, workers=2, chunksize=1)) == [
        x * x for x in range(10)
    ]


def test_imap_yields_the_results_before_a_failing_item_first(errors_first: str) -> None:
    """Ordered imap yields every result before the failing item, then raises, whatever order outcomes arrive in."""
    gen = autopar.imap(helpers.fail_on_3, range(10), strategy=errors_first, workers=2, chunksize=1)
    got: list[int] = []
    with pytest.raises(ValueError, match="bad item 3"):
        got.extend(gen)
    assert got == [0, 1, 2]


@pytest.mark.timeout(60)
def test_a_failing_item_raises_after_every_result_before_it() -> None:
    """Item 5 raises (in the caller's sample, or in a chunk of a pool): items 0-4 come out first, as Executor.map does."""
    results = autopar.imap(helpers.fail_on_5, range(100))
    got = [next(results) for _ in range(5)]
    with pytest.raises(ZeroDivisionError):
        next(results)
    assert got == [10 // (x - 5) for x in range(5)]
