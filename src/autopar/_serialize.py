"""Can it ship?  How spawn and forkserver workers receive a function, and why one cannot.

autopar's spawn and forkserver workers never import the caller's ``__main__``
(``_main_module``), so a function goes by reference only when it lives at
module level in an importable module; functions, classes and data of
``__main__`` (a script, ``python -c``, a REPL, a notebook), lambdas, closures
and nested functions go by value with cloudpickle.  ``shipping`` works out
which, once per call, and for a function that cannot go even by value (a lock
or a socket in a global or a closure cell) names the object and what holds it.
``pickle_function`` pickles a function for process workers.
On Python 3.14+ it also gathers what auto-selection's rule for subinterpreters
reads (``_core._safety.interpreters_auto_problem``): the packages the
function's module refers to that hold a loaded extension module.
"""

from __future__ import annotations

import importlib.machinery
import pickle
import sys
import types
from typing import TYPE_CHECKING, Any

from ._core._identity import unwrap_function
from ._core._safety import interpreters_auto_problem
from ._errors import SerializationError
from ._model import Shipping
from ._pickling import by_value, dumps

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["extension_packages", "pickle_function", "ship_problem", "shipping"]


#: Why a function of ``__main__`` goes by value; fork workers still find it by reference, since they
#: inherit the module.
_MAIN_FUNCTION = "it is defined in the main module, which spawn and forkserver workers never import"


def ship_problem(func: Callable[..., Any]) -> str | None:
    """Why spawn/forkserver workers cannot receive ``func`` by reference, or None when they can."""
    qualname = getattr(func, "__qualname__", None)
    module = getattr(func, "__module__", None)
    if qualname is not None and module is not None:
        if "<lambda>" in qualname:
            return "it is a lambda"
        if "<locals>" in qualname:
            return "it is a closure or nested function (defined inside another function)"
        if module == "__main__":
            return _MAIN_FUNCTION
    try:
        pickle.dumps(func)
    except Exception as exc:
        return f"it cannot be pickled ({exc!r})"
    return None


def _fails_by_value(obj: object) -> bool:
    try:
        by_value(obj)
    except Exception:
        return True
    return False


def _holder(func: Any, depth: int = 0) -> str | None:
    """The closure cell or global of ``func`` that holds an object cloudpickle cannot pickle, or None."""
    code = getattr(func, "__code__", None)
    if code is None or depth > 3:
        return None
    named: list[tuple[str, object]] = []
    for name, cell in zip(code.co_freevars, getattr(func, "__closure__", None) or (), strict=False):
        try:
            named.append((f"closure cell {name!r}", cell.cell_contents))
        except ValueError:  # an empty cell
            continue
    module_globals = getattr(func, "__globals__", {})
    named += [(f"global {n!r}", module_globals[n]) for n in code.co_names if n in module_globals]
    for where, value in named:
        if isinstance(value, types.ModuleType) or not _fails_by_value(value):
            continue
        inner = _holder(value, depth + 1) if isinstance(value, types.FunctionType) else None
        return inner or f"the {where} holds {value!r}"
    return None


def _by_value_problem(func: Callable[..., Any]) -> str | None:
    """Why cloudpickle cannot send ``func`` by value either, naming what holds the culprit; None when it can."""
    try:
        by_value(func)
    except Exception as exc:
        held = _holder(func)
        return f"it cannot be sent by value either ({exc}){': ' + held if held else ''}"
    return None


def _top(name: object) -> str | None:
    return name.partition(".")[0] if isinstance(name, str) and name else None


def extension_packages(module_name: str | None) -> tuple[str, ...]:
    """Packages outside the standard library, referred to by the module's globals, that hold a loaded extension module.

    The module's own package counts, and so does the module of every function
    or class in its globals (``from numpy import array`` refers to NumPy).
    """
    module = sys.modules.get(module_name or "")
    if module is None:
        return ()
    referred = {_top(module_name)}
    for value in list(vars(module).values()):
        referred.add(
            _top(value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None))
        )
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    with_extensions = set()
    for name, loaded in list(sys.modules.items()):
        top = _top(name)
        if top in referred and top not in sys.stdlib_module_names:
            file = getattr(loaded, "__file__", None)
            if isinstance(file, str) and file.endswith(suffixes):
                with_extensions.add(top)
    return tuple(sorted(p for p in with_extensions if p is not None))


def _interpreters_problem(func: Callable[..., Any], by_reference: bool) -> str | None:
    """Why auto does not try ``func`` in subinterpreters (only worked out where they exist)."""
    if sys.version_info < (3, 14):
        return "subinterpreters need Python 3.14 or later"
    target = unwrap_function(func)
    module, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    packages = extension_packages(module) if by_reference else ()
    return interpreters_auto_problem(module, qualname, by_reference=by_reference, extension_packages=packages)


def shipping(func: Callable[..., Any]) -> Shipping:
    """Whether process workers (and subinterpreters, for auto) can receive ``func``, worked out once for a call."""
    problem = ship_problem(func)
    if problem is None:
        name = getattr(func, "__qualname__", repr(func))
        return Shipping(name=name, interpreters_problem=_interpreters_problem(func, by_reference=True))
    fails = _by_value_problem(func)
    return Shipping(
        name=getattr(func, "__qualname__", repr(func)),
        interpreters_problem=_interpreters_problem(func, by_reference=False),
        problem=problem if fails is None else f"{problem}, and {fails}",
        fork_problem=None if problem == _MAIN_FUNCTION else problem,
        by_value=fails is None,
    )


def pickle_function(func: Callable[..., Any], *, inherited_main: bool = False) -> bytes:
    """``func`` pickled for a worker process: by reference, else by value with cloudpickle.

    A function that refers to ``__main__`` goes by value, unless the workers
    are fork workers (``inherited_main``), which inherit the main module.

    Raises:
        SerializationError: neither pickle nor cloudpickle can pickle it.
    """
    try:
        return pickle.dumps(func, protocol=pickle.HIGHEST_PROTOCOL) if inherited_main else dumps(func)
    except Exception as exc:
        if inherited_main:
            try:
                return by_value(func)
            except Exception:
                pass
        held = _holder(func)
        where = f" ({held})" if held else ""
        msg = f"cannot pickle the function {func!r} to send it to a worker process, even by value{where}: {exc}"
        raise SerializationError(msg) from exc
