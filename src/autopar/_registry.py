"""The strategy registry: every way to run work, looked up by name.

Built-in strategies are named here by where they live and imported on first
use (the ``dask`` strategy, for one, imports ``distributed`` only then); a
plugin registers more with ``register_strategy``.  ``"auto"`` is not a
strategy: it asks the cost model to pick one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._forksafe import fork_safe_lock

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._types import Strategy

__all__ = ["get_strategy", "is_registered", "register_strategy", "strategy_names", "unregister_strategy"]

_PROCESS = "autopar._strategies._process._pool"
#: The built-in strategies: name -> (module, class name, constructor arguments), imported on first use.
_BUILT_IN: dict[str, Callable[[], Strategy] | tuple[str, str, tuple[Any, ...]]] = {
    "serial": ("autopar._strategies._serial", "SerialStrategy", ()),
    "threads": ("autopar._strategies._threads", "ThreadStrategy", ()),
    "fork": (_PROCESS, "ProcessStrategy", ("fork",)),
    "forkserver": (_PROCESS, "ProcessStrategy", ("forkserver",)),
    "spawn": (_PROCESS, "ProcessStrategy", ("spawn",)),
    "interpreters": ("autopar._strategies._interpreters", "InterpreterStrategy", ()),
    "dask": ("autopar._strategies._dask", "DaskStrategy", ()),
}
#: Every registered strategy: the built-ins, replaced or not, and the plugins' factories.
_registry = dict(_BUILT_IN)
_instances: dict[str, Strategy] = {}
_lock = fork_safe_lock()


def register_strategy(name: str, factory: Callable[[], Strategy], *, replace: bool = False) -> None:
    """Make a strategy available by ``name`` (for ``strategy=name`` and ``AUTOPAR_STRATEGY``).

    Args:
        name: the strategy's name; ``"auto"`` is reserved.
        factory: called once, on first use, to build the strategy object.
        replace: allow replacing an existing registration.

    Raises:
        ValueError: the name is reserved, or taken and ``replace`` is false.
    """
    if not isinstance(name, str) or not name or name == "auto":
        msg = f"strategy name {name!r} is reserved or empty; choose another name"
        raise ValueError(msg)
    with _lock:
        if name in _registry and not replace:
            msg = f"strategy {name!r} is already registered; pass replace=True to replace it"
            raise ValueError(msg)
        _registry[name] = factory
        _instances.pop(name, None)


def unregister_strategy(name: str) -> None:
    """Undo ``register_strategy(name, ...)``: a plugin's name goes away, a replaced built-in comes back.

    For tests and for plugins that remove themselves; pools already built keep running until shut down.

    Raises:
        ValueError: ``name`` is not registered, or is a built-in that was never replaced.
    """
    with _lock:
        if name not in _registry or _registry[name] is _BUILT_IN.get(name):
            msg = f"strategy {name!r} was not registered with register_strategy; nothing to undo"
            raise ValueError(msg)
        if name in _BUILT_IN:
            _registry[name] = _BUILT_IN[name]
        else:
            del _registry[name]
        _instances.pop(name, None)


def is_registered(name: str) -> bool:
    """Whether ``name`` names a registered strategy."""
    return name in _registry


def strategy_names() -> tuple[str, ...]:
    """Every registered strategy name, built-ins first."""
    return tuple(_registry)


def _build(entry: Callable[[], Strategy] | tuple[str, str, tuple[Any, ...]]) -> Strategy:
    if isinstance(entry, tuple):
        module, attr, args = entry
        cls = getattr(importlib.import_module(module), attr)
        return cls(*args)  # type: ignore[no-any-return]
    return entry()


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``.

    Raises:
        ValueError: no strategy has that name.
    """
    with _lock:
        if name not in _instances:
            if name not in _registry:
                accepted = ", ".join(repr(n) for n in ("auto", *_registry))
                msg = f"strategy={name!r} is not a known strategy; accepted: {accepted}"
                raise ValueError(msg)
            _instances[name] = _build(_registry[name])
        return _instances[name]
