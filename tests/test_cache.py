"""The measurement cache: keys, drift, and persistence under AUTOPAR_CACHE_DIR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import helpers
from autopar import _cache
from autopar._model import Measurements


def _measured(per_item_s: float = 0.001) -> Measurements:
    return Measurements(n_items=1000, sampled=10, item_wall_s=per_item_s, item_cpu_s=per_item_s)


def test_key_is_stable_per_function_and_size_class() -> None:
    """One function and one size class give one key; a different size class gives another."""
    assert _cache.cache_key(helpers.square, 1000) == _cache.cache_key(helpers.square, 1100)
    assert _cache.cache_key(helpers.square, 1000) != _cache.cache_key(helpers.square, 100_000)
    assert _cache.cache_key(helpers.square, None) != _cache.cache_key(helpers.square, 1000)
    assert _cache.cache_key(helpers.square, 10) != _cache.cache_key(helpers.countdown, 10)


def test_key_follows_code_not_object_identity() -> None:
    """Two lambdas with different code get different keys; a callable without identity gets none."""
    assert _cache.cache_key(lambda x: x, 10) != _cache.cache_key(lambda x: x + 1, 10)
    assert _cache.cache_key(object(), 10) is None


def test_drift_far_from_measured_drops_the_entry() -> None:
    """A run whose per-item time is far from the cached one drops the entry; a close one keeps it."""
    key = _cache.cache_key(helpers.square, 1000)
    _cache.put(key, _measured(0.001))
    assert not _cache.observe(key, 0.0015)
    assert _cache.get(key) is not None
    assert _cache.observe(key, 0.001 * (_cache.DRIFT_FACTOR + 1))
    assert _cache.get(key) is None


def test_entries_persist_across_processes_in_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With AUTOPAR_CACHE_DIR set, entries land in a JSON file keyed by interpreter and machine, and load back."""
    monkeypatch.setenv("AUTOPAR_CACHE_DIR", str(tmp_path))
    key = _cache.cache_key(helpers.square, 1000)
    _cache.put(key, _measured(0.002))
    files = list(tmp_path.glob("decisions-py*.json"))
    assert len(files) == 1
    assert key in json.loads(files[0].read_text())
    _cache.clear()  # a new process starts with an empty memory
    loaded = _cache.get(key)
    assert loaded is not None
    assert loaded.item_wall_s == 0.002


def test_cache_dir_with_garbage_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A corrupt cache file is ignored, never an error."""
    monkeypatch.setenv("AUTOPAR_CACHE_DIR", str(tmp_path))
    key = _cache.cache_key(helpers.square, 1000)
    _cache.put(key, _measured())
    for path in tmp_path.glob("decisions-py*.json"):
        path.write_text("{not json")
    _cache.clear()
    assert _cache.get(key) is None
