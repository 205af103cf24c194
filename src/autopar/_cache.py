"""Measurements cached per function and input size class, so a second call skips calibration.

The cache keeps *measurements*, not decisions: a hit re-runs the pure cost
model with today's platform facts (fork may have become unsafe, a pool may be
warm), which costs microseconds.  An entry is dropped when a run observes a
per-item time far from the measured one.  With ``AUTOPAR_CACHE_DIR`` set,
entries persist across processes in a JSON file keyed by Python version,
build and machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ._core._identity import unwrap_function
from ._forksafe import fork_safe_lock
from ._model import Measurements
from ._platform import is_gil_enabled

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["cache_key", "clear", "get", "observe", "put"]

#: A run whose per-item time differs from the cached one by more than this factor recalibrates.
DRIFT_FACTOR = 4.0

_lock = fork_safe_lock()
_memory: dict[str, Measurements] = {}
_loaded_dirs: set[str] = set()


def _size_class(n_items: int | None) -> str:
    if n_items is None:
        return "stream"
    return f"2^{round(math.log2(max(n_items, 1)))}"


def cache_key(func: Callable[..., Any], n_items: int | None) -> str | None:
    """A stable key for ``func``'s code and the size class of its input, or None if it has no stable identity."""
    target = unwrap_function(func)
    code = getattr(target, "__code__", None)
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if code is not None:
        digest = hashlib.sha1(code.co_code + repr(code.co_consts).encode(), usedforsecurity=False).hexdigest()[:16]
        ident = f"{module}:{qualname}:{code.co_filename}:{code.co_firstlineno}:{digest}"
    elif module is not None and qualname is not None:
        ident = f"{module}:{qualname}"
    else:
        return None
    return f"{ident}|{_size_class(n_items)}"


def _store_path() -> Path | None:
    directory = os.environ.get("AUTOPAR_CACHE_DIR")
    if not directory:
        return None
    build = "gil" if is_gil_enabled() else "ft"
    name = f"decisions-py{sys.version_info[0]}{sys.version_info[1]}-{build}-{platform.machine()}-{platform.node()}.json"
    return Path(directory) / name


def _load(path: Path) -> None:
    if str(path) in _loaded_dirs:
        return
    _loaded_dirs.add(str(path))
    with contextlib.suppress(OSError, ValueError, TypeError):
        for key, fields in json.loads(path.read_text()).items():
            fields["warm_pools"] = frozenset()
            _memory.setdefault(key, Measurements(**fields))


def _save(path: Path) -> None:
    data = {k: attrs.asdict(m, filter=lambda a, _: a.name != "warm_pools") for k, m in _memory.items()}
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)


def get(key: str | None) -> Measurements | None:
    """Cached measurements for ``key``, if any."""
    if key is None:
        return None
    with _lock:
        path = _store_path()
        if path is not None:
            _load(path)
        return _memory.get(key)


def put(key: str | None, measurements: Measurements) -> None:
    """Remember ``measurements`` for ``key`` (and persist them when a cache directory is set)."""
    if key is None:
        return
    with _lock:
        _memory[key] = measurements
        path = _store_path()
        if path is not None:
            _save(path)


def observe(key: str | None, per_item_s: float) -> bool:
    """Record a run's observed per-item time; drop the entry and return True when it drifted."""
    if key is None or per_item_s <= 0:
        return False
    with _lock:
        cached = _memory.get(key)
        if cached is None or cached.item_wall_s <= 0:
            return False
        ratio = per_item_s / cached.item_wall_s
        if 1 / DRIFT_FACTOR <= ratio <= DRIFT_FACTOR:
            return False
        del _memory[key]
        path = _store_path()
        if path is not None:
            _save(path)
        return True


def clear() -> None:
    """Forget every cached measurement (in memory; the cache file is left alone)."""
    with _lock:
        _memory.clear()
        _loaded_dirs.clear()
