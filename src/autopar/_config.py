"""Options: validation, scoped defaults with ``config()``, ``AUTOPAR_*`` variables, and precedence.

Precedence, resolved in one place (``resolve``):

* strategy: ``AUTOPAR_STRATEGY`` > the call > the decorator > ``config()`` > ``"auto"``
* workers:  ``AUTOPAR_WORKERS`` > the call > the decorator > ``config()`` > chosen by autopar
* dask:     the call > the decorator > ``config()`` > ``AUTOPAR_DASK_SCHEDULER`` > the program's
  default ``distributed`` client (looked up later, and only if ``distributed`` is already imported)
* anything else: the call > the decorator > ``config()`` > the default

Environment variables are read at call time, so a variable set after import
still counts, and a bad value raises ``ValueError`` naming it.  ``config()``
scopes live in a ``ContextVar``: each thread and asyncio task sees its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
from typing import TYPE_CHECKING, Any

from ._model import Options
from ._registry import is_registered, strategy_names

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

__all__ = ["OPTION_NAMES", "config", "native_threads_override", "resolve", "validate_options"]

#: Options accepted by ``map``, ``imap``, the decorator and ``config()``.
OPTION_NAMES = frozenset(
    {
        "strategy",
        "workers",
        "chunksize",
        "timeout",
        "max_tasks_per_worker",
        "initializer",
        "initargs",
        "errors",
        "progress",
        "item_timeout",
        "retries",
        "retry_on",
        "shared",
        "dask",
        "report",
    }
)

_scoped: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("autopar_config", default={})  # noqa: B039


def _accepted_strategies() -> str:
    return ", ".join(repr(n) for n in ("auto", *strategy_names()))


def _check_strategy(value: Any, where: str) -> str:
    if not isinstance(value, str) or not (value == "auto" or is_registered(value)):
        msg = f"{where}={value!r} is not a known strategy; accepted: {_accepted_strategies()}"
        raise ValueError(msg)
    return value


def _check_int(value: Any, where: str, *, minimum: int, allow_none: bool) -> Any:
    """An integer of at least ``minimum`` (or None when allowed); bools are not integers here."""
    if value is None and allow_none:
        return None
    expected = ("a positive integer" if minimum == 1 else "a non-negative integer") + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{where} must be {expected}, not {value!r} ({type(value).__name__})"
        raise TypeError(msg)
    if value < minimum:
        msg = f"{where} must be {expected}, not {value!r}"
        raise ValueError(msg)
    return value


def _check_positive_int(value: Any, where: str) -> int | None:
    return _check_int(value, where, minimum=1, allow_none=True)  # type: ignore[no-any-return]


def _check_timeout(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"{where} must be a number of seconds or None, not {value!r} ({type(value).__name__})"
        raise TypeError(msg)
    if not value > 0 or math.isnan(value):
        msg = f"{where} must be a positive number of seconds or None, not {value!r}"
        raise ValueError(msg)
    return float(value)


def _check_errors(value: Any, where: str) -> str:
    if value not in ("raise", "return"):
        msg = f"{where}={value!r} is not accepted; use 'raise' or 'return'"
        raise ValueError(msg)
    return str(value)


def _check_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        msg = f"{where} must be True or False, not {value!r} ({type(value).__name__})"
        raise TypeError(msg)
    return value


def _check_callable_or_none(value: Any, where: str) -> Callable[..., Any] | None:
    if value is not None and not callable(value):
        msg = f"{where} must be callable or None, not {value!r}"
        raise TypeError(msg)
    return value  # type: ignore[no-any-return]


def _check_initargs(value: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(value, (tuple, list)):
        msg = f"{where} must be a tuple, not {value!r}"
        raise TypeError(msg)
    return tuple(value)


def _check_retries(value: Any, where: str) -> int:
    return _check_int(value, where, minimum=0, allow_none=False)  # type: ignore[no-any-return]


def _check_retry_on(value: Any, where: str) -> tuple[type[BaseException], ...]:
    types = value if isinstance(value, (tuple, list)) else (value,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            msg = f"{where} must be an exception type or a tuple of them, not {value!r}"
            raise TypeError(msg)
    return tuple(types)


def _check_dask(value: Any, where: str) -> Any:
    if value is None or (isinstance(value, str) and value.strip()):
        return value.strip() if isinstance(value, str) else None
    if isinstance(value, (str, bytes, bool, int, float)) or not hasattr(value, "submit"):
        msg = (
            f"{where} must be a distributed.Client or a scheduler address such as 'tcp://127.0.0.1:8786', "
            f"not {value!r} ({type(value).__name__})"
        )
        raise TypeError(msg)
    return value


_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "strategy": _check_strategy,
    "workers": _check_positive_int,
    "chunksize": _check_positive_int,
    "timeout": _check_timeout,
    "max_tasks_per_worker": _check_positive_int,
    "initializer": _check_callable_or_none,
    "initargs": _check_initargs,
    "errors": _check_errors,
    "progress": lambda value, where: value,
    "item_timeout": _check_timeout,
    "retries": _check_retries,
    "retry_on": _check_retry_on,
    "shared": lambda value, where: value,
    "dask": _check_dask,
    "report": _check_bool,
}


def validate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check option names and values; return them normalized.

    Raises:
        TypeError: an unknown option name, or a value of the wrong type.
        ValueError: a value out of range.
    """
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        msg = f"unknown option(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(sorted(OPTION_NAMES))}"
        raise TypeError(msg)
    return {name: _CHECKS[name](value, name) for name, value in options.items()}


