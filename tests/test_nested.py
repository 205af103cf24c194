"""Nested calls and native thread pools: no oversubscription, no deadlock."""

from __future__ import annotations

import os

import pytest

import autopar
import helpers
from autopar._model import PlatformFacts


@pytest.mark.parametrize("strategy", ["threads", "fork", "forkserver", "spawn"])
def test_nested_map_inside_a_worker_runs_serially(strategy: str) -> None:
    """autopar.map called inside a worker (thread or process) runs serially and returns correct results."""
    out = autopar.map(helpers.nested_strategy, range(4), strategy=strategy, workers=2, chunksize=1)
    assert [total for _, _, total in out] == [sum(i * i for i in range(x + 1)) for x in range(4)]
    assert {nested for _, nested, _ in out} == {"serial"}
    if strategy != "threads":
        assert os.getpid() not in {pid for pid, _, _ in out}


@pytest.mark.parametrize("strategy", ["fork", "spawn"])
def test_process_workers_limit_native_thread_pools(strategy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Process workers run BLAS/OpenMP pools with usable CPUs // workers threads (at least one)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    expected = str(max(1, autopar.cpu_count() // 2))
    seen = autopar.map(helpers.native_thread_vars, range(4), strategy=strategy, workers=2)
    assert all(set(v.values()) == {expected} for v in seen)
    assert "OMP_NUM_THREADS" not in os.environ  # the caller's environment is restored


def test_native_thread_override_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """AUTOPAR_NATIVE_THREADS sets the native thread-pool size of process workers."""
    monkeypatch.setenv("AUTOPAR_NATIVE_THREADS", "3")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    seen = autopar.map(helpers.native_thread_vars, range(2), strategy="spawn", workers=2)
    assert all(set(v.values()) == {"3"} for v in seen)


def test_native_thread_override_rejects_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad AUTOPAR_NATIVE_THREADS raises ValueError naming the variable and the value."""
    monkeypatch.setenv("AUTOPAR_NATIVE_THREADS", "lots")
    with pytest.raises(ValueError, match=r"AUTOPAR_NATIVE_THREADS='lots'"):
        autopar.map(helpers.square, range(4), strategy="fork", workers=2)


def _facts(**changes: object) -> PlatformFacts:
    base = {
        "system": "linux",
        "python_version": (3, 12),
        "start_methods": ("fork", "spawn", "forkserver"),
        "default_start_method": "fork",
    }
    return PlatformFacts(**{**base, **changes})  # type: ignore[arg-type]
