"""The main module: can spawn and forkserver children re-import it, and does this call run under its main guard?

spawn and forkserver children re-run ``__main__`` by path.  ``main_importable``
tells whether that file exists; ``main_file_hidden`` hides a path that names
no file (``python -`` gives "<stdin>") while such children start;
``in_main_bootstrap`` tells a child that is still importing ``__main__``; and
``called_without_main_guard`` finds a call made by a script's module-level
code outside ``if __name__ == "__main__":``, which every child would repeat.
``process_context`` is the start method's context whose spawn and forkserver
processes start with such a path hidden, for autopar's pools and ``Executor``.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import multiprocessing.context
import multiprocessing.process
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._forksafe import fork_safe_lock

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["called_without_main_guard", "in_main_bootstrap", "main_file_hidden", "main_importable", "process_context"]


def main_importable() -> bool:
    """``__main__`` is a file on disk that spawn and forkserver children can re-import.

    False in a REPL, under ``python -c``, ``python -`` (stdin) and in notebooks.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return isinstance(path, str) and os.path.isfile(path)


#: Guards the hiding of ``__main__.__file__`` across threads: the first start hides it, the last restores it.
_hide_lock = fork_safe_lock()
_hide_depth = 0
_hidden_file: tuple[Any, Any] | None = None


def _phantom_main_file(main: Any) -> bool:
    """``main`` names a main file by path that is no file on disk ("<stdin>" under ``python -``).

    multiprocessing re-runs ``__main__`` by path in spawn and forkserver children
    only when ``__main__`` was not run by module name (``python -m``).
    """
    if getattr(getattr(main, "__spec__", None), "name", None) is not None:
        return False
    path = getattr(main, "__file__", None)
    return path is not None and not (isinstance(path, str) and os.path.isfile(path))


@contextlib.contextmanager
def main_file_hidden() -> Iterator[None]:
    """Hide a ``__main__.__file__`` that is no file on disk while spawn or forkserver processes start.

    multiprocessing sends ``__main__.__file__`` to every spawn and forkserver
    child (and to the forkserver's server, which preloads it) to re-run it
    there; a name such as "<stdin>" kills the child before it runs anything.
    Without ``__file__`` multiprocessing leaves ``__main__`` alone in the
    child, as for an interactive session, which matches ``main_importable()``
    being False.  The attribute is put back when the outermost use ends, on
    error too; nested and concurrent uses share one hiding.
    """
    global _hide_depth, _hidden_file
    with _hide_lock:
        if _hide_depth == 0:
            main = sys.modules.get("__main__")
            if main is not None and _phantom_main_file(main):
                path = main.__file__
                with contextlib.suppress(AttributeError, TypeError):
                    del main.__file__
                    _hidden_file = (main, path)
        _hide_depth += 1
    try:
        yield
    finally:
        with _hide_lock:
            _hide_depth -= 1
            if _hide_depth == 0 and _hidden_file is not None:
                main, path = _hidden_file
                _hidden_file = None
                # A ``__file__`` set meanwhile by someone else wins over the hidden one.
                if not hasattr(main, "__file__"):
                    main.__file__ = path


def in_main_bootstrap() -> bool:
    """This is a spawn/forkserver child still importing ``__main__`` (a script without a main guard).

    The same test as CPython's ``multiprocessing.spawn._check_not_importing_main``.
    """
    return bool(getattr(multiprocessing.process.current_process(), "_inheriting", False))


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either operand order)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, *test.comparators]
    has_name = any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
    has_main = any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)
    return has_name and has_main


@functools.lru_cache(maxsize=8)
def _guarded_lines(path: str, mtime: float) -> tuple[tuple[int, int], ...]:
    """Line ranges of the main-guard blocks of the file at ``path``."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return ()
    guards = [n for n in ast.walk(tree) if isinstance(n, ast.If) and _is_main_guard(n)]
    return tuple((n.lineno, n.end_lineno or n.lineno) for n in guards)


def called_without_main_guard() -> bool:
    """True when ``__main__`` runs this call from its module-level code outside ``if __name__ == "__main__":``.

    spawn and forkserver children re-run such code when they import the main
    module, so those start methods would run the call again in every child.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path or not os.path.exists(path):
        return False
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals is vars(main):
            guarded = _guarded_lines(path, os.path.getmtime(path))
            return not any(start <= frame.f_lineno <= end for start, end in guarded)
        frame = frame.f_back  # type: ignore[assignment]
    return False


class _MainHiding:
    """Mixin for a start method's Process class: start with a phantom main file hidden."""

    def start(self) -> None:
        with main_file_hidden():
            super().start()  # type: ignore[misc]


# Module level, so spawn can pickle the process object it sends to the child.
class _SpawnProcess(_MainHiding, multiprocessing.context.SpawnProcess):
    pass


_MAIN_HIDING: dict[str, type[Any]] = {"spawn": _SpawnProcess}
if sys.platform != "win32":

    class _ForkServerProcess(_MainHiding, multiprocessing.context.ForkServerProcess):
        pass

    _MAIN_HIDING["forkserver"] = _ForkServerProcess


def process_context(method: str) -> multiprocessing.context.BaseContext:
    """The start method's context; for spawn and forkserver, one whose workers start with a phantom main file hidden.

    A script read from standard input has ``__main__.__file__ == "<stdin>"``, which
    multiprocessing would tell each spawn or forkserver worker to re-run.
    """
    ctx = multiprocessing.get_context(method)
    hiding = _MAIN_HIDING.get(method)
    if hiding is None:
        return ctx
    context = copy.copy(ctx)
    context.Process = hiding  # type: ignore[attr-defined]
    return context
