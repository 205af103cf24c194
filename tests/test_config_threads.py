"""What ``autopar.config()`` scopes and other context variables a function on autopar's thread workers sees.

Each chunk runs in a copy of the caller's context, so the answer is the same on
normal and free-threaded builds, whether or not new threads inherit context.
"""

from __future__ import annotations

import contextvars

import pytest

import autopar
import interp_helpers
from autopar._calibrate import Clocks
from autopar._core._sampling import ProbePlan
from autopar._thread_probe import probe_threads

REQUEST = contextvars.ContextVar("request", default="none")


def request_seen(x: int) -> tuple[int, str]:
    """(x, the request id the running thread sees); sets it too, which must not leak to the caller."""
    seen = REQUEST.get()
    REQUEST.set(f"set by item {x}")
    return x, seen


@pytest.mark.timeout(60)
def test_thread_workers_see_the_config_of_the_call() -> None:
    """Items on threads see the config() around their call, on a fresh pool and on the reused one."""
    with autopar.config(retries=2):
        first = autopar.map(interp_helpers.config_seen, range(4), strategy="threads", workers=2, chunksize=1)
    with autopar.config(retries=1):
        second = autopar.map(interp_helpers.config_seen, range(4), strategy="threads", workers=2, chunksize=1)
    third = autopar.map(interp_helpers.config_seen, range(4), strategy="threads", workers=2, chunksize=1)
    assert first == [{"retries": 2}] * 4
    assert second == [{"retries": 1}] * 4
    assert third == [{}] * 4


@pytest.mark.timeout(60)
def test_thread_workers_see_the_callers_context_variables_and_do_not_leak_into_it() -> None:
    """A context variable set by the caller reaches every item; what an item sets stays in its chunk's copy."""
    token = REQUEST.set("req-42")
    try:
        results = autopar.map(request_seen, range(6), strategy="threads", workers=2, chunksize=1)
        assert REQUEST.get() == "req-42"
    finally:
        REQUEST.reset(token)
    assert results == [(x, "req-42") for x in range(6)]


@pytest.mark.timeout(60)
def test_thread_probe_items_see_the_config_too() -> None:
    """The threads calibration starts to probe scaling run their items in the caller's context too."""
    results: list[dict[str, object]] = []
    with autopar.config(retries=3):
        reading = probe_threads(
            interp_helpers.config_seen, iter(range(8)), ProbePlan(threads=2, per_thread=4), False, results, Clocks()
        )
    assert reading is not None
    assert results == [{"retries": 3}] * 8


@pytest.mark.timeout(60)
def test_auto_sees_the_config_whatever_it_chooses() -> None:
    """Under auto, items run by the serial sample and then by threads (waiting work) all see config()."""
    with autopar.config(retries=3):
        seen = autopar.map(interp_helpers.config_after_a_wait, range(40))
    assert seen == [{"retries": 3}] * 40


@pytest.mark.timeout(60)
def test_config_still_governs_the_call_itself_on_threads() -> None:
    """config() sets the options of the call made inside it."""
    with autopar.config(errors="return"):
        results = autopar.map(interp_helpers.fail_on_3, range(5), strategy="threads", workers=2)
    assert isinstance(results[3], ValueError)
