"""CPython's own executor tests (``test.test_concurrent_futures``) run against ``autopar.Executor``.

The standard library tests an executor through mixins whose ``executor_type``
builds it; here ``executor_type`` builds ``autopar.Executor`` for each forced
strategy (``threads``, ``fork``, ``forkserver``, ``spawn``, and ``interpreters``
where Python has them) and for ``auto`` (the generic suites only: auto takes
no ``mp_context``), translating the
keyword arguments CPython passes (``max_workers`` to ``workers``, ``mp_context``
to the strategy of its start method, ``max_tasks_per_child`` to
``max_tasks_per_worker``).  Every test that does not apply is listed in
``EXCLUDED`` with its reason; docs/ecosystem.md lists the same.

CPython 3.12 and later ship the tests as a package (``executor.py``,
``test_wait.py``, ...), 3.10 and 3.11 as one module; both layouts are read.
Some distributions strip the ``test`` package: then the whole module is skipped.
The deadlock suite (workers that crash or exit while pickling, unpickling or
running) runs for every process start method; the whole module takes about
two minutes on two cores, most of it in the tests' own sleeps.
``interpreters`` runs the generic suites on CPython's ``InterpreterPoolMixin``
(which skips the tests that need an event shared with the workers), as CPython
runs its own ``InterpreterPoolExecutor``: no deadlock suite, since a worker
that crashes takes the whole process with it.
"""

from __future__ import annotations

import importlib
import re
import sys
import unittest
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import autopar

if TYPE_CHECKING:
    from types import ModuleType

#: CPython tests not run against autopar.Executor: test name (optionally ``[strategy]``) -> reason.
EXCLUDED: dict[str, str] = {
    "test_max_workers_negative": (
        "expects the standard library's message 'max_workers must be greater than 0'; "
        "autopar.Executor raises ValueError too, naming its own argument: 'workers must be a positive integer'"
    ),
    "test_interpreter_shutdown": (
        "runs a child interpreter that imports the executor class by name from concurrent.futures; "
        "tests/test_executor.py runs the same scenario with autopar.Executor"
    ),
    "test_submit_after_interpreter_shutdown": (
        "runs a child interpreter that imports the executor class by name from concurrent.futures"
    ),
    "test_hang_gh83386": "runs a child interpreter that imports the executor class by name from concurrent.futures",
    "test_cancel_futures_wait_false": "runs a child interpreter with concurrent.futures.ThreadPoolExecutor itself",
    "test_threads_terminate": "reads ThreadPoolExecutor's private _threads attribute",
    "test_processes_terminate": "reads ProcessPoolExecutor's private _processes attribute",
    "test_context_manager_shutdown": "constructs ThreadPoolExecutor or ProcessPoolExecutor itself, not the executor under test",
    "test_del_shutdown": "constructs the standard executor itself and reads its private attributes",
    "test_shutdown_no_wait": "constructs the standard executor itself and reads its private attributes",
    "test_thread_names_assigned": "constructs ThreadPoolExecutor itself (thread_name_prefix)",
    "test_thread_names_default": "constructs ThreadPoolExecutor itself and checks its default thread names",
    "test_shutdown_deadlock_pickle": "reads ProcessPoolExecutor's private _executor_manager_thread attribute",
    "test_free_reference[auto]": (
        "under auto, map runs through autopar.imap, which keeps a reference to a result it has yielded "
        "until the rest of its chunk (or of the calibration sample) is consumed"
    ),
}

_STRATEGY_MIXINS = {
    "threads": "ThreadPoolMixin",
    "fork": "ProcessPoolForkMixin",
    "forkserver": "ProcessPoolForkserverMixin",
    "spawn": "ProcessPoolSpawnMixin",
    # auto takes no mp_context: it builds on the mixin that passes none.
    "auto": "ThreadPoolMixin",
    "interpreters": "InterpreterPoolMixin",
}


class _AutoparExecutorType:
    """Builds ``autopar.Executor`` from the keyword arguments CPython's tests pass to an executor type."""

    def __init__(self, strategy: str) -> None:
        self.strategy = strategy
        self.__name__ = "autopar.Executor"

    def __call__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Any = None,
        initargs: tuple[Any, ...] = (),
        max_tasks_per_child: int | None = None,
    ) -> autopar.Executor:
        strategy = self.strategy if mp_context is None else mp_context.get_start_method()
        options: dict[str, Any] = {}
        if initializer is not None:
            options.update(initializer=initializer, initargs=initargs)
        if max_tasks_per_child is not None:
            options["max_tasks_per_worker"] = max_tasks_per_child
        return autopar.Executor(strategy, workers=max_workers, **options)


