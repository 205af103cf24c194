"""Worker functions for subinterpreters: this module imports the standard library only.

``helpers`` imports psutil, whose extension module does not load in a
subinterpreter, so the interpreters strategy's tests take their functions from here.
"""

from __future__ import annotations

import os
import threading
import time


class InitFailedError(Exception):
    """Raised by ``failing_init``."""


class ReduceRaises:
    """Refuses to be pickled."""

    def __reduce__(self) -> object:
        raise TypeError("ReduceRaises refuses to be pickled")


def square(x: int) -> int:
    """x * x."""
    return x * x


def fail_on_3(x: int) -> int:
    """x, or ValueError for 3."""
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


def identity(x: object) -> object:
    """x."""
    return x


def unpicklable_result_on_3(x: int) -> object:
    """An object that does not pickle for 3, else x."""
    return ReduceRaises() if x == 3 else x


def needs_psutil(x: int) -> int:
    """Import psutil, whose extension module does not load in a subinterpreter."""
    import psutil  # noqa: F401

    return x


def record_init(directory: str) -> None:
    """Initializer: create a file named after this worker's thread in ``directory``."""
    with open(os.path.join(directory, f"init-{threading.get_native_id()}"), "w"):
        pass


def items_seen_initialized(arg: tuple[str, int]) -> tuple[int, bool]:
    """(x, whether this worker's initializer ran)."""
    directory, x = arg
    return x, os.path.exists(os.path.join(directory, f"init-{threading.get_native_id()}"))


def failing_init() -> None:
    """Initializer that raises InitFailedError."""
    raise InitFailedError("the initializer failed on purpose")


def config_seen(_x: object) -> dict[str, object]:
    """The ``autopar.config()`` options the calling thread sees."""
    from autopar._config import current_config

    return dict(current_config())


def config_after_a_wait(_x: object) -> dict[str, object]:
    """The ``autopar.config()`` options the calling thread sees, after waiting 5 ms (work that threads overlap)."""
    time.sleep(0.005)
    return config_seen(_x)


def spin(n: int) -> int:
    """Pure-Python CPU work under the GIL: a countdown of ``n`` steps."""
    while n > 0:
        n -= 1
    return n


def square_once(arg: tuple[str, int]) -> int:
    """x * x after 300,000 steps of pure Python, leaving a file named x in the directory.

    A second run of the same item raises FileExistsError.
    """
    directory, x = arg
    with open(os.path.join(directory, str(x)), "x"):
        pass
    return x * x + spin(300_000)


def square_once_after_psutil(arg: tuple[str, int]) -> int:
    """Import psutil (which refuses to load in a subinterpreter), then ``square_once``."""
    import psutil  # noqa: F401

    return square_once(arg)


def interpreter_id(_x: object = None) -> int:
    """The id of the interpreter running this call (0 for the main one)."""
    from concurrent import interpreters  # type: ignore[attr-defined]  # Python 3.14+

    return int(interpreters.get_current().id)
