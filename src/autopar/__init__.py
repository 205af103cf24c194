"""autopar: run a function over many items in parallel, with the strategy chosen by measurement.

>>> import autopar
>>> autopar.map(abs, [-1, -2, 3])
[1, 2, 3]

The public names are imported on first access (PEP 562), as CPython's
``concurrent.futures`` loads its executors: spawn and forkserver workers import
this package before their first item, and should not pay for asyncio, psutil
and attrs unless they use them.  Each public class sets ``__module__ =
"autopar"`` where it is defined, so reprs and pickles use the public path
whether or not it was reached through here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from ._asyncio import aimap, amap
    from ._config import config
    from ._decorator import Parallel, parallel
    from ._errors import (
        AutoparError,
        RemoteError,
        SerializationError,
        UnsafeStrategyWarning,
        WorkerCrashedError,
        WorkerStartError,
    )
    from ._executor import Executor
    from ._model import Candidate, Decision, Measurements, PlatformFacts
    from ._platform import cpu_count, probe_platform
    from ._pools import shutdown_all as shutdown
    from ._recorder import last_report
    from ._registry import register_strategy, strategy_names
    from ._report import Report
    from ._run import explain, imap, map

__all__ = [
    "__version__",
    "map",
    "imap",
    "explain",
    "last_report",
    "amap",
    "aimap",
    "Executor",
    "parallel",
    "Parallel",
    "config",
    "cpu_count",
    "probe_platform",
    "register_strategy",
    "strategy_names",
    "shutdown",
    "Decision",
    "Candidate",
    "Measurements",
    "PlatformFacts",
    "Report",
    "AutoparError",
    "WorkerCrashedError",
    "WorkerStartError",
    "SerializationError",
    "RemoteError",
    "UnsafeStrategyWarning",
]

#: Public name -> (the module that defines it, its name there); the same pairs as the TYPE_CHECKING imports.
_LAZY: dict[str, tuple[str, str]] = {
    "map": ("._run", "map"),
    "imap": ("._run", "imap"),
    "explain": ("._run", "explain"),
    "last_report": ("._recorder", "last_report"),
    "amap": ("._asyncio", "amap"),
    "aimap": ("._asyncio", "aimap"),
    "Executor": ("._executor", "Executor"),
    "parallel": ("._decorator", "parallel"),
    "Parallel": ("._decorator", "Parallel"),
    "config": ("._config", "config"),
    "cpu_count": ("._platform", "cpu_count"),
    "probe_platform": ("._platform", "probe_platform"),
    "register_strategy": ("._registry", "register_strategy"),
    "strategy_names": ("._registry", "strategy_names"),
    "shutdown": ("._pools", "shutdown_all"),
    "Decision": ("._model", "Decision"),
    "Candidate": ("._model", "Candidate"),
    "Measurements": ("._model", "Measurements"),
    "PlatformFacts": ("._model", "PlatformFacts"),
    "Report": ("._report", "Report"),
    "AutoparError": ("._errors", "AutoparError"),
    "WorkerCrashedError": ("._errors", "WorkerCrashedError"),
    "WorkerStartError": ("._errors", "WorkerStartError"),
    "SerializationError": ("._errors", "SerializationError"),
    "RemoteError": ("._errors", "RemoteError"),
    "UnsafeStrategyWarning": ("._errors", "UnsafeStrategyWarning"),
}


def __getattr__(name: str) -> Any:
    """Import the module that defines the public ``name`` and keep the value here for the next access.

    Raises:
        AttributeError: ``name`` is not a public name of autopar.
    """
    try:
        module, attr = _LAZY[name]
    except KeyError:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg) from None
    value = getattr(importlib.import_module(module, __name__), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names, loaded or not, and the package's own dunder and private attributes."""
    return sorted({*__all__, *(name for name in globals() if name.startswith("_"))})