def _load() -> tuple[dict[str, Any], str]:
    """CPython's test mixins by suite name, or an empty dict and why they are missing."""
    try:
        package = importlib.import_module("test.test_concurrent_futures")
    except ImportError as exc:
        return {}, (
            f"this interpreter ({sys.version.split()[0]}) ships no test.test_concurrent_futures "
            f"(its standard-library test suite is stripped: {exc}); the nox sessions on 3.10 and 3.13 run it"
        )
    except unittest.SkipTest as exc:
        return {}, f"CPython skips test.test_concurrent_futures here: {exc}"
    if hasattr(package, "__path__"):  # 3.12 and later: a package of modules
        names = ("util", "executor", "test_wait", "test_as_completed", "test_shutdown", "test_deadlock")
        mod: dict[str, ModuleType] = {
            name: importlib.import_module(f"test.test_concurrent_futures.{name}") for name in names
        }
        util, executor, wait = mod["util"], mod["executor"], mod["test_wait"]
        as_completed, shutdown, deadlock = mod["test_as_completed"], mod["test_shutdown"], mod["test_deadlock"]
    else:  # 3.10 and 3.11: one module
        util = executor = wait = as_completed = shutdown = deadlock = package
    return {
        "util": util,
        "ExecutorTest": executor.ExecutorTest,
        "WaitTests": wait.WaitTests,
        "ThreadPoolWaitTests": wait.ThreadPoolWaitTests,
        "AsCompletedTests": as_completed.AsCompletedTests,
        "ThreadPoolShutdownTest": shutdown.ThreadPoolShutdownTest,
        "ProcessPoolShutdownTest": shutdown.ProcessPoolShutdownTest,
        "ExecutorShutdownTest": shutdown.ExecutorShutdownTest,
        "ExecutorDeadlockTest": deadlock.ExecutorDeadlockTest,
    }, ""


_SUITES, _MISSING = _load()


def _suites_for(strategy: str) -> dict[str, tuple[type, ...]]:
    """Each suite's bases for ``strategy``, without the mixin (the class CPython builds per executor)."""
    threads = strategy == "threads"
    if strategy in ("auto", "interpreters"):
        return {
            "Executor": (_SUITES["ExecutorTest"],),
            "Wait": (_SUITES["WaitTests"],),
            "AsCompleted": (_SUITES["AsCompletedTests"],),
            "Shutdown": (_SUITES["ExecutorShutdownTest"],),
        }
    suites: dict[str, tuple[type, ...]] = {
        "Executor": (_SUITES["ExecutorTest"],),
        # The thread variants are concrete classes with extra tests: they already hold their base test case.
        "Wait": (_SUITES["ThreadPoolWaitTests"],) if threads else (_SUITES["WaitTests"],),
        "AsCompleted": (_SUITES["AsCompletedTests"],),
        "Shutdown": (_SUITES["ThreadPoolShutdownTest"],) if threads else (_SUITES["ProcessPoolShutdownTest"],),
    }
    if not threads:
        suites["Deadlock"] = (_SUITES["ExecutorDeadlockTest"],)
    return suites


def _excluded(cls: type, strategy: str) -> None:
    """Replace each excluded test of ``cls`` by a skip that states the reason."""
    for name in dir(cls):
        reason = EXCLUDED.get(f"{name}[{strategy}]") or EXCLUDED.get(name)
        if name.startswith("test_") and reason is not None:
            setattr(cls, name, unittest.skip(reason)(getattr(cls, name)))


def _build(namespace: dict[str, Any]) -> None:
    util = _SUITES["util"]
    for strategy, mixin_name in _STRATEGY_MIXINS.items():
        if not hasattr(util, mixin_name):  # InterpreterPoolMixin: Python 3.14 and later
            continue
        mixin = type(
            f"Autopar{strategy.capitalize()}Mixin",
            (getattr(util, mixin_name),),
            {"executor_type": _AutoparExecutorType(strategy), "__module__": __name__},
        )
        for suite, bases in _suites_for(strategy).items():
            base_case = () if issubclass(bases[-1], unittest.TestCase) else (util.BaseTestCase,)
            name = f"Test{suite}{strategy.capitalize()}"
            cls = type(name, (mixin, *bases, *base_case), {"__module__": __name__})
            _excluded(cls, strategy)
            namespace[name] = cls


if _SUITES:
    _build(globals())
else:

    def test_cpython_suite_missing_here() -> None:
        """Stands for CPython's executor tests, which this interpreter does not ship."""
        pytest.skip(_MISSING)


def test_excluded_tests_match_the_documented_list() -> None:
    """docs/ecosystem.md lists exactly the excluded CPython tests."""
    doc = (Path(__file__).parent.parent / "docs" / "ecosystem.md").read_text(encoding="utf-8")
    section = doc.split("## CPython's executor tests", 1)[1]
    documented = set(re.findall(r"^\| `(test_\w+)`", section, flags=re.MULTILINE))
    assert documented == {name.split("[")[0] for name in EXCLUDED}
