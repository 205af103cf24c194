"""Can it ship?  Checks whether spawn and forkserver workers can receive a function and its data.

spawn and forkserver start fresh interpreters, so the function must pickle by
reference (a module-level function of an importable module) or by value with
cloudpickle.  Lambdas, closures, nested functions and functions typed into an
interactive ``__main__`` cannot pickle by reference.  ``pickle_function``
pickles a function for process workers: by reference, else by value.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import sys
import types
from typing import TYPE_CHECKING, Any

from ._errors import SerializationError
from ._model import Shipping

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["has_cloudpickle", "pickle_function", "ship_problem", "shipping"]


def has_cloudpickle() -> bool:
    """Whether cloudpickle can be imported (without importing it when it is not loaded yet)."""
    if "cloudpickle" in sys.modules:
        return sys.modules["cloudpickle"] is not None  # None: imports of it are blocked
    try:
        return importlib.util.find_spec("cloudpickle") is not None
    except (ImportError, ValueError):
        return False


#: Why spawn and forkserver cannot import a function of an interactive ``__main__``; fork workers can
#: still receive it by reference, since they inherit the module.
_INTERACTIVE_MAIN = (
    "it is defined in an interactive __main__ (REPL, python -c or a notebook) that worker processes cannot import"
)


def ship_problem(func: Callable[..., Any], *, main_importable: bool) -> str | None:
    """Why spawn/forkserver workers cannot receive ``func`` by reference, or None when they can."""
    qualname = getattr(func, "__qualname__", None)
    module = getattr(func, "__module__", None)
    if qualname is not None and module is not None:
        if "<lambda>" in qualname:
            return "it is a lambda"
        if "<locals>" in qualname:
            return "it is a closure or nested function (defined inside another function)"
        if module == "__main__" and not main_importable:
            return _INTERACTIVE_MAIN
    try:
        pickle.dumps(func)
    except Exception as exc:
        return f"it cannot be pickled ({exc!r})"
    return None


def shipping(func: Callable[..., Any], *, main_importable: bool) -> Shipping:
    """Whether process workers can receive ``func``, worked out once for a call."""
    problem = ship_problem(func, main_importable=main_importable)
    return Shipping(
        name=getattr(func, "__qualname__", repr(func)),
        problem=problem,
        fork_problem=None if problem == _INTERACTIVE_MAIN else problem,
        by_value=problem is not None and has_cloudpickle(),
    )


class _MainReferenceFinder(pickle.Pickler):
    """A pickler noting whether the pickle names a function or class of ``__main__`` by reference."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.names_main = False

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (types.FunctionType, type)) and getattr(obj, "__module__", None) == "__main__":
            self.names_main = True
        return NotImplemented


def _dumps_by_reference(func: Callable[..., Any], *, main_importable: bool) -> bytes:
    """``func`` pickled by reference.

    Raises:
        SerializationError: the pickle names something of ``__main__`` and the workers cannot import ``__main__``.
        Exception: whatever pickle raises for ``func``.
    """
    if main_importable:
        return pickle.dumps(func, protocol=pickle.HIGHEST_PROTOCOL)
    buffer = io.BytesIO()
    pickler = _MainReferenceFinder(buffer)
    pickler.dump(func)
    if pickler.names_main:
        msg = "it refers to a function or class of a __main__ that worker processes cannot import (no file on disk)"
        raise SerializationError(msg)
    return buffer.getvalue()


def pickle_function(func: Callable[..., Any], *, main_importable: bool = True) -> bytes:
    """``func`` pickled for a worker process: by reference, else by value with cloudpickle.

    With ``main_importable`` False (spawn or forkserver workers of a ``__main__``
    that is no file on disk, such as ``python -`` or ``python -c``), a function
    that refers to ``__main__`` goes by value: the workers could not find it by
    reference.

    Raises:
        SerializationError: neither pickle nor cloudpickle can pickle it.
    """
    try:
        return _dumps_by_reference(func, main_importable=main_importable)
    except Exception as exc:
        try:
            import cloudpickle
        except ImportError:
            msg = f"cannot pickle the function {func!r} to send it to a worker process: {exc!r}"
            raise SerializationError(msg) from exc
        return bytes(cloudpickle.dumps(func, protocol=pickle.HIGHEST_PROTOCOL))
