"""``@parallel``: a function that stays itself and gains ``.map`` and ``.imap``.

The decorator returns a ``functools.update_wrapper``-style object whose
``__module__`` and ``__qualname__`` are the function's own, and registers
nothing new in the module: a decorated module-level function still pickles by
reference (pickle finds the decorated object under the same name and, in the
worker, unwraps it), so it works under spawn.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Generic, overload

from ._config import validate_options
from ._run import given_options, run_imap, run_map
from ._types import P, R

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = ["Parallel", "parallel"]


class Parallel(Generic[P, R]):
    """A function decorated with ``@autopar.parallel``: call it as before, or map it."""

    def __init__(self, func: Callable[P, R], options: dict[str, Any]) -> None:
        functools.update_wrapper(self, func)
        self.__wrapped__ = func
        self._options = options
        self._qualname: str = getattr(func, "__qualname__", repr(func))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.__wrapped__(*args, **kwargs)

    def map(self, chunks: Iterable[Any], **options: Any) -> list[R]:
        """``autopar.map`` of this function; options given here override the decorator's."""
        # The decorated object itself is sent to workers: it pickles by reference.
        return run_map(self, chunks, given_options(**options), self._options)

    def imap(self, chunks: Iterable[Any], *, ordered: bool = True, **options: Any) -> Iterator[R]:
        """``autopar.imap`` of this function; options given here override the decorator's."""
        return run_imap(self, chunks, given_options(**options), self._options, ordered=ordered)

    def __reduce__(self) -> str | tuple[Any, ...]:
        # Pickle by reference to the module attribute, like a plain function.
        return self._qualname

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return functools.partial(self.__call__, instance)

    def __repr__(self) -> str:
        return f"<autopar.parallel {self.__module__}.{self._qualname}>"


@overload
def parallel(func: Callable[P, R], /) -> Parallel[P, R]: ...


@overload
def parallel(
    func: None = None, /, *, strategy: str | None = None, workers: int | None = None, **options: Any
) -> Callable[[Callable[P, R]], Parallel[P, R]]: ...


def parallel(
    func: Callable[P, R] | None = None, /, *, strategy: str | None = None, workers: int | None = None, **options: Any
) -> Parallel[P, R] | Callable[[Callable[P, R]], Parallel[P, R]]:
    """Decorate a function so it gains ``.map(chunks, **options)`` and ``.imap(...)``.

    Use as ``@parallel`` or ``@parallel(strategy=..., workers=..., **options)``.
    Calling the decorated function runs it once, in-process, unchanged.

    Raises:
        TypeError, ValueError: a bad option, named in the message.
    """
    given = {k: v for k, v in {"strategy": strategy, "workers": workers, **options}.items() if v is not None}
    checked = validate_options(given)

    def wrap(f: Callable[P, R]) -> Parallel[P, R]:
        if not callable(f):
            msg = f"@parallel decorates a callable, not {f!r}"
            raise TypeError(msg)
        return Parallel(f, checked)

    if func is not None:
        return wrap(func)
    return wrap


# A public class reports the public path: in reprs and tracebacks, and when pickled by reference.
Parallel.__module__ = "autopar"
