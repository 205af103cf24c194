"""A BaseException that is not an Exception, raised by the function, ends the call under every strategy.

SystemExit, KeyboardInterrupt and the like are never an item's result, even
with ``errors="return"``: the call raises the exception itself, no item runs
twice, and no item's result is another item's exception.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

import autopar
import helpers

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)

ITEMS = range(200)


def attempts(directory: Path) -> dict[int, int]:
    """How many times each item ran, from the files ``helpers._count_attempt`` wrote."""
    counts = {}
    for name in os.listdir(directory):
        counts[int(name.removeprefix("attempts-"))] = len((directory / name).read_text().splitlines())
    return counts


@pytest.mark.parametrize(
    ("name", "errors"),
    [("SystemExit", "raise"), ("SystemExit", "return"), ("KeyboardInterrupt", "return"), ("CustomBaseError", "return")],
)
def test_base_exception_ends_the_call_and_no_item_runs_twice(
    strategy: str, name: str, errors: str, tmp_path: Path
) -> None:
    """Item 50 raising a BaseException ends the call with it; every item ran at most once, item 50 once."""
    args = [(str(tmp_path), name, x) for x in ITEMS]
    results = autopar.imap(
        helpers.raise_base_on_50_counting, args, strategy=strategy, workers=4, chunksize=4, errors=errors
    )
    received = []
    with pytest.raises(helpers.BASE_EXCEPTIONS[name], match="item 50"):
        received.extend(results)
    # Results handed over before the exception are the items' own, in order.
    assert received == [x * x for x in range(len(received))]
    assert len(received) <= 50
    counts = attempts(tmp_path)
    assert counts[50] == 1
    assert max(counts.values()) == 1, {x: n for x, n in counts.items() if n > 1}


def test_base_exception_under_threads_keeps_neighbours_results_intact_regression_19(tmp_path: Path) -> None:
    """Regression test for #19: under threads, SystemExit no longer becomes the result of the items around it."""
    args = [(str(tmp_path), "SystemExit", x) for x in ITEMS]
    with pytest.raises(SystemExit):
        autopar.map(helpers.raise_base_on_50_counting, args, strategy="threads", errors="return")
    assert max(attempts(tmp_path).values()) == 1


def test_next_call_works_after_a_base_exception(strategy: str, tmp_path: Path) -> None:
    """The pool that saw the BaseException is not reused broken: the next call gives every result."""
    args = [(str(tmp_path), "SystemExit", x) for x in range(60)]
    with pytest.raises(SystemExit):
        autopar.map(helpers.raise_base_on_50_counting, args, strategy=strategy, workers=2)
    assert autopar.map(helpers.square, range(10), strategy=strategy, workers=2) == [x * x for x in range(10)]
