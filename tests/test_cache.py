"""The measurement cache: keys, drift, and persistence under AUTOPAR_CACHE_DIR."""

from __future__ import annotations

import json
import logging
import os
import types
from pathlib import Path
from typing import Any

import attrs
import pytest

import autopar
import helpers
from autopar import _cache, _run
from autopar._model import Decision, Measurements


def _measured(per_item_s: float = 0.001) -> Measurements:
    return Measurements(n_items=1000, sampled=10, item_wall_s=per_item_s, item_cpu_s=per_item_s)


def test_key_is_stable_per_function_and_size_class() -> None:
    """One function and one size class give one key; a different size class gives another."""
    assert _cache.cache_key(helpers.square, 1000) == _cache.cache_key(helpers.square, 1100)
    assert _cache.cache_key(helpers.square, 1000) != _cache.cache_key(helpers.square, 100_000)
    assert _cache.cache_key(helpers.square, None) != _cache.cache_key(helpers.square, 1000)
    assert _cache.cache_key(helpers.square, 10) != _cache.cache_key(helpers.countdown, 10)


def test_key_is_the_same_in_another_interpreter(tmp_path: Path) -> None:
    """The key names the code the same way in every process (a cache file written by one run serves the next)."""
    code = "import helpers; from autopar import _cache; print(_cache.cache_key(helpers.square, 1000))"
    tests = str(Path(__file__).parent)
    done = helpers.run_python(["-c", code], tmp_path, env={"PYTHONPATH": f"{helpers.SRC}{os.pathsep}{tests}"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == _cache.cache_key(helpers.square, 1000)
    assert _cache.cache_key(helpers.square, 1000) != _cache.cache_key(helpers.countdown, 1000)


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


@pytest.mark.parametrize(
    ("elapsed_s", "drifted"),
    [(0.30, False), (0.25, False), (3.0, True), (0.03, True)],
)
def test_a_call_drifts_when_its_wall_time_is_far_from_the_prediction(elapsed_s: float, drifted: bool) -> None:
    """32 threads on items of 30 ms predicted to take 0.27 s after a 30 ms calibration: on time, the entry stays,
    though each thread ran its items far slower than one item alone; 10 times off either way, it goes."""
    key = _cache.cache_key(helpers.square, 40)
    m = attrs.evolve(_measured(0.03), sampled=1, calibration_s=0.03)
    _cache.put(key, m)
    call = types.SimpleNamespace(key=key, ran=None)
    decision = Decision(strategy="threads", workers=32, chunksize=1, predicted_s=0.27, measurements=m)
    _run._observe(call, decision, elapsed_s, 40)  # type: ignore[arg-type]
    assert (_cache.get(key) is None) is drifted


def test_entries_persist_across_processes_in_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With AUTOPAR_CACHE_DIR set, entries land in a JSON file keyed by interpreter and machine, and load back."""
    monkeypatch.setenv("AUTOPAR_CACHE_DIR", str(tmp_path))
    key = _cache.cache_key(helpers.square, 1000)
    _cache.put(key, _measured(0.002))
    files = list(tmp_path.glob("decisions-*.json"))
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
    for path in tmp_path.glob("decisions-*.json"):
        path.write_text("{not json")
    _cache.clear()
    assert _cache.get(key) is None


def test_cache_file_name_carries_the_autopar_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is named after autopar's version, so a file another version wrote is never read."""
    monkeypatch.setenv("AUTOPAR_CACHE_DIR", str(tmp_path))
    key = _cache.cache_key(helpers.square, 1000)
    _cache.put(key, _measured(0.002))
    (written,) = tmp_path.glob("decisions-*.json")
    assert f"autopar{autopar.__version__}-" in written.name
    other = tmp_path / written.name.replace(f"autopar{autopar.__version__}-", "autopar0.0.0-")
    written.rename(other)
    _cache.clear()
    assert _cache.get(key) is None


def test_fields_of_one_call_are_never_stored_and_an_entry_holding_them_still_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool a first call started and the items it had out describe that call: a later one reads none of them."""
    monkeypatch.setenv("AUTOPAR_CACHE_DIR", str(tmp_path))
    key = _cache.cache_key(helpers.square, 1000)
    assert key is not None
    one_call = {"early_pool": ("fork", 8), "speculative_out_s": (0.01,), "warm_pools": frozenset({("fork", 8)})}
    _cache.put(key, Measurements(n_items=1000, item_wall_s=0.002, **one_call))  # type: ignore[arg-type]
    (path,) = tmp_path.glob("decisions-*.json")
    entry = json.loads(path.read_text())[key]
    assert not set(one_call) & set(entry)
    path.write_text(json.dumps({key: {**entry, "early_pool": ["fork", 8]}}))  # as an earlier build stored it
    _cache.clear()
    loaded = _cache.get(key)
    assert loaded is not None
    assert (loaded.item_wall_s, loaded.early_pool, loaded.speculative_out_s) == (0.002, None, ())


def _wrong_type(entry: dict[str, Any]) -> Any:
    return {**entry, "item_wall_s": "fast"}


def _unknown_field(entry: dict[str, Any]) -> Any:
    return {**entry, "item_colour": "blue"}


def _missing_field(entry: dict[str, Any]) -> Any:
    return {k: v for k, v in entry.items() if k != "item_cpu_s"}


def _not_an_object(entry: dict[str, Any]) -> Any:
    return [entry]


@pytest.mark.parametrize("corrupt", [_wrong_type, _unknown_field, _missing_field, _not_an_object, None])
def test_unusable_cache_entry_is_dropped_recalibrated_and_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, corrupt: Any
) -> None:
    """An entry this version cannot use (or a file of invalid JSON) makes the call recalibrate, log once, rewrite it."""
    monkeypatch.setenv("AUTOPAR_CACHE_DIR", str(tmp_path))
    key = _cache.cache_key(helpers.square, 1000)
    assert key is not None
    _cache.put(key, _measured())
    (path,) = tmp_path.glob("decisions-*.json")
    good_entry = json.loads(path.read_text())[key]
    path.write_text("{not json" if corrupt is None else json.dumps({key: corrupt(good_entry)}))
    _cache.clear()  # a new process starts with an empty memory
    # One worker: the call runs serially, so no drift check can drop the fresh entry on a busy machine.
    with caplog.at_level(logging.DEBUG, logger="autopar"):
        assert autopar.map(helpers.square, range(1000), workers=1) == [x * x for x in range(1000)]
        assert autopar.map(helpers.square, range(1000), workers=1) == [x * x for x in range(1000)]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unusable entries of the cache file" in m for m in messages) == 1
    assert sum(m.startswith("autopar calibration:") for m in messages) == 1
    rewritten = json.loads(path.read_text())[key]
    assert set(rewritten) == set(good_entry)
    assert isinstance(rewritten["item_wall_s"], float)
    _cache.clear()
    assert _cache.get(key) is not None  # the rewritten file loads back
