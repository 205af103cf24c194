"""The "autopar" joblib backend with real joblib, scikit-learn and worker processes."""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest

import autopar
import helpers
from conftest import live_children, wait_until

joblib = pytest.importorskip("joblib")
autopar_joblib = pytest.importorskip("autopar.joblib")

from joblib import Parallel, delayed, parallel_config  # noqa: E402
from joblib.externals.loky import get_reusable_executor  # noqa: E402

#: Every strategy the backend may pick (fork only where it is safe: this process runs threads).
STRATEGIES = ("serial", "threads", "forkserver", "spawn")


def _square(x: int) -> int:
    return x * x


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def _fail_at(i: int, bad: int, folder: str) -> int:
    """Record that task ``i`` started, then fail on ``bad``; the others take a moment."""
    Path(folder, f"{i}").touch()
    if i == bad:
        raise ValueError(f"task {i} is bad")
    time.sleep(0.05)
    return i


def _nested_jobs(_: int) -> int:
    """How many workers a nested Parallel call inside a task may use."""
    return joblib.effective_n_jobs(-1)


def _server() -> set[int]:
    """The forkserver's server process, which outlives pools by design."""
    return {p for p in live_children() if "forkserver" in " ".join(_cmdline(p))}


def _cmdline(pid: int) -> list[str]:
    import psutil

    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_parallel_gives_joblib_results_on_every_strategy(strategy: str) -> None:
    """A plain Parallel call returns what n_jobs=1 returns, whichever strategy runs it."""
    expected = [_square(i) for i in range(200)]
    with autopar.config(strategy=strategy), parallel_config(backend="autopar"):
        got = Parallel(n_jobs=2)(delayed(_square)(i) for i in range(200))
    assert got == expected
    assert autopar_joblib.last_decision() is not None


def test_n_jobs_1_runs_in_the_caller() -> None:
    """n_jobs=1 is an upper bound of one worker: joblib runs each task in the caller."""
    with parallel_config(backend="autopar"):
        got = Parallel(n_jobs=1)(delayed(os.getpid)() for _ in range(4))
    assert set(got) == {os.getpid()}
    decision = autopar_joblib.last_decision()
    assert decision is not None
    assert decision.strategy == "serial"


def test_bad_n_jobs_is_named() -> None:
    """n_jobs=0 raises a ValueError naming it."""
    with parallel_config(backend="autopar"), pytest.raises(ValueError, match="n_jobs=0"):
        Parallel(n_jobs=0)(delayed(_square)(i) for i in range(3))


def test_short_tiny_work_stays_in_the_caller() -> None:
    """Tiny tasks run in the calling process: no worker process is started for them."""
    before = live_children()
    with parallel_config(backend="autopar"):
        got = Parallel(n_jobs=-1)(delayed(math.sqrt)(i) for i in range(20_000))
    assert len(got) == 20_000
    assert live_children() - before == set()
    decision = autopar_joblib.last_decision()
    assert decision is not None
    assert decision.strategy == "serial"


@pytest.mark.timeout(120)
def test_long_gil_bound_work_goes_to_processes() -> None:
    """Pure-Python tasks of a few tens of ms, a known count: the decision is a process pool."""
    with parallel_config(backend="autopar"):
        got = Parallel(n_jobs=2)([delayed(_spin)(300_000) for _ in range(80)])
    assert got == [_spin(300_000)] * 80
    decision = autopar_joblib.last_decision()
    assert decision is not None
    assert decision.strategy in ("fork", "forkserver", "spawn"), str(decision)
    assert decision.workers <= 2


@pytest.mark.parametrize("return_as", ["generator", "generator_unordered"])
@pytest.mark.parametrize("strategy", ["serial", "threads", "forkserver"])
def test_generators_yield_every_result(return_as: str, strategy: str) -> None:
    """return_as='generator' yields in order, 'generator_unordered' yields every result."""
    with autopar.config(strategy=strategy), parallel_config(backend="autopar"):
        out = Parallel(n_jobs=2, return_as=return_as)(delayed(_square)(i) for i in range(50))
        got = list(out)
    expected = [_square(i) for i in range(50)]
    assert (got if return_as == "generator" else sorted(got)) == expected


@pytest.mark.timeout(120)
@pytest.mark.parametrize("strategy", ["threads", "forkserver"])
def test_error_aborts_with_the_remote_traceback_and_leaves_no_worker(strategy: str, tmp_path: Path) -> None:
    """The first failure reaches the caller with its traceback; no batch starts later; no worker is left."""
    before = live_children()
    with (
        autopar.config(strategy=strategy),
        parallel_config(backend="autopar"),
        pytest.raises(ValueError, match="task 5 is bad") as info,
    ):
        Parallel(n_jobs=2, batch_size=1)(delayed(_fail_at)(i, 5, str(tmp_path)) for i in range(60))
    assert "_fail_at" in str(info.value.__cause__)
    started = {p.name for p in tmp_path.iterdir()}
    assert len(started) < 60
    time.sleep(0.3)
    assert {p.name for p in tmp_path.iterdir()} == started, "a batch started after the failure"
    assert wait_until(lambda: live_children() - _server() - before == set(), timeout=10)


@pytest.mark.timeout(60)
def test_timeout_raises_and_stops_the_workers() -> None:
    """A batch past Parallel's timeout raises TimeoutError; its process worker is terminated."""
    before = live_children()
    with (
        autopar.config(strategy="forkserver"),
        parallel_config(backend="autopar"),
        pytest.raises((TimeoutError, multiprocessing.TimeoutError)),
    ):
        Parallel(n_jobs=2, timeout=0.5)(delayed(time.sleep)(s) for s in [0.0, 0.0, 30, 30])
    assert wait_until(lambda: live_children() - _server() - before == set(), timeout=10)


