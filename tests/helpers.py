"""Module-level functions for tests: importable by spawn and forkserver workers."""

from __future__ import annotations

import os
import signal
import threading
import time

import autopar


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
