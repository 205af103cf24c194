"""Measurements cached per function and input size class, so a second call skips calibration.

The cache keeps *measurements*, not decisions: a hit re-runs the pure cost
model with today's platform facts (fork may have become unsafe, a pool may be
warm), which costs microseconds.  An entry is dropped when a run observes a
per-item time far from the measured one.  With ``AUTOPAR_CACHE_DIR`` set,
entries persist across processes in a JSON file keyed by autopar's version,
Python version, build and machine.  An entry the file holds but this version
cannot use (invalid JSON, a missing, unknown or wrongly typed field) is
dropped, logged once and the file rewritten: a cache never fails a call.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import sys
import types
import typing
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from . import _model
from ._core._identity import unwrap_function
from ._forksafe import fork_safe_lock
from ._model import Measurements
from ._platform import is_gil_enabled
from ._version import __version__

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["cache_key", "clear", "get", "observe", "put"]

#: A run whose per-item time differs from the cached one by more than this factor recalibrates.
DRIFT_FACTOR = 4.0
#: Fields that describe one call, never stored: the pools warm now, the cluster found now, the items out now
#: and the pool they run in.
_NOT_STORED = frozenset({"warm_pools", "cluster", "speculative_out_s", "early_pool"})

logger = logging.getLogger("autopar")
_lock = fork_safe_lock()
_memory: dict[str, Measurements] = {}
_loaded_dirs: set[str] = set()


def _size_class(n_items: int | None) -> str:
    if n_items is None:
        return "stream"
    return f"2^{round(math.log2(max(n_items, 1)))}"


def _digest(data: bytes) -> str:
    """16 hex digits that change with ``data``: a stable key, not a secure one (``hashlib`` costs a first call ~3 ms)."""
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def cache_key(func: Callable[..., Any], n_items: int | None) -> str | None:
    """A stable key for ``func``'s code and the size class of its input, or None if it has no stable identity."""
    target = unwrap_function(func)
    code = getattr(target, "__code__", None)
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if code is not None:
        digest = _digest(code.co_code + repr(code.co_consts).encode())
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
    # Imported here: a first call without a cache directory does not pay ~5 ms for them.
    import platform
    from pathlib import Path

    build = "gil" if is_gil_enabled() else "ft"
    # Another autopar version may store other fields, or the same ones with another meaning.
    python = f"py{sys.version_info[0]}{sys.version_info[1]}"
    name = f"decisions-autopar{__version__}-{python}-{build}-{platform.machine()}-{platform.node()}.json"
    return Path(directory) / name


def _matches(value: Any, annotation: Any) -> bool:
    """Whether a value read from JSON fits a ``Measurements`` field's annotation."""
    if annotation is type(None):
        return value is None
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if isinstance(value, bool) or annotation is bool:
        return annotation is bool and isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float))
    if annotation in (int, str):
        return isinstance(value, annotation)
    if typing.get_origin(annotation) is Mapping:
        key_type, value_type = typing.get_args(annotation)
        return isinstance(value, dict) and all(
            _matches(k, key_type) and _matches(v, value_type) for k, v in value.items()
        )
    return False


@functools.cache
def _stored_fields() -> dict[str, Any]:
    """Each stored field of ``Measurements`` and its annotation."""
    # The class reports the public module; its annotations name _model's globals, and
    # Mapping, which _model imports for annotations only.
    hints = typing.get_type_hints(Measurements, globalns=vars(_model), localns={"Mapping": Mapping})
    return {name: hint for name, hint in hints.items() if name not in _NOT_STORED}


def _entry(fields: Any) -> Measurements | str:
    """The measurements a stored entry holds, or why it cannot be used."""
    if not isinstance(fields, dict):
        return f"an entry is a {type(fields).__name__}, not an object"
    stored = _stored_fields()
    fields = {name: value for name, value in fields.items() if name not in _NOT_STORED}  # an older entry's
    unknown = sorted(set(fields) - set(stored))
    missing = sorted(set(stored) - set(fields))
    if unknown or missing:
        return f"unknown fields {unknown}, missing fields {missing}"
    wrong = sorted(name for name, value in fields.items() if not _matches(value, stored[name]))
    if wrong:
        return f"wrongly typed fields {wrong}"
    return Measurements(**fields)


def _read(path: Path) -> tuple[dict[str, Measurements], list[str]]:
    """The usable entries of the file at ``path``, and why others were dropped."""
    import json

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, []
    except (OSError, ValueError) as exc:
        return {}, [f"unreadable: {exc}"]
    if not isinstance(data, dict):
        return {}, [f"a {type(data).__name__}, not an object"]
    usable: dict[str, Measurements] = {}
    problems = []
    for key, fields in data.items():
        entry = _entry(fields)
        if isinstance(entry, str):
            problems.append(f"{key}: {entry}")
        else:
            usable[key] = entry
    return usable, problems


def _load(path: Path) -> None:
    if str(path) in _loaded_dirs:
        return
    _loaded_dirs.add(str(path))
    usable, problems = _read(path)
    for key, measurements in usable.items():
        _memory.setdefault(key, measurements)
    if problems:
        logger.info(
            "autopar: dropped %d unusable entries of the cache file %s (they recalibrate): %s",
            len(problems),
            path,
            "; ".join(problems),
        )
        _save(path)


def _save(path: Path) -> None:
    import json

    data = {k: attrs.asdict(m, filter=lambda a, _: a.name not in _NOT_STORED) for k, m in _memory.items()}
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
