"""autopar: run a function over many items in parallel, with the strategy chosen by measurement.

>>> import autopar
>>> autopar.map(abs, [-1, -2, 3])
[1, 2, 3]
"""

from ._asyncio import aimap, amap
from ._config import config
from ._decorator import Parallel, parallel
from ._errors import (
    AutoparError,
    RemoteError,
    SerializationError,
    UnsafeStrategyWarning,
    WorkerCrashedError,
)
from ._executor import Executor
from ._model import Candidate, Decision, Measurements, PlatformFacts
from ._platform import cpu_count, probe_platform
from ._pools import shutdown_all as shutdown
from ._registry import register_strategy, strategy_names
from ._run import explain, imap, map
from ._version import __version__

__all__ = [
    "__version__",
    "map",
    "imap",
    "explain",
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
    "AutoparError",
    "WorkerCrashedError",
    "SerializationError",
    "RemoteError",
    "UnsafeStrategyWarning",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("autopar."):
        _obj.__module__ = "autopar"
del _name, _obj
