"""Pickling for another interpreter: by reference, else by value with cloudpickle.

autopar's spawn and forkserver workers never import the caller's main module
(``_main_module.process_context``), so anything the caller defined there, a
function, a class or an instance of one, cannot be found by reference in a
worker; nor can anything a worker received by value be found by reference back
in the caller.  ``dumps`` pickles by reference when it can (the fast, common
case) and falls back to cloudpickle when the plain pickle fails or names
``__main__``.  Either pickle is read back with ``pickle.loads``: cloudpickle
writes standard pickles that refer to its own reconstructors.

Imported by every worker: standard library only at module level; cloudpickle
is imported on the first pickle that needs it.
"""

from __future__ import annotations

import pickle
import sys
import types
from typing import Any

__all__ = ["MAIN_MARKER", "by_value", "dumps", "for_workers", "share_main_globals"]

#: A reference to the main module in a pickle (opcodes GLOBAL and STACK_GLOBAL both spell the module name).
MAIN_MARKER = b"__main__"


def by_value(obj: Any) -> bytes:
    """``obj`` pickled with cloudpickle, which sends ``__main__`` functions and classes, lambdas and closures by value.

    Raises:
        Exception: whatever cloudpickle raises for ``obj`` (a lock or a socket it holds, say).
    """
    import cloudpickle

    return bytes(cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def dumps(obj: Any) -> bytes:
    """``obj`` pickled so that an interpreter that never imported the caller's main module can read it.

    The plain pickle is kept unless it fails or mentions ``__main__`` (a false
    alarm, such as the string "__main__" among the data, only costs the slower
    pickler).

    Raises:
        Exception: what cloudpickle raises, when neither pickler can pickle ``obj``.
    """
    try:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return by_value(obj)
    if MAIN_MARKER in data:
        return by_value(obj)
    return data


class _ByValue:
    """A function that pickles by value and unpickles as the function itself (no wrapper in the worker)."""

    __slots__ = ("func",)

    def __init__(self, func: Any) -> None:
        self.func = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return pickle.loads, (by_value(self.func),)


def for_workers(func: Any) -> Any:
    """``func``, or a wrapper that pickles it by value when its plain pickle fails or names ``__main__``.

    For pools that pickle with plain pickle, such as ``ProcessPoolExecutor``.
    """
    try:
        data = pickle.dumps(func, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return _ByValue(func)
    return _ByValue(func) if MAIN_MARKER in data else func


#: In a worker: the one namespace that functions of the caller's ``__main__`` received by value share,
#: as they share the main module's in the caller (cloudpickle gives each pickle its own).
_main_namespace: dict[str, Any] = {"__name__": "__main__"}


def _rehome(func: types.FunctionType) -> types.FunctionType:
    moved = types.FunctionType(func.__code__, _main_namespace, func.__name__, func.__defaults__, func.__closure__)
    moved.__kwdefaults__ = func.__kwdefaults__
    moved.__dict__.update(func.__dict__)
    moved.__qualname__ = func.__qualname__
    moved.__module__ = func.__module__
    return moved


def share_main_globals(func: Any) -> Any:
    """``func`` over the worker's one ``__main__`` namespace, when it came by value from the caller's ``__main__``.

    So an initializer that sets a global of the main module and the function
    that reads it see the same global in a worker, as they do in the caller.
    Other callables are returned unchanged.
    """
    if not isinstance(func, types.FunctionType) or func.__globals__.get("__name__") != "__main__":
        return func
    old = func.__globals__
    if old is _main_namespace or old is vars(sys.modules["__main__"]):
        return func
    for name, value in old.items():
        if name not in _main_namespace:
            same_home = isinstance(value, types.FunctionType) and value.__globals__ is old
            _main_namespace[name] = _rehome(value) if same_home else value
    return _rehome(func)
