"""What identifies a function across calls: the one rule the measurement cache and ``Executor.submit`` share.

A bound method is its function, a ``functools.partial`` the function it wraps,
a decorated function (``__wrapped__``) the original; the identity is then its
code object, so no instance, argument or closure is kept alive by it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

__all__ = ["function_identity", "unwrap_function"]

#: Most wrappers followed: a ``__wrapped__`` chain may loop.
_MAX_UNWRAP = 100


def unwrap_function(fn: Callable[..., Any]) -> Any:
    """The function under bound methods, partials and ``functools.wraps`` decorators."""
    target: Any = fn
    for _ in range(_MAX_UNWRAP):
        if isinstance(target, functools.partial):
            target = target.func
        elif hasattr(target, "__func__"):
            target = target.__func__
        elif hasattr(target, "__wrapped__"):
            target = target.__wrapped__
        else:
            break
    return target


def function_identity(fn: Callable[..., Any]) -> Hashable:
    """The code object of the function under ``fn``, or its (module, qualified name) when it has no code."""
    target = unwrap_function(fn)
    code = getattr(target, "__code__", None)
    if code is not None:
        return code  # type: ignore[no-any-return]
    module = getattr(target, "__module__", None) or type(target).__module__
    return (module, getattr(target, "__qualname__", None) or type(target).__qualname__)