_CTRL_C_SCRIPT = """
import multiprocessing, os, signal, sys, threading, time
import autopar
import autopar.joblib
from joblib import Parallel, delayed, parallel_config

def sleep_item(path):
    open(path, "w").close()
    time.sleep(60)

def interrupt(directory, running):
    while len(os.listdir(directory)) < running:
        time.sleep(0.005)
    global interrupted_at
    interrupted_at = time.monotonic()
    os.kill(os.getpid(), signal.SIGINT)

if __name__ == "__main__":
    strategy, directory = sys.argv[1], sys.argv[2]
    threading.Thread(target=interrupt, args=(directory, 2), daemon=True).start()
    try:
        with autopar.config(strategy=strategy), parallel_config(backend="autopar"):
            Parallel(n_jobs=2)(delayed(sleep_item)(os.path.join(directory, str(i))) for i in range(50))
    except KeyboardInterrupt:
        returned_s = time.monotonic() - interrupted_at
        print(f"returned_s={returned_s:.3f} workers_left={len(multiprocessing.active_children())}")
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("strategy", ["forkserver", "spawn"])
def test_ctrl_c_stops_the_workers_and_raises(strategy: str, tmp_path: Path) -> None:
    """SIGINT while both process workers run a 60 s task: KeyboardInterrupt within 2 s, no worker left."""
    script = tmp_path / "interrupt_me.py"
    script.write_text(_CTRL_C_SCRIPT)
    started = tmp_path / "started"
    started.mkdir()
    done = helpers.run_python([str(script), strategy, str(started)], tmp_path, timeout=100)
    assert "returned_s=" in done.stdout, done.stdout + done.stderr
    report = {k: float(v) for k, v in (part.split("=") for part in done.stdout.split())}
    assert report["returned_s"] < 2.0, report
    assert report["workers_left"] == 0


def test_nested_calls_inside_a_worker_run_serially() -> None:
    """A Parallel call inside a task sees one worker: no oversubscription."""
    with autopar.config(strategy="threads"), parallel_config(backend="autopar"):
        got = Parallel(n_jobs=2)(delayed(_nested_jobs)(i) for i in range(8))
    assert set(got) == {1}


def test_import_autopar_joblib_registers_the_backend() -> None:
    """Importing autopar.joblib registers "autopar"; register() can make it the default."""
    from joblib.parallel import BACKENDS

    assert BACKENDS["autopar"] is autopar_joblib.AutoparBackend
    autopar_joblib.register()
    assert BACKENDS["autopar"] is autopar_joblib.AutoparBackend


# -- scikit-learn -----------------------------------------------------------------------------------------------------


@pytest.fixture(name="data", scope="module")
def _data() -> tuple[np.ndarray, np.ndarray]:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    return sklearn_datasets.make_classification(n_samples=120, n_features=6, random_state=0)


def _search_and_cv(X: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, float], np.ndarray]:
    """A grid search's best score and parameters, and cross-validation scores, with n_jobs=2."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    model_selection = pytest.importorskip("sklearn.model_selection")
    search = model_selection.GridSearchCV(linear_model.LogisticRegression(), {"C": [0.1, 1.0, 10.0]}, cv=3, n_jobs=2)
    search.fit(X, y)
    scores = model_selection.cross_val_score(linear_model.LogisticRegression(), X, y, cv=4, n_jobs=2)
    return search.best_score_, search.best_params_, scores


@pytest.fixture(name="loky_results", scope="module")
def _loky_results(data: tuple[np.ndarray, np.ndarray]) -> tuple[float, dict[str, float], np.ndarray]:
    """The results under loky, computed once; loky's workers are stopped (its resource tracker stays, as it does)."""
    with parallel_config(backend="loky"):
        results = _search_and_cv(*data)
    get_reusable_executor().shutdown(wait=True)
    return results


@pytest.mark.timeout(180)
@pytest.mark.parametrize("strategy", [None, *STRATEGIES])
def test_sklearn_search_and_cv_match_loky(
    strategy: str | None,
    data: tuple[np.ndarray, np.ndarray],
    loky_results: tuple[float, dict[str, float], np.ndarray],
) -> None:
    """GridSearchCV.fit and cross_val_score give loky's results under every strategy autopar may pick."""
    with autopar.config(strategy=strategy or "auto"), parallel_config(backend="autopar"):
        got = _search_and_cv(*data)
    assert got[0] == pytest.approx(loky_results[0])
    assert got[1] == loky_results[1]
    np.testing.assert_allclose(got[2], loky_results[2])
    decision = autopar_joblib.last_decision()
    assert decision is not None
    if strategy is not None:
        assert decision.strategy == strategy


@pytest.mark.timeout(120)
@pytest.mark.parametrize("strategy", [None, "threads", "forkserver"])
def test_forest_predict_proba_with_sharedmem_matches_serial(
    strategy: str | None, data: tuple[np.ndarray, np.ndarray]
) -> None:
    """A forest's predict_proba (require='sharedmem') gives serial's probabilities; processes are never used."""
    ensemble = pytest.importorskip("sklearn.ensemble")
    X, y = data
    forest = ensemble.RandomForestClassifier(n_estimators=24, random_state=0, n_jobs=1).fit(X, y)
    expected = forest.predict_proba(X)
    forest.set_params(n_jobs=2)
    with autopar.config(strategy=strategy or "auto"), parallel_config(backend="autopar"):
        got = forest.predict_proba(X)
    np.testing.assert_array_equal(got, expected)
    decision = autopar_joblib.last_decision()
    assert decision is not None
    assert decision.strategy in ("serial", "threads")
