"""The ``interpreters`` strategy: its rules with injected facts, and real subinterpreters on Python 3.14+."""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

import attrs
import pytest

import autopar
import autopar._cache as autopar_cache
import autopar._pools as autopar_pools
import helpers
import interp_helpers as ih
import interp_indirect
import interp_native_dep
import interp_uses_dep
from autopar._core._safety import interpreters_ship_problem, interpreters_verdict
from autopar._gather import call_facts
from autopar._model import Measurements, PlatformFacts
from autopar._serialize import extension_packages

if TYPE_CHECKING:
    from pathlib import Path

HAS_INTERPRETERS = autopar.probe_platform().subinterpreters
needs_interpreters = pytest.mark.skipif(not HAS_INTERPRETERS, reason="subinterpreters need Python 3.14 or later")

#: 100 GIL-bound items of 5 ms, as calibration measures them on a quiet machine, of a function the rule allows.
GIL_BOUND_5MS = Measurements(
    n_items=100, item_wall_s=5e-3, item_cpu_s=5e-3, item_process_cpu_s=5e-3, item_wall_max_s=5e-3,
    thread_probe_workers=2, thread_speedup=1.0, interpreters_problem=None,
)  # fmt: skip

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
    """An extension module without subinterpreter support fails the call with its ImportError."""
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


@pytest.fixture(name="spawn_only")
def _spawn_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as auto sees it, with spawn its only process start (as on Windows) and no start-up measured yet."""
    facts = attrs.evolve(call_facts(), start_methods=("spawn",), default_start_method="spawn", cpu_count=2)
    monkeypatch.setattr("autopar._call.call_facts", lambda: facts)
    monkeypatch.setattr(autopar_pools, "measured_startup_s", dict)


@pytest.mark.skipif(HAS_INTERPRETERS, reason="this Python has subinterpreters")
@pytest.mark.timeout(60)
def test_auto_leaves_interpreters_out_before_3_14() -> None:
    """Before Python 3.14 auto neither chooses subinterpreters nor lists them."""
    decision = autopar.explain(ih.spin, [100_000] * 16)
    assert all(c.strategy != "interpreters" for c in decision.candidates)
    assert not any("interpreters" in reason for reason in decision.reasons)


@needs_interpreters
@pytest.mark.timeout(120)
@pytest.mark.usefixtures("spawn_only")
def test_auto_runs_pure_python_work_in_interpreters_where_only_spawn_starts_processes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With spawn as the only process start, auto runs GIL-bound pure Python in a pool of subinterpreters."""
    items = [300_000] * 60
    # The rule, on the real function: its module uses the standard library only.
    assert "interpreters" in {c.strategy for c in autopar.explain(ih.spin, items).candidates}
    # The choice, on measurements of GIL-bound items as a quiet machine gives them (other tests load this one).
    autopar_cache.put(autopar_cache.cache_key(ih.spin, 60), attrs.evolve(GIL_BOUND_5MS, n_items=60))
    with caplog.at_level(logging.INFO, logger="autopar"):
        assert autopar.map(ih.spin, items) == [0] * 60
    assert "interpreters with 2 workers" in caplog.text
    assert "first item runs alone in a subinterpreter as a trial" in caplog.text
    assert "trial of the first item" not in caplog.text  # it did not fail
    assert ("interpreters", 2) in autopar_pools.warm_pools()


