"""Module-level functions for tests: importable by spawn and forkserver workers."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import autopar

#: autopar's sources, put first on a child interpreter's path.
SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_python(
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    *,
    stdin: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a child interpreter on ``args`` with autopar's sources importable and no ``AUTOPAR_STRATEGY`` unless given."""
    full_env = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    if "AUTOPAR_STRATEGY" not in (env or {}):
        full_env.pop("AUTOPAR_STRATEGY", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def square(x: int) -> int:
    """x * x."""
    return x * x


def countdown(n: int) -> int:
    """A pure-Python loop that holds the GIL."""
    while n > 0:
        n -= 1
    return n


def fail_on(x: int, bad: int = 3) -> int:
    """Raise ValueError on ``bad``, else return x."""
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def fail_on_3(x: int) -> int:
    """Raise ValueError on 3."""
    return fail_on(x, 3)


def segfault_on_3(x: int) -> int:
    """Kill the worker with SIGSEGV on 3."""
    if x == 3:
        os.kill(os.getpid(), signal.SIGSEGV)
    return x


def exit_on_3(x: int) -> int:
    """End the worker with os._exit(7) on 3."""
    if x == 3:
        os._exit(7)
    return x


def sleep_for(seconds: float) -> float:
    """Sleep, then return the seconds."""
    time.sleep(seconds)
    return seconds


def pid_of(_x: object) -> int:
    """The process id of the worker."""
    return os.getpid()


class ReduceRaises:
    """An object whose pickling raises TypeError."""

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("ReduceRaises refuses to be pickled")


def refuse_unpickling() -> object:
    """Raise ValueError: the rebuild function of ``UnpickleRaises``."""
    raise ValueError("UnpickleRaises refuses to be unpickled")


class UnpickleRaises:
    """An object that pickles fine but whose unpickling raises ValueError."""

    def __reduce__(self) -> tuple[object, ...]:
        return (refuse_unpickling, ())


def identity(x: object) -> object:
    """Return x unchanged."""
    return x


def unpicklable_result_on_3(x: int) -> object:
    """Return an object whose pickling raises on 3, else x."""
    return ReduceRaises() if x == 3 else x


def unloadable_result_on_3(x: int) -> object:
    """Return an object whose unpickling raises on 3, else x."""
    return UnpickleRaises() if x == 3 else x


def sigkill_on_3(x: int) -> int:
    """Kill the worker with SIGKILL on 3."""
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


class TwoArgError(Exception):
    """An exception that needs two arguments but keeps one in ``args``, so unpickling it fails."""

    def __init__(self, name: str, code: int) -> None:
        super().__init__(f"{name} failed with code {code}")
        self.code = code


def raise_two_arg_error_on_3(x: int) -> int:
    """Raise TwoArgError on 3, else return x."""
    if x == 3:
        raise TwoArgError("item", x)
    return x


#: Size of ``big_payload()``.
BIG_PAYLOAD_BYTES = 50 * 1024 * 1024


def big_payload() -> bytes:
    """50 MB of a repeating, position-dependent byte pattern."""
    return bytes(range(256)) * (BIG_PAYLOAD_BYTES // 256)


def big_result_on_3(x: int) -> bytes:
    """``big_payload()`` on 3, else the empty bytes."""
    return big_payload() if x == 3 else b""


def touch_then_sleep(arg: tuple[str, float]) -> float:
    """Create a file named by the worker's pid in directory ``arg[0]``, then sleep ``arg[1]`` seconds."""
    directory, seconds = arg
    with open(os.path.join(directory, str(os.getpid())), "w"):
        pass
    time.sleep(seconds)
    return seconds


def record_square(arg: tuple[str, int]) -> int:
    """Append x as a line to the file ``arg[0]``, then return x * x."""
    path, x = arg
    with open(path, "a") as log:
        log.write(f"{x}\n")
    return x * x


def sigkill_on_0_after_pid_file(arg: tuple[str, int]) -> int:
    """On x == 0, write the worker's pid to the file ``arg[0]`` and kill the worker with SIGKILL; else return x."""
    path, x = arg
    if x == 0:
        with open(path, "w") as out:
            out.write(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def start_session_processes() -> None:
    """Start the forkserver and the resource tracker: standard-library processes that live for the whole session."""
    from multiprocessing import forkserver

    forkserver.ensure_running()


def segfault_quietly_on_3(x: int) -> int:
    """Kill the worker with SIGSEGV on 3, without a faulthandler report on stderr."""
    if x == 3:
        import faulthandler

        faulthandler.disable()
        os.kill(os.getpid(), signal.SIGSEGV)
    return x


def segfault_quietly(_x: object) -> None:
    """Kill the worker with SIGSEGV on any item, without a faulthandler report on stderr."""
    import faulthandler

    faulthandler.disable()
    os.kill(os.getpid(), signal.SIGSEGV)


class UnloadableDoubler:
    """A callable returning 2 * x that pickles fine but cannot be unpickled (in a worker)."""

    def __call__(self, x: int) -> int:
        return 2 * x

    def __reduce__(self) -> tuple[object, ...]:
        return (refuse_unpickling, ())


def worker_id(_x: object) -> tuple[int, int]:
    """(process id, thread id) of whatever runs the item: tells workers apart under every strategy."""
    return os.getpid(), threading.get_ident()


#: Process ids of the calls to ``record_call``, in call order.
CALLS: list[int] = []


@autopar.parallel
def record_call(x: int) -> int:
    """Append this process's id to ``CALLS``, then return x + 1."""
    CALLS.append(os.getpid())
    return x + 1


@autopar.parallel
def cube(x: int) -> int:
    """x ** 3, decorated with the bare ``@autopar.parallel``."""
    return x**3


@autopar.parallel(strategy="threads", workers=2)
def threads_worker_id(_x: object) -> tuple[int, int]:
    """(process id, thread id), decorated to run on two threads."""
    return os.getpid(), threading.get_ident()


@autopar.parallel(strategy="spawn", workers=2)
def spawn_pid(_x: object) -> int:
    """The process id of the worker, decorated to run on two spawn workers."""
    return os.getpid()


def nested_strategy(x: int) -> tuple[int, str, int]:
    """Run autopar.map inside a worker; report its pid, the nested decision and the nested result."""
    import autopar

    decision = autopar.explain(square, range(50))
    return os.getpid(), decision.strategy, sum(autopar.map(square, range(x + 1)))


def native_thread_vars(_x: object) -> dict[str, str | None]:
    """The native thread-pool variables seen in the worker."""
    return {var: os.environ.get(var) for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


# -- real jobs: initializers, shared objects, failures that are counted --------------


def _worker_file(directory: str) -> str:
    """The file of the running worker in ``directory``: named by process id and thread id."""
    return os.path.join(directory, f"{os.getpid()}-{threading.get_ident()}")


def _append_line(path: str, line: str) -> None:
    """Append ``line`` to ``path`` in one write, so concurrent writers never interleave within a line."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def record_init(directory: str) -> None:
    """An initializer: append ``init`` to this worker's file in ``directory``."""
    _append_line(_worker_file(directory), "init")


def record_item(arg: tuple[str, int]) -> int:
    """Append ``item x`` to this worker's file in directory ``arg[0]``, then return x * x."""
    directory, x = arg
    _append_line(_worker_file(directory), f"item {x}")
    return x * x


def record_item_slowly(arg: tuple[str, int]) -> int:
    """``record_item``, then sleep 2 ms: enough work per item for auto to measure threads."""
    result = record_item(arg)
    time.sleep(0.002)
    return result


def record_wait_then_compute(arg: tuple[str, int]) -> int:
    """Sleep 20 ms and compute a few ms of Python, then ``record_item``: it waits more than it computes.

    It records last: before 3.12 the profile reads the item's first millisecond of CPU, where a file's write
    would weigh as much as the whole computing part.
    """
    time.sleep(0.02)
    countdown(250_000)
    return record_item(arg)


def stamp_wait_then_compute(arg: tuple[str, int]) -> int:
    """``record_wait_then_compute``, recording ``item x pid began ended`` (``time.monotonic``, one clock for all processes)."""
    directory, x = arg
    began = time.monotonic()
    time.sleep(0.02)
    countdown(250_000)
    _append_line(_worker_file(directory), f"item {x} {os.getpid()} {began} {time.monotonic()}")
    return x * x


def record_wait_then_hash(arg: tuple[str, int]) -> int:
    """Sleep 20 ms, hash 8 MB in C (which releases the GIL), then ``record_item``: threads run it in parallel."""
    time.sleep(0.02)
    hashlib.sha256(bytes(8_000_000)).digest()
    return record_item(arg)


class InitFailedError(Exception):
    """Raised by ``failing_init``."""


def failing_init(directory: str) -> None:
    """An initializer that appends one line per attempt to ``directory``/attempts, then raises InitFailedError."""
    _append_line(os.path.join(directory, "attempts"), f"{os.getpid()}-{threading.get_ident()}")
    raise InitFailedError("the initializer failed on purpose")


class CountedPickle:
    """A read-only table that appends a line to ``log_path`` each time it is pickled."""

    def __init__(self, log_path: str, values: tuple[int, ...]) -> None:
        self.log_path = log_path
        self.values = values

    def __getitem__(self, index: int) -> int:
        return self.values[index]

    def __reduce__(self) -> tuple[object, ...]:
        _append_line(self.log_path, str(os.getpid()))
        return (CountedPickle, (self.log_path, self.values))


def lookup(x: int, table: object) -> object:
    """``table[x]``: a function that takes the shared object as its second argument."""
    return table[x]  # type: ignore[index]


def describe_shared(x: int, shared: object) -> tuple[str, bool, int]:
    """(type name, read-only, ``int(shared[x])``) of the shared object as the worker sees it."""
    flags = getattr(shared, "flags", None)
    if flags is not None:
        readonly = not flags.writeable
    elif isinstance(shared, memoryview):
        readonly = shared.readonly
    else:
        readonly = isinstance(shared, bytes)
    return type(shared).__name__, readonly, int(shared[x])  # type: ignore[index]


def segfault_quietly_on_3_shared(x: int, shared: object) -> int:
    """``shared[x]``, but kill the worker with SIGSEGV on 3 (no faulthandler report)."""
    segfault_quietly_on_3(x)
    return int(shared[x])  # type: ignore[index]


def touch_then_sleep_shared(arg: tuple[str, float], shared: object) -> float:
    """``touch_then_sleep(arg)``; the shared object is ignored."""
    return touch_then_sleep(arg)


def sleep_on_3(arg: tuple[str, int]) -> int:
    """On 3, write the worker's pid to ``arg[0]``/sleeper and sleep 30 s; return x * x."""
    directory, x = arg
    if x == 3:
        _append_line(os.path.join(directory, "sleeper"), str(os.getpid()))
        time.sleep(30)
    return x * x


def fail_on_multiples_of_5(x: int) -> int:
    """Raise ValueError on multiples of 5, else return x * x."""
    if x % 5 == 0:
        raise ValueError(f"bad item {x}")
    return x * x


def _count_attempt(directory: str, x: int) -> int:
    """Record one more attempt at item x in ``directory``; return how many there were, this one included."""
    path = os.path.join(directory, f"attempts-{x}")
    _append_line(path, str(os.getpid()))
    with open(path) as log:
        return len(log.readlines())


def crash_first_attempt_on_3(arg: tuple[str, int]) -> int:
    """x * x, but the first attempt at 3 ends its worker with os._exit(9)."""
    directory, x = arg
    if _count_attempt(directory, x) == 1 and x == 3:
        os._exit(9)
    return x * x


def raise_on_3_counting(arg: tuple[str, int]) -> int:
    """x * x, but every attempt at 3 raises ValueError; attempts are counted in ``arg[0]``."""
    directory, x = arg
    _count_attempt(directory, x)
    if x == 3:
        raise ValueError("item 3 always fails")
    return x * x


def raise_first_attempt_on_3(arg: tuple[str, int]) -> int:
    """x * x, but the first attempt at 3 raises ValueError; attempts are counted in ``arg[0]``."""
    directory, x = arg
    if _count_attempt(directory, x) == 1 and x == 3:
        raise ValueError("item 3 fails the first time")
    return x * x


def append_line(path_and_item: tuple[str, int]) -> int:
    """Append the item to a log file (one line per call, from any process) and return it."""
    path, item = path_and_item
    with open(path, "a") as f:
        f.write(f"{item}\n")
    return item


def record_settings(settings: dict[str, int]) -> None:
    """An initializer taking an unhashable argument: a dict of settings."""
    assert isinstance(settings, dict)


def raise_timeout_on_3_counting(arg: tuple[str, int]) -> int:
    """x * x, but every attempt at 3 raises TimeoutError (as a network call may); attempts are counted in ``arg[0]``."""
    directory, x = arg
    _count_attempt(directory, x)
    if x == 3:
        raise TimeoutError("item 3: the server did not answer")
    return x * x


#: What an initializer kept in this worker, by name (``remember`` writes it, ``recall`` and ``pass_gate`` read it).
_initialized: dict[str, object] = {}


def remember(name: str, value: object) -> None:
    """Initializer: keep ``value`` under ``name`` in this worker."""
    _initialized[name] = value


def recall(name: str) -> object:
    """What the initializer kept under ``name`` in this worker."""
    return _initialized.get(name)


def pass_gate(x: int) -> int:
    """Wait until the gate the initializer kept is open (a deadlock guard of 30 s), then return x."""
    gate: Any = _initialized["gate"]
    assert gate.wait(30), "the gate never opened"
    return x


def pid_and_square(x: int) -> tuple[int, int]:
    """(this process's pid, x squared), after a little computing, so the first items take a few ms."""
    countdown(20_000)
    return os.getpid(), x * x


def pid_and_slow_square(pair: tuple[int, int]) -> tuple[int, int]:
    """(this process's pid, x squared) for ``(x, first)``, after about 0.25 s of computing, 1 s for item ``first``.

    ``first`` is the caller's first sample: a pool started in the background boots meanwhile,
    even on a loaded machine.
    """
    x, first = pair
    countdown(25_000_000 if x == first else 6_000_000)
    return os.getpid(), x * x


def pid_end_and_square_slow_0(x: int) -> tuple[int, float, int]:
    """(pid, when it ended, x squared): item 0, the one a first call hands to a worker, computes 20x longer."""
    countdown(40_000_000 if x == 0 else 2_000_000)
    return os.getpid(), time.monotonic(), x * x


def fail_on_5(x: int) -> int:
    """``10 // (x - 5)``: ZeroDivisionError for item 5."""
    return 10 // (x - 5)


def fail_on_0(x: int) -> int:
    """Raise ValueError for item 0, the item a first call hands to a worker."""
    if x == 0:
        raise ValueError("item 0 failed")
    return x


class CustomBaseError(BaseException):
    """A BaseException that is not an Exception, as some libraries define (trio's Cancelled, gevent's GreenletExit)."""


#: BaseExceptions that are not Exceptions, by name, for ``raise_base_on_50_counting``.
BASE_EXCEPTIONS: dict[str, type[BaseException]] = {
    "SystemExit": SystemExit,
    "KeyboardInterrupt": KeyboardInterrupt,
    "CustomBaseError": CustomBaseError,
}


def raise_base_on_50_counting(arg: tuple[str, str, int]) -> int:
    """x * x, but item 50 raises the BaseException named ``arg[1]``; attempts are counted in ``arg[0]``."""
    directory, name, x = arg
    _count_attempt(directory, x)
    if x == 50:
        raise BASE_EXCEPTIONS[name](f"item {x}")
    return x * x


def spin(x: int) -> int:
    """Keep the CPU busy for half a millisecond (holding the GIL), then return x."""
    until = time.perf_counter() + 0.0005
    while time.perf_counter() < until:
        pass
    return x


@contextlib.contextmanager
def a_waiting_thread() -> Iterator[threading.Thread]:
    """One more thread in this process for the block: it waits until the block ends, and is joined then."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="test-waiting-thread")
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=30)
