"""``@autopar.parallel``: a function that stays itself, gains ``.map``/``.imap``, and pickles by reference."""

from __future__ import annotations

import os
import pickle
import threading
from typing import Any

import pytest

import autopar
import helpers


def test_bare_decorator_returns_a_parallel_object() -> None:
    """The bare form ``@autopar.parallel`` wraps the function in an ``autopar.Parallel``."""
    assert isinstance(helpers.cube, autopar.Parallel)
    assert isinstance(helpers.threads_worker_id, autopar.Parallel)


def test_called_decorator_with_no_options_works_like_the_bare_form() -> None:
    """``@autopar.parallel()`` with no options decorates like ``@autopar.parallel``."""

    @autopar.parallel()
    def double(x: int) -> int:
        return 2 * x

    assert isinstance(double, autopar.Parallel)
    assert double(4) == 8
    assert double.map(range(5), strategy="threads", workers=2) == [0, 2, 4, 6, 8]


def test_calling_the_decorated_function_runs_it_once_in_process() -> None:
    """Calling a decorated function runs the original once, in this process and thread, with its result."""
    helpers.CALLS.clear()
    try:
        assert helpers.record_call(41) == 42
        assert [os.getpid()] == helpers.CALLS
    finally:
        helpers.CALLS.clear()


def test_calling_the_decorated_function_passes_arguments_unchanged() -> None:
    """Positional and keyword arguments reach the original function as given."""

    @autopar.parallel
    def join(a: str, b: str = "-", *, sep: str = "") -> str:
        return a + sep + b

    assert join("x", "y") == "xy"
    assert join("x", b="z", sep="+") == "x+z"


def test_map_and_imap_of_the_bare_decorated_function_return_results_in_order() -> None:
    """``.map`` and ``.imap`` of a bare-decorated function return func(x) for every item, in order."""
    assert helpers.cube.map(range(30)) == [x**3 for x in range(30)]
    assert list(helpers.cube.imap(range(30))) == [x**3 for x in range(30)]
    assert sorted(helpers.cube.imap(range(30), ordered=False, strategy="threads", workers=2)) == [
        x**3 for x in range(30)
    ]


def test_decorator_options_choose_how_map_runs() -> None:
    """``@parallel(strategy="threads", workers=2)`` runs ``.map`` on at most two threads of this process."""
    ids = helpers.threads_worker_id.map(range(40), chunksize=1)
    assert {pid for pid, _ in ids} == {os.getpid()}
    assert 1 <= len(set(ids)) <= 2
    assert (os.getpid(), threading.get_ident()) not in ids


def test_call_options_override_the_decorator_options() -> None:
    """Options given to ``.map``/``.imap`` win over the decorator's: strategy and workers."""
    here = (os.getpid(), threading.get_ident())
    assert set(helpers.threads_worker_id.map(range(20), strategy="serial")) == {here}
    assert set(helpers.threads_worker_id.imap(range(20), strategy="serial")) == {here}
    assert len(set(helpers.threads_worker_id.map(range(40), workers=1, chunksize=1))) == 1


def test_decorated_module_level_function_pickles_by_reference() -> None:
    """A decorated module-level function pickles by reference: the round trip gives back the same object."""
    assert pickle.loads(pickle.dumps(helpers.cube)) is helpers.cube
    assert pickle.loads(pickle.dumps(helpers.threads_worker_id)) is helpers.threads_worker_id


def test_decorated_module_level_function_maps_under_spawn() -> None:
    """A decorated module-level function runs under spawn, in worker processes."""
    assert helpers.cube.map(range(20), strategy="spawn", workers=2) == [x**3 for x in range(20)]
    pids = set(helpers.spawn_pid.map(range(20)))
    assert 1 <= len(pids) <= 2
    assert os.getpid() not in pids


def test_decorator_preserves_function_metadata() -> None:
    """The decorated object keeps __name__, __qualname__, __module__ and __doc__, and exposes __wrapped__."""

    def original(x: int) -> int:
        """Return x."""
        return x

    # Typed as Any: the metadata is set by functools.update_wrapper, which the type does not declare.
    decorated: Any = autopar.parallel(strategy="threads")(original)
    cube: Any = helpers.cube
    assert decorated.__name__ == "original"
    assert decorated.__qualname__ == original.__qualname__
    assert decorated.__module__ == original.__module__
    assert decorated.__doc__ == "Return x."
    assert decorated.__wrapped__ is original
    assert cube.__name__ == "cube"
    assert "x ** 3" in cube.__doc__


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"workers": 0}, ValueError, "workers"),
        ({"workers": "2"}, TypeError, "workers"),
        ({"strategy": "forkk"}, ValueError, "strategy='forkk'"),
        ({"chunksize": -1}, ValueError, "chunksize"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"bogus": 1}, TypeError, "'bogus'"),
    ],
)
def test_decorator_with_a_bad_option_raises_naming_it(options: dict[str, object], error: type, words: str) -> None:
    """A bad decorator option raises ValueError or TypeError at decoration time, naming the option."""
    with pytest.raises(error) as info:
        autopar.parallel(**options)  # type: ignore[call-overload]
    assert words in str(info.value)


def test_decorator_on_a_non_callable_raises_type_error() -> None:
    """Decorating something that is not callable raises TypeError."""
    with pytest.raises(TypeError, match="callable"):
        autopar.parallel(strategy="threads")(5)  # type: ignore[arg-type]
