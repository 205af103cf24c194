"""Pure start-method rules: platform facts in, available and safe process start methods out.

No OS calls here: ``_platform`` probes the facts, these functions only reason
about them, so every branch is unit-tested with injected facts (Windows,
macOS, Linux with and without threads, free-threaded builds, Python 3.14+).
A method that exists may still be unable to start workers here: in a daemonic
process (``multiprocessing`` forbids it children), without a usable ``/dev/shm``, or after its workers failed
to start during this call (a process or open-file limit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from .._errors import SerializationError, WorkerStartError
from .._model import MethodVerdict, PlatformFacts

if TYPE_CHECKING:
    from .._model import Measurements, Options

__all__ = [
    "INTERPRETERS",
    "PROCESS_METHODS",
    "DAEMONIC",
    "auto_process_methods",
    "cannot_start",
    "interpreters_auto_problem",
    "interpreters_excluded",
    "interpreters_ship_problem",
    "interpreters_verdict",
    "is_environment_failure",
    "method_verdict",
    "method_verdicts",
    "require_available",
    "require_interpreters",
    "ruled_out_by",
    "with_start_failure",
    "shm_text",
    "usable_process_methods",
]

#: Process start methods, cheapest to start first.
PROCESS_METHODS: tuple[str, ...] = ("fork", "forkserver", "spawn")
DAEMONIC = (
    "this process is daemonic (a multiprocessing worker or a Process(daemon=True)), "
    "and multiprocessing forbids daemonic processes to have children"
)


def shm_text(problem: str) -> str:
    """Why no process pool starts where ``multiprocessing`` has no usable ``/dev/shm``."""
    return f"multiprocessing keeps the values each pool shares with its workers in /dev/shm, and {problem}"


def cannot_start(method: str, facts: PlatformFacts) -> str | None:
    """Why ``method`` workers cannot start in this process now, or None when they can."""
    if facts.daemon:
        return DAEMONIC
    if facts.shm_problem is not None:
        return shm_text(facts.shm_problem)
    for failed, reason in facts.start_failures:
        if failed == method:
            return f"its workers could not start: {reason}"
    return None


def ruled_out_by(strategy: str, limit: str | None) -> tuple[str, ...]:
    """What a failed start of ``strategy`` rules out for the rest of the call.

    A limit of the process (``RLIMIT_NPROC``, ``RLIMIT_NOFILE``) binds every
    start method alike, so trying the next one would fail the same way; any
    other cause rules out that strategy alone.
    """
    if limit is not None and strategy in PROCESS_METHODS:
        return PROCESS_METHODS
    return (strategy,)


def with_start_failure(facts: PlatformFacts, strategy: str, exc: WorkerStartError) -> PlatformFacts:
    """``facts`` with the start of ``strategy`` failed as ``exc`` says, and every method that rules out."""
    why = exc.reason or str(exc)
    failed = tuple((method, why) for method in ruled_out_by(strategy, exc.limit))
    return attrs.evolve(facts, start_failures=(*facts.start_failures, *failed))


#: The strategy of subinterpreters in this process (Python 3.14 and later).
INTERPRETERS = "interpreters"


def _fork_verdict(facts: PlatformFacts) -> MethodVerdict:
    if "fork" not in facts.start_methods:
        return MethodVerdict(
            method="fork", available=False, safe=False, reason=f"fork does not exist on {facts.system}"
        )
    if facts.system == "darwin":
        return MethodVerdict(
            method="fork",
            available=True,
            safe=False,
            reason="macOS system frameworks are not fork-safe (CPython defaults to spawn there since 3.8)",
        )
    threads = max(facts.python_threads, facts.native_threads)
    if threads > 1:
        return MethodVerdict(
            method="fork",
            available=True,
            safe=False,
            reason=(
                f"the process runs {threads} threads ({facts.python_threads} Python, "
                f"{facts.native_threads} native): a fork copies locks they may hold and can deadlock"
            ),
        )
    return MethodVerdict(method="fork", available=True, safe=True, reason="single-threaded process: fork is safe")


def method_verdict(method: str, facts: PlatformFacts) -> MethodVerdict:
    """Whether ``method`` exists on this platform and is safe to use now, with the reason.

    autopar's spawn and forkserver workers never import the caller's main
    module, so a script without ``if __name__ == "__main__":``, ``python -c``,
    a REPL or a notebook makes neither unsafe.
    """
    blocked = cannot_start(method, facts) if method in facts.start_methods else None
    if blocked is not None:
        return MethodVerdict(method=method, available=False, safe=False, reason=blocked)
    if method == "fork":
        return _fork_verdict(facts)
    if method not in facts.start_methods:
        return MethodVerdict(
            method=method, available=False, safe=False, reason=f"{method} does not exist on {facts.system}"
        )
    if method == "forkserver":
        return MethodVerdict(
            method=method,
            available=True,
            safe=True,
            reason="workers fork from a clean single-threaded server process",
        )
    return MethodVerdict(method=method, available=True, safe=True, reason="workers start a fresh interpreter")


def method_verdicts(facts: PlatformFacts) -> tuple[MethodVerdict, ...]:
    """The verdict of every process start method, in ``PROCESS_METHODS`` order."""
    return tuple(method_verdict(m, facts) for m in PROCESS_METHODS)


def auto_process_methods(facts: PlatformFacts) -> tuple[str, ...]:
    """The start methods auto-selection may use, most preferred first.

    Safe methods only, cheapest first.  Where the interpreter's own default is
    not fork (Python 3.14 and later default to forkserver on Linux and other
    POSIX systems), that choice is respected and fork is left out: it stays
    available when forced.
    """
    safe = [v.method for v in method_verdicts(facts) if v.available and v.safe]
    if facts.default_start_method != "fork":
        safe = [m for m in safe if m != "fork"]
    return tuple(safe)


def usable_process_methods(facts: PlatformFacts, *, shippable: bool, picklable: bool) -> tuple[str, ...]:
    """The start methods auto may use for one function and its data, most preferred first.

    Items and results that cannot be pickled rule out every process; a function
    that cannot be sent by reference or by value (it holds a lock or a socket)
    leaves only fork, whose workers inherit it.  A function of ``__main__``, a
    lambda or a closure that cloudpickle can send is ``shippable``.
    """
    if not picklable:
        return ()
    methods = auto_process_methods(facts)
    return methods if shippable else tuple(m for m in methods if m == "fork")


def require_available(method: str, facts: PlatformFacts) -> MethodVerdict:
    """The verdict for a forced start method; raise ValueError when it does not exist here.

    Raises:
        ValueError: ``method`` is not a start method of this platform.
        WorkerStartError: ``method`` exists, but its workers cannot start in this process.
    """
    verdict = method_verdict(method, facts)
    if method in facts.start_methods and not verdict.available:
        msg = f"strategy {method!r} cannot start worker processes here: {verdict.reason}; use strategy='threads' or 'serial'"
        raise WorkerStartError(msg)
    if not verdict.available:
        available = ", ".join(repr(m) for m in facts.start_methods) or "none"
        msg = (
            f"strategy {method!r} is not available on this platform ({facts.system}): "
            f"{verdict.reason}; available start methods: {available}"
        )
        raise ValueError(msg)
    return verdict


def interpreters_verdict(facts: PlatformFacts) -> MethodVerdict:
    """Whether a pool of subinterpreters exists here, with the reason; they never share a lock, so always safe."""
    if facts.python_version < (3, 14):
        version = ".".join(map(str, facts.python_version))
        reason = (
            f"a pool of subinterpreters needs Python 3.14 or later (concurrent.interpreters); this is Python {version}"
        )
        return MethodVerdict(method=INTERPRETERS, available=False, safe=False, reason=reason)
    if not facts.subinterpreters:
        reason = "this Python build has no concurrent.interpreters module"
        return MethodVerdict(method=INTERPRETERS, available=False, safe=False, reason=reason)
    return MethodVerdict(
        method=INTERPRETERS,
        available=True,
        safe=True,
        reason=(
            "each worker is a subinterpreter of this process with its own GIL; its modules must load there "
            "(pure Python does; NumPy and many extension modules do not)"
        ),
    )


def require_interpreters(facts: PlatformFacts) -> MethodVerdict:
    """The verdict for a forced ``"interpreters"``; raise ValueError when this Python has none.

    Raises:
        ValueError: this Python has no subinterpreters; the message names the version needed.
    """
    verdict = interpreters_verdict(facts)
    if not verdict.available:
        msg = f"strategy {INTERPRETERS!r} is not available here: {verdict.reason}"
        raise ValueError(msg)
    return verdict


def interpreters_ship_problem(module: str | None, qualname: str | None) -> str | None:
    """Why a function cannot run in a subinterpreter, or None: it must be found there by module and name.

    A subinterpreter's ``__main__`` is not the caller's script (cpython#136659), and
    pickle finds no lambda or nested function by name.
    """
    if module is None or qualname is None:
        return "it has no module and qualified name to be found by"
    if module == "__main__":
        return (
            "it is defined in __main__, which a subinterpreter does not share with the caller's script "
            "(cpython#136659): define it in an importable module"
        )
    if "<lambda>" in qualname or "<locals>" in qualname:
        return "it is a lambda or a nested function, which pickle cannot find by name: define it at module level"
    return None


def interpreters_auto_problem(
    module: str | None, qualname: str | None, *, by_reference: bool, extension_packages: tuple[str, ...]
) -> str | None:
    """Why auto-selection does not try subinterpreters for a function, or None when it may.

    A conservative allow rule: the function pickles by reference and is found
    by module and name (``interpreters_ship_problem``), and no package its
    module refers to has a loaded extension module outside the standard
    library (``extension_packages``).  Most third-party extension modules do
    not declare support for an interpreter with its own GIL and fail to import
    there (NumPy: numpy#24755), and a loaded module cannot be asked whether it
    would; a wrong "no" leaves the work to processes, a wrong "yes" fails the trial.
    """
    problem = interpreters_ship_problem(module, qualname)
    if problem is None and not by_reference:
        problem = "it cannot be pickled by reference"
    if problem is None and extension_packages:
        uses = ", ".join(extension_packages)
        problem = f"its module uses {uses}, whose extension modules may not load in a subinterpreter"
    return problem


def interpreters_excluded(facts: PlatformFacts, m: Measurements, options: Options) -> str | None:
    """Why auto-selection leaves subinterpreters out of this call, or None when they are a candidate."""
    verdict = interpreters_verdict(facts)
    if not verdict.available:
        return verdict.reason
    for failed, why in facts.start_failures:
        if failed == INTERPRETERS:
            return f"the trial in a subinterpreter failed: {why}"
    if not m.data_picklable:
        return "items or results cannot be pickled"
    if m.interpreters_problem is not None:
        return m.interpreters_problem
    if options.has_shared or options.max_tasks_per_worker:
        return "shared= and max_tasks_per_worker= need process workers"
    return None


def is_environment_failure(error: BaseException | None, *, ran: bool) -> bool:
    """Whether a chunk failed in a subinterpreter because of where it ran, not because the function raised.

    True when nothing ran (``ran`` False: the function or an item did not load there) with a
    ``SerializationError`` or an ``ImportError``, or when the function raised an ``ImportError``
    naming subinterpreters (a module it imports lazily refused to load there).
    """
    if not isinstance(error, (ImportError, SerializationError)):
        return False
    return not ran or (isinstance(error, ImportError) and "subinterpreter" in str(error))
