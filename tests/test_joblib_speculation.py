"""The joblib backend's speculative pool, its warm-up and its cheap nested backend: fakes first, then real pools."""

from __future__ import annotations

import functools
import sys
from concurrent.futures import Future
from typing import Any

import pytest

from autopar._joblib_batch import ImportModules
from autopar._joblib_speculate import Speculation, batch_modules
from autopar._model import Decision

joblib = pytest.importorskip("joblib")
autopar_joblib = pytest.importorskip("autopar.joblib")

from joblib import Parallel, delayed, parallel_config  # noqa: E402

from autopar import _joblib_backend  # noqa: E402


class FakeDriver:
    """Records what a Speculation asks of its driver; warm-ups finish when the test says."""

    def __init__(self) -> None:
        self.put_futures: list[Future[Any]] = []
        self.calls: list[str] = []

    def put(self, task_id: int, batch: Any, future: Future[Any]) -> None:
        assert task_id < 0  # warm-ups never take an input position
        assert isinstance(batch, ImportModules)
        self.put_futures.append(future)

    def stop(self, *, wait: bool = True) -> None:
        self.calls.append("stop" if wait else "stop, not waiting")

    def retire(self) -> None:
        self.calls.append("retire")

    def join(self) -> None:
        self.calls.append("join")


def _speculation(workers: int = 2) -> tuple[Speculation, Any]:
    driver: Any = FakeDriver()
    speculation = Speculation(("forkserver", workers), driver, workers)
    speculation.send(ImportModules(("json",)))
    return speculation, driver


def _decision(strategy: str = "forkserver", workers: int = 2) -> Decision:
    return Decision(strategy=strategy, workers=workers, chunksize=1)


def test_each_worker_gets_one_warm_up_and_the_pool_is_ready_after_all() -> None:
    """One warm-up per worker; the pool counts as warm only once every worker imported."""
    speculation, driver = _speculation()
    assert len(driver.put_futures) == 2
    assert speculation.starting()
    assert speculation.waits(_decision())
    driver.put_futures[0].set_result([])
    assert speculation.starting()
    assert speculation.warm() == frozenset()
    driver.put_futures[1].set_result([])
    assert not speculation.starting()
    assert not speculation.waits(_decision())
    assert speculation.warm() == frozenset({("forkserver", 2)})


def test_while_starting_batches_are_timed_by_cpu_then_by_wall() -> None:
    """The caller's batches are timed by thread CPU only while the workers start."""
    speculation, driver = _speculation(workers=1)
    assert speculation.timing(0.3, 0.1, 12) == (0.1, 0)
    driver.put_futures[0].set_result([])
    assert speculation.timing(0.3, 0.1, 12) == (0.3, 12)


def test_a_decision_for_the_pool_takes_its_driver() -> None:
    """A process decision with the pool's workers runs on it, on its start method: its driver is handed over."""
    speculation, driver = _speculation()
    taken: Any = speculation.take(_decision("spawn"))
    assert taken[0] is driver
    assert taken[1].strategy == "forkserver"
    speculation.stop(keep=False)
    assert driver.calls == []
    assert speculation.warm() == frozenset()


@pytest.mark.parametrize(("ready", "calls"), [(False, ["stop, not waiting"]), (True, ["retire", "join"])])
def test_another_decision_ends_the_pool(ready: bool, calls: list[str]) -> None:
    """Threads decided: a ready speculative pool goes back idle, a starting one is stopped without waiting."""
    speculation, driver = _speculation()
    if ready:
        for future in driver.put_futures:
            future.set_result([])
    assert speculation.take(_decision("threads")) is None
    assert driver.calls == calls


def test_a_pool_that_failed_to_start_is_never_waited_for() -> None:
    """Workers that did not start: the caller stops waiting, and the decision starts its own pool."""
    speculation, driver = _speculation()
    driver.put_futures[0].set_exception(OSError("no fork"))
    assert speculation.failed
    assert not speculation.waits(_decision())
    assert speculation.take(_decision()) is None


def test_an_abort_waits_for_a_starting_pool_to_end() -> None:
    """An abort (an error, a timeout, Ctrl-C) ends the starting pool and waits for it: no worker outlives the call."""
    speculation, driver = _speculation()
    speculation.stop(keep=False)
    assert driver.calls == ["stop"]


def test_batch_modules_name_functions_and_argument_types_but_not_main() -> None:
    """A batch's modules: its functions' (unwrapped) and its arguments' classes'; never __main__ or builtins."""
    main_func = type("F", (), {"__module__": "__main__", "__call__": lambda self: None})()
    batch = type("B", (), {})()
    batch.items = [
        (functools.partial(sys.modules["json"].dumps, indent=1), (Future(),), {"n": 3}),
        (main_func, (), {}),
    ]
    names = batch_modules(batch)
    assert "json" in names
    assert "concurrent.futures._base" in names
    assert "functools" in names
    assert not any(n.startswith("__main__") or n == "builtins" for n in names)


def test_import_modules_imports_and_leaves_failures_to_the_batch() -> None:
    """The warm-up imports what it can; a module that fails is left to the first real batch to report."""
    sys.modules.pop("colorsys", None)
    assert ImportModules(("colorsys", "autopar_no_such_module")).__call__() == []
    assert "colorsys" in sys.modules
    assert len(ImportModules(("colorsys",))) == 0


def test_the_nested_backend_of_each_batch_probes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """joblib builds a nested backend for every batch: it must not read the platform (configure does)."""
    backend = autopar_joblib.AutoparBackend()
    monkeypatch.setattr(_joblib_backend, "call_facts", lambda: pytest.fail("probed the platform"))
    nested, _ = backend.get_nested_backend()
    assert nested.nesting_level == 1


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


@pytest.mark.timeout(120)
@pytest.mark.parametrize("tasks", [2, 16])
def test_slow_tasks_of_unknown_count_give_joblib_results(tasks: int) -> None:
    """Slow GIL-bound tasks from a generator: right results whether the call ends before or after the bet pays.

    Two tasks end while the speculative pool starts (it is stopped, no worker is left:
    the autouse fixture checks); sixteen may move to it.
    """
    steps = 2_000_000
    with parallel_config(backend="autopar"):
        got = Parallel(n_jobs=2)(delayed(_spin)(steps + i) for i in range(tasks))
    assert got == [_spin(steps + i) for i in range(tasks)]
    assert autopar_joblib.last_decision() is not None