@needs_interpreters
@pytest.mark.timeout(120)
@pytest.mark.usefixtures("spawn_only")
@pytest.mark.parametrize(
    ("func", "words"),
    [
        # Its module imports psutil at import, through a module it keeps no reference to.
        (interp_indirect.square_once_indirect, "psutil"),
        # It imports psutil itself, lazily: the first item raises ImportError there.
        (ih.square_once_after_psutil, "subinterpreters"),
    ],
    ids=["module-does-not-load", "lazy-import-fails"],
)
def test_auto_falls_back_when_the_trial_in_a_subinterpreter_fails(
    func: Any, words: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed trial sends the call to the next candidate, says why, and runs every item exactly once."""
    # The call decides on measurements of GIL-bound items, not on a sample timed while other tests
    # load the machine, so auto tries interpreters.
    autopar_cache.put(autopar_cache.cache_key(func, 100), GIL_BOUND_5MS)
    ran = tmp_path / "ran"
    ran.mkdir()
    items = [(str(ran), x) for x in range(100)]
    with caplog.at_level(logging.INFO, logger="autopar"):
        results = autopar.map(func, items)
    assert "interpreters with 2 workers" in caplog.text
    assert results == [x * x for x in range(100)]
    assert sorted(int(p.name) for p in ran.iterdir()) == list(range(100))  # each item ran once
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "trial of the first item in a subinterpreter failed" in warning
    assert words in warning
    # The next call of the same function remembers it and does not try again.
    caplog.clear()
    again = tmp_path / "again"
    again.mkdir()
    with caplog.at_level(logging.INFO, logger="autopar"):
        autopar.map(func, [(str(again), x) for x in range(100)])
    assert "interpreters not a candidate: the trial" in caplog.text
    assert not any(r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("interp_native_dep", ("psutil",)),  # import psutil
        ("interp_uses_dep", ("psutil",)),  # import interp_native_dep, which imports psutil
        ("interp_helpers", ()),  # the standard library only
        ("helpers", ()),  # autopar, whose package loads nothing at import
        ("interp_indirect", ()),  # keeps no reference to what imports psutil: the trial finds it
    ],
)
def test_extension_packages_follow_what_a_module_refers_to(module: str, expected: tuple[str, ...]) -> None:
    """The packages with extension modules that a module uses, directly or through other modules."""
    assert interp_uses_dep.plus_cpus_indirect(0) >= 0  # every module above is loaded
    assert helpers.square(2) == 4
    assert extension_packages(module) == expected


@needs_interpreters
@pytest.mark.timeout(60)
@pytest.mark.parametrize("func", [interp_native_dep.plus_cpus, interp_uses_dep.plus_cpus_indirect])
def test_auto_leaves_out_functions_whose_modules_use_extension_modules(func: Any) -> None:
    """A function whose module uses psutil, directly or not, is not tried in subinterpreters; explain() says why."""
    decision = autopar.explain(func, [1] * 8)
    assert decision.strategy != "interpreters"
    assert any("interpreters not a candidate" in r and "psutil" in r for r in decision.reasons), decision.reasons


@pytest.mark.skipif(HAS_INTERPRETERS, reason="this Python has subinterpreters")
def test_executor_interpreters_before_3_14_names_the_version_it_needs() -> None:
    """autopar.Executor("interpreters") raises ValueError naming Python 3.14 where subinterpreters do not exist."""
    with pytest.raises(ValueError, match=r"needs Python 3\.14 or later"):
        autopar.Executor("interpreters")


@needs_interpreters
@pytest.mark.timeout(60)
def test_executor_interpreters_runs_calls_in_subinterpreters() -> None:
    """Executor("interpreters") runs submit and map in a pool of subinterpreters, none in the caller's."""
    with autopar.Executor("interpreters", workers=2) as executor:
        assert executor.submit(ih.square, 7).result(timeout=30) == 49
        assert list(executor.map(ih.square, range(6), timeout=30)) == [x * x for x in range(6)]
        where = {executor.submit(ih.interpreter_id).result(timeout=30) for _ in range(4)}
    assert ih.interpreter_id() not in where


@needs_interpreters
def test_executor_interpreters_rejects_max_tasks_per_worker() -> None:
    """max_tasks_per_worker, which subinterpreters cannot honour, raises ValueError naming the value."""
    with pytest.raises(ValueError, match="max_tasks_per_worker=3"):
        autopar.Executor("interpreters", max_tasks_per_worker=3)
