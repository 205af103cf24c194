"""What ``autopar.config()`` scopes a function running on autopar's thread workers sees, on both builds (issue 17)."""

from __future__ import annotations

import sys

import pytest

import autopar
import interp_helpers

#: Python 3.14's flag: new threads start in a copy of the starting thread's context (on by default
#: on free-threaded builds, off on the others; 0 before 3.14, where it does not exist).
INHERITS = bool(getattr(sys.flags, "thread_inherit_context", 0))


@pytest.mark.timeout(60)
def test_thread_workers_see_config_as_the_build_says() -> None:
    """A worker thread sees the config() of the call that started its pool where threads inherit context, else none."""
    with autopar.config(retries=2):
        seen = autopar.map(interp_helpers.config_seen, range(4), strategy="threads", workers=2, chunksize=1)
    expected = {"retries": 2} if INHERITS else {}
    assert seen == [expected] * 4


@pytest.mark.timeout(60)
def test_config_still_governs_the_call_itself_on_threads() -> None:
    """Whatever the workers see, config() sets the options of the call made inside it."""
    with autopar.config(errors="return"):
        results = autopar.map(interp_helpers.fail_on_3, range(5), strategy="threads", workers=2)
    assert isinstance(results[3], ValueError)
