"""Can it ship?  How spawn and forkserver workers receive a function, and why one cannot.

autopar's spawn and forkserver workers never import the caller's ``__main__``
(``_main_module``), so a function goes by reference only when it lives at
module level in an importable module; functions, classes and data of
``__main__`` (a script, ``python -c``, a REPL, a notebook), lambdas, closures
and nested functions go by value with cloudpickle.  ``shipping`` works out
which, once per call, and for a function that cannot go even by value (a lock
or a socket in a global or a closure cell) names the object and what holds it.
``pickle_function`` pickles a function for process workers.
``first_use_imports`` names the modules a function imports in its own body
that are not loaded yet (NumPy imported on first use).
On Python 3.14+ it also gathers what auto-selection's rule for subinterpreters
reads (``_core._safety.interpreters_auto_problem``): the packages the
function's module refers to that hold a loaded extension module.
"""

from __future__ import annotations

import functools
import importlib.machinery
import opcode
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

__all__ = ["extension_packages", "first_use_imports", "pickle_function", "ship_problem", "shipping"]


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


_OWN_PACKAGE = __name__.partition(".")[0]


def _extension_tops() -> set[str]:
    """Top-level packages outside the standard library with a loaded extension module."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    tops = set()
    for name, loaded in list(sys.modules.items()):
        file = getattr(loaded, "__file__", None)
        if isinstance(file, str) and file.endswith(suffixes):
            tops.add(name.partition(".")[0])
    return tops - set(sys.stdlib_module_names)


def extension_packages(module_name: str | None) -> tuple[str, ...]:
    """Packages outside the standard library that hold a loaded extension module and that the module uses.

    Followed from the module's globals, through the modules they name and the
    modules of the functions and classes they hold (``from numpy import array``
    uses NumPy), into every module of a package without extension modules,
    outside the standard library: what the module imports, directly or not.
    autopar itself is not followed: its package loads nothing at import, and its
    workers load in every subinterpreter.
    """
    with_extensions = _extension_tops()
    found: set[str] = set()
    seen: set[str] = set()
    todo = [module_name or ""]
    while todo:
        name = todo.pop()
        top = name.partition(".")[0]
        if name in seen or top in sys.stdlib_module_names or top == _OWN_PACKAGE:
            continue
        seen.add(name)
        if top in with_extensions:
            found.add(top)
            continue
        module = sys.modules.get(name)
        for value in list(vars(module).values()) if module is not None else ():
            used = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
            if isinstance(used, str) and used not in seen:
                todo.append(used)
    return tuple(sorted(found))


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


_IMPORT_NAME = opcode.opmap["IMPORT_NAME"]


def first_use_imports(func: Callable[..., Any]) -> frozenset[str]:
    """Top-level modules that ``func``'s own body imports and that are not loaded yet (its code's ``import``).

    Read from its bytecode, so nothing runs: a module a helper imports is not seen.
    """
    code = getattr(unwrap_function(func), "__code__", None)
    if not isinstance(code, types.CodeType):
        return frozenset()
    return frozenset(name for name in _imported(code) if name not in sys.modules)


@functools.lru_cache(maxsize=256)
def _imported(code: types.CodeType) -> frozenset[str]:
    """The top-level modules ``code``'s ``import`` statements name (read once per code object)."""
    raw, names, extended, found = code.co_code, code.co_names, 0, set()
    for at in range(0, len(raw) - 1, 2):
        op, arg = raw[at], raw[at + 1] | extended
        extended = arg << 8 if op == opcode.EXTENDED_ARG else 0
        if op == _IMPORT_NAME and arg < len(names):
            found.add(names[arg].partition(".")[0])
    return frozenset(found)


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
