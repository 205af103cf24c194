"""The main module: autopar's spawn and forkserver workers never import it.

multiprocessing tells every spawn and forkserver child to run the parent's
``__main__`` again, by path or by module name
(``multiprocessing.spawn.get_preparation_data`` puts ``init_main_from_path`` or
``init_main_from_name`` into what the child prepares from), so a script's
module-level code runs once more in each child, or in the forkserver's server.
``process_context`` is the start method's context whose processes start
without that preparation: the caller's functions, classes and data defined in
``__main__`` reach the workers by value instead (``_pickling``), so a script
runs its module level exactly once, guarded or not, whatever the start method.
The forkserver's server preloads autopar's worker modules and cloudpickle, not
``__main__``.

``main_importable`` tells whether ``__main__`` is a file (for ``info``);
``in_main_bootstrap`` tells a child, started by someone else's spawn or
forkserver pool, that is still importing ``__main__``.
"""

from __future__ import annotations

import copy
import multiprocessing.context
import multiprocessing.process
import multiprocessing.spawn
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from ._forksafe import fork_safe_lock

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["FORKSERVER_PRELOAD", "in_main_bootstrap", "main_importable", "preload_in_forkserver", "process_context"]

#: What the forkserver's server imports once, so that each worker forked from it has it already:
#: the worker loop and what it imports, this module (it unpickles the process object) and cloudpickle
#: (by-value functions need it).  Never ``__main__``: the server would run the script's module level.
FORKSERVER_PRELOAD: tuple[str, ...] = ("autopar._strategies._process._child", "autopar._main_module", "cloudpickle")

#: The keys of the preparation data that make a child run ``__main__`` again (``main_path``: the
#: forkserver's server, where a Python version reads it).
_MAIN_KEYS = ("init_main_from_path", "init_main_from_name", "main_path")


def main_importable() -> bool:
    """``__main__`` is a file on disk that spawn and forkserver children can re-import.

    False in a REPL, under ``python -c``, ``python -`` (stdin) and in notebooks.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return isinstance(path, str) and os.path.isfile(path)


def in_main_bootstrap() -> bool:
    """This is a spawn/forkserver child still importing ``__main__`` (a script without a main guard).

    The same test as CPython's ``multiprocessing.spawn._check_not_importing_main``.
    """
    return bool(getattr(multiprocessing.process.current_process(), "_inheriting", False))


def _no_main_preparation(name: str) -> dict[str, Any]:
    """multiprocessing's preparation data, without ``__main__`` for the processes autopar starts."""
    data: dict[str, Any] = _stdlib_preparation(name)
    if getattr(_starting, "depth", 0):
        for key in _MAIN_KEYS:
            data.pop(key, None)
    return data


#: Set while this thread starts an autopar worker: only those children skip ``__main__``; every other
#: process, of the caller or of other libraries, starts as multiprocessing always starts it.
_starting = threading.local()
_install_lock = fork_safe_lock()
_stdlib_preparation: Any = None


def _install() -> None:
    """Route ``get_preparation_data`` through ``_no_main_preparation`` (once), and set the forkserver's preload.

    ``popen_spawn_posix``, ``popen_spawn_win32``, ``popen_forkserver`` and the
    forkserver's start-up all look the function up on ``multiprocessing.spawn``
    at each start, so the filter sees every child and the server, while only
    this thread's starts are changed.  The preload is set unless someone chose
    one already (multiprocessing's default is ``["__main__"]``).
    """
    global _stdlib_preparation
    with _install_lock:
        if _stdlib_preparation is not None:
            return
        _stdlib_preparation = multiprocessing.spawn.get_preparation_data
        multiprocessing.spawn.get_preparation_data = _no_main_preparation
        if sys.platform != "win32":
            import multiprocessing.forkserver as forkserver

            if getattr(getattr(forkserver, "_forkserver", None), "_preload_modules", None) == ["__main__"]:
                forkserver.set_forkserver_preload(list(FORKSERVER_PRELOAD))


def preload_in_forkserver(modules: Iterable[str]) -> None:
    """Have the forkserver's server import ``modules`` too, if it has not started and its preload is autopar's.

    Each worker forked from the server then has them already: a call whose function
    lives in a module that imports scikit-learn pays that import once, in the server,
    instead of once per worker (a cold grid search of 20 fits on 2 CPUs: 2.34 s
    against 2.82 s).  Only modules the caller imported, never ``__main__``; the
    server ignores one that cannot be imported there.  A server already running
    keeps what it has; a preload someone else chose is left alone.
    """
    if sys.platform == "win32":
        return
    wanted = [m for m in modules if m in sys.modules and m != "__main__" and not m.startswith("__main__.")]
    if not wanted:
        return
    _install()
    import multiprocessing.forkserver as forkserver

    server = getattr(forkserver, "_forkserver", None)
    with _install_lock:
        if server is None or getattr(server, "_forkserver_pid", None) is not None:
            return
        if getattr(server, "_preload_modules", None) != list(FORKSERVER_PRELOAD):
            return
        forkserver.set_forkserver_preload([*FORKSERVER_PRELOAD, *dict.fromkeys(wanted)])


class _MainFree:
    """Mixin for a start method's Process class: the child starts without running ``__main__``."""

    def start(self) -> None:
        _install()
        _starting.depth = getattr(_starting, "depth", 0) + 1
        try:
            super().start()  # type: ignore[misc]
        finally:
            _starting.depth -= 1


# Module level, so spawn can pickle the process object it sends to the child.
class _SpawnProcess(_MainFree, multiprocessing.context.SpawnProcess):
    pass


_MAIN_FREE: dict[str, type[Any]] = {"spawn": _SpawnProcess}
if sys.platform != "win32":

    class _ForkServerProcess(_MainFree, multiprocessing.context.ForkServerProcess):
        pass

    _MAIN_FREE["forkserver"] = _ForkServerProcess


def process_context(method: str) -> multiprocessing.context.BaseContext:
    """The start method's context; for spawn and forkserver, one whose children never import ``__main__``.

    autopar's pools and ``Executor``'s process pools start their workers from it.
    """
    ctx = multiprocessing.get_context(method)
    main_free = _MAIN_FREE.get(method)
    if main_free is None:
        return ctx
    context = copy.copy(ctx)
    context.Process = main_free  # type: ignore[attr-defined]
    return context
