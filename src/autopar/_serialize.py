"""Can it ship?  Checks whether spawn and forkserver workers can receive a function and its data.

spawn and forkserver start fresh interpreters, so the function must pickle by
reference (a module-level function of an importable module) or by value with
cloudpickle.  Lambdas, closures, nested functions and functions typed into an
interactive ``__main__`` cannot pickle by reference.
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
from typing import TYPE_CHECKING, Any

from ._errors import SerializationError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["has_cloudpickle", "ship_problem", "shipping_error"]


def has_cloudpickle() -> bool:
    """Whether cloudpickle can be imported (without importing it when it is not loaded yet)."""
    if "cloudpickle" in sys.modules:
        return sys.modules["cloudpickle"] is not None  # None: imports of it are blocked
    try:
        return importlib.util.find_spec("cloudpickle") is not None
    except (ImportError, ValueError):
        return False


def _by_reference_problem(func: Callable[..., Any], main_importable: bool) -> str | None:
    qualname = getattr(func, "__qualname__", None)
    module = getattr(func, "__module__", None)
    if qualname is None or module is None:
        try:
            pickle.dumps(func)
        except Exception as exc:
            return f"it cannot be pickled ({exc!r})"
        return None
    if "<lambda>" in qualname:
        return "it is a lambda"
    if "<locals>" in qualname:
        return "it is a closure or nested function (defined inside another function)"
    if module == "__main__" and not main_importable:
        return "it is defined in an interactive __main__ (REPL, python -c or a notebook) that worker processes cannot import"
    try:
        pickle.dumps(func)
    except Exception as exc:
        return f"it cannot be pickled ({exc!r})"
    return None


def ship_problem(func: Callable[..., Any], *, main_importable: bool) -> str | None:
    """Why spawn/forkserver workers cannot receive ``func`` by reference, or None when they can."""
    return _by_reference_problem(func, main_importable)


def shipping_error(func: Callable[..., Any], problem: str, strategy: str) -> SerializationError:
    """The error for a forced strategy that cannot ship ``func``, with the fix."""
    name = getattr(func, "__qualname__", repr(func))
    msg = (
        f"strategy {strategy!r} cannot send the function {name!r} to its worker processes: {problem}. "
        "Fix: move the function to module level in an importable module, "
        "or install cloudpickle (pip install 'autopar[cloudpickle]') to ship it by value, "
        "or use strategy='auto', 'fork' (where safe) or 'threads'."
    )
    return SerializationError(msg)