@contextlib.contextmanager
def config(**options: Any) -> Iterator[None]:
    """Set default options for every autopar call inside the ``with`` block.

    Scopes nest (inner values win) and are local to the current thread or
    asyncio task (they live in a ``contextvars.ContextVar``).  Arguments given
    to a call, and ``AUTOPAR_STRATEGY`` / ``AUTOPAR_WORKERS``, still win.

    Raises:
        TypeError: an unknown option or a value of the wrong type.
        ValueError: a value out of range.
    """
    checked = validate_options(options)
    token = _scoped.set({**_scoped.get(), **checked})
    try:
        yield
    finally:
        _scoped.reset(token)


def current_config() -> Mapping[str, Any]:
    """The options set by enclosing ``config()`` blocks."""
    return _scoped.get()


def _env_strategy() -> str | None:
    raw = os.environ.get("AUTOPAR_STRATEGY")
    if raw is None or raw.strip() == "":
        return None
    return _check_strategy(raw.strip(), "AUTOPAR_STRATEGY")


def _env_workers() -> int | None:
    raw = os.environ.get("AUTOPAR_WORKERS")
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        msg = f"AUTOPAR_WORKERS={raw!r} is not accepted; use a positive integer"
        raise ValueError(msg)
    return value


def native_threads_override() -> int | None:
    """``AUTOPAR_NATIVE_THREADS``: native threads per process worker, instead of CPUs // workers.

    Raises:
        ValueError: the variable is set to something other than a positive integer.
    """
    raw = os.environ.get("AUTOPAR_NATIVE_THREADS", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        msg = f"AUTOPAR_NATIVE_THREADS={raw!r} is not accepted; use a positive integer"
        raise ValueError(msg)
    return int(raw)


def _env_dask() -> str | None:
    raw = os.environ.get("AUTOPAR_DASK_SCHEDULER", "").strip()
    return raw or None


def resolve(call: Mapping[str, Any], decorator: Mapping[str, Any] | None = None) -> Options:
    """Merge environment, call, decorator and ``config()`` options into one ``Options``.

    ``call`` and ``decorator`` hold only options that were given (not None).
    """
    layers = [current_config(), validate_options(decorator or {}), validate_options(call)]
    merged: dict[str, Any] = {}
    source = "default"
    for layer_name, layer in zip(("config", "decorator", "call"), layers, strict=False):
        merged.update(layer)
        if "strategy" in layer:
            source = layer_name
    env_strategy = _env_strategy()
    if env_strategy is not None:
        merged["strategy"], source = env_strategy, "env"
    env_workers = _env_workers()
    if env_workers is not None:
        merged["workers"] = env_workers
    if "shared" in merged:
        merged["has_shared"] = True
    if merged.get("dask") is None:
        merged["dask"] = _env_dask()
    return Options(strategy_source=source, **merged)
