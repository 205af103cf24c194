"""The ``interpreters`` strategy: its rules with injected facts, and real subinterpreters on Python 3.14+."""

from __future__ import annotations

import sys
import threading

import attrs
import pytest

import autopar
import helpers
import interp_helpers as ih
from autopar._core._safety import interpreters_ship_problem, interpreters_verdict
from autopar._model import PlatformFacts

HAS_INTERPRETERS = autopar.probe_platform().subinterpreters
needs_interpreters = pytest.mark.skipif(not HAS_INTERPRETERS, reason="subinterpreters need Python 3.14 or later")

LINUX_314 = PlatformFacts(system="linux", python_version=(3, 14), subinterpreters=True)


@pytest.mark.parametrize(
    ("facts", "available", "words"),
    [
        (LINUX_314, True, "own GIL"),
        (attrs.evolve(LINUX_314, python_version=(3, 13), subinterpreters=False), False, "needs Python 3.14 or later"),
        (attrs.evolve(LINUX_314, python_version=(3, 10), subinterpreters=False), False, "this is Python 3.10"),
        (attrs.evolve(LINUX_314, subinterpreters=False), False, "no concurrent.interpreters"),
        (attrs.evolve(LINUX_314, system="win32", python_version=(3, 15)), True, "NumPy"),
    ],
)
def test_interpreters_verdict_follows_the_python_version(facts: PlatformFacts, available: bool, words: str) -> None:
    """Subinterpreters are available from 3.14 where the build has them, always safe, with the reason."""
    verdict = interpreters_verdict(facts)
    assert verdict.available is available
    assert verdict.safe is available
    assert words in verdict.reason


@pytest.mark.parametrize(
    ("module", "qualname", "words"),
    [
        ("mypackage.work", "resize", None),
        ("mypackage.work", "Resizer.run", None),
        ("__main__", "resize", "cpython#136659"),
        ("mypackage.work", "<lambda>", "lambda"),
        ("mypackage.work", "outer.<locals>.inner", "nested"),
        (None, None, "no module"),
    ],
)
def test_interpreters_ship_problem_names_functions_a_subinterpreter_cannot_find(
    module: str | None, qualname: str | None, words: str | None
) -> None:
    """A function must be found by module and name: not in __main__, not a lambda or a nested function."""
    problem = interpreters_ship_problem(module, qualname)
    assert problem is None if words is None else words in (problem or "")


def test_platform_probe_reports_subinterpreters_from_3_14() -> None:
    """probe_platform() says subinterpreters exist exactly where concurrent.interpreters imports."""
    try:
        from concurrent import interpreters  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:
        exists = False
    else:
        exists = True
    assert HAS_INTERPRETERS is exists
    assert exists is (sys.version_info >= (3, 14))


@pytest.mark.skipif(HAS_INTERPRETERS, reason="this Python has subinterpreters")
@pytest.mark.timeout(30)
def test_forcing_interpreters_before_3_14_names_the_version_it_needs() -> None:
    """strategy="interpreters" raises ValueError naming Python 3.14 where subinterpreters do not exist."""
    with pytest.raises(ValueError, match=r"needs Python 3\.14 or later") as info:
        autopar.map(helpers.square, range(4), strategy="interpreters")
    assert "strategy 'interpreters'" in str(info.value)


@needs_interpreters
@pytest.mark.timeout(60)
def test_interpreters_run_items_in_order() -> None:
    """A forced interpreters pool returns every result in input order, from threads of its own."""
    assert autopar.map(ih.square, range(50), strategy="interpreters", workers=2) == [x * x for x in range(50)]
    assert list(autopar.imap(ih.square, range(7), strategy="interpreters", workers=2, chunksize=2)) == [
        x * x for x in range(7)
    ]


@needs_interpreters
@pytest.mark.timeout(60)
def test_interpreters_keep_the_exception_type_and_remote_traceback() -> None:
    """An item's exception reaches the caller with its own type and the subinterpreter's traceback text."""
    with pytest.raises(ValueError, match="3") as info:
        autopar.map(ih.fail_on_3, range(6), strategy="interpreters", workers=2)
    assert "fail_on" in str(info.value.__cause__)
    results = autopar.map(ih.fail_on_3, range(6), strategy="interpreters", workers=2, errors="return")
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [0, 1, 2, 4, 5]


@needs_interpreters
@pytest.mark.timeout(60)
def test_interpreters_refuse_functions_they_cannot_find_with_serialization_error() -> None:
    """A lambda or a nested function raises SerializationError saying why, before anything runs."""
    with pytest.raises(autopar.SerializationError, match="lambda"):
        autopar.map(lambda x: x, range(4), strategy="interpreters")

    def nested(x: int) -> int:
        return x

    with pytest.raises(autopar.SerializationError, match="nested"):
        autopar.map(nested, range(4), strategy="interpreters")


@needs_interpreters
@pytest.mark.timeout(60)
def test_interpreters_report_items_that_do_not_pickle_as_serialization_error() -> None:
    """An item that cannot be pickled, or a result that cannot come back, fails with SerializationError."""
    with pytest.raises(autopar.SerializationError, match="input positions"):
        autopar.map(ih.identity, [1, threading.Lock()], strategy="interpreters", workers=1, chunksize=1)
    with pytest.raises(autopar.SerializationError, match="result"):
        autopar.map(ih.unpicklable_result_on_3, range(5), strategy="interpreters", workers=1)
    assert autopar.map(ih.square, [3], strategy="interpreters") == [9]


@needs_interpreters
@pytest.mark.timeout(60)
def test_interpreters_report_a_module_that_does_not_load_there_with_its_import_error() -> None:
    """An extension module without subinterpreter support fails the call with its ImportError (issue 17)."""
    with pytest.raises(ImportError, match="subinterpreters"):
        autopar.map(ih.needs_psutil, range(4), strategy="interpreters", workers=1)


@needs_interpreters
@pytest.mark.timeout(60)
def test_interpreters_run_the_initializer_in_each_worker(tmp_path) -> None:
    """The initializer runs in every subinterpreter before its items; a failing one fails the call."""
    results = autopar.map(
        ih.items_seen_initialized,
        [(str(tmp_path), x) for x in range(6)],
        strategy="interpreters",
        workers=2,
        initializer=ih.record_init,
        initargs=(str(tmp_path),),
    )
    assert results == [(x, True) for x in range(6)]
    with pytest.raises(ih.InitFailedError):
        autopar.map(ih.square, range(4), strategy="interpreters", workers=2, initializer=ih.failing_init)


@needs_interpreters
@pytest.mark.timeout(60)
def test_interpreters_reject_options_they_cannot_honour() -> None:
    """item_timeout and max_tasks_per_worker raise ValueError naming a process strategy instead."""
    with pytest.raises(ValueError, match="process strategy"):
        autopar.map(ih.square, range(4), strategy="interpreters", max_tasks_per_worker=2)


@pytest.mark.timeout(60)
def test_auto_never_chooses_interpreters() -> None:
    """Auto leaves interpreters out: it is forced only until its measured trial exists."""
    decision = autopar.explain(helpers.countdown, [20_000] * 16)
    assert decision.strategy != "interpreters"
    assert all(c.strategy != "interpreters" for c in decision.candidates)
