"""The public surface: ``__all__``, public module names, picklable errors."""

from __future__ import annotations

import pickle
from concurrent.futures.process import BrokenProcessPool

import pytest

import autopar
from autopar import _errors

# -- __all__ and public names -----------------------------------------------------


def test_all_names_exist_in_the_package() -> None:
    """Every name in ``autopar.__all__`` is an attribute of the package, listed once."""
    missing = [name for name in autopar.__all__ if not hasattr(autopar, name)]
    assert missing == []
    assert len(autopar.__all__) == len(set(autopar.__all__))


def test_public_classes_report_the_public_module() -> None:
    """Every public class reports ``__module__ == "autopar"``, so reprs and tracebacks show the public path."""
    classes = [getattr(autopar, name) for name in autopar.__all__ if isinstance(getattr(autopar, name), type)]
    assert classes, "no public classes found"
    wrong = {cls.__qualname__: cls.__module__ for cls in classes if cls.__module__ != "autopar"}
    assert wrong == {}


def test_public_errors_and_warning_are_exported() -> None:
    """The errors and the warning of ``autopar._errors`` are importable from ``autopar``."""
    for name in (
        "AutoparError",
        "WorkerCrashedError",
        "WorkerStartError",
        "SerializationError",
        "RemoteError",
        "UnsafeStrategyWarning",
    ):
        assert name in autopar.__all__
        assert getattr(autopar, name) is getattr(_errors, name)


# -- exceptions survive pickling ------------------------------------------------------


def _start_error() -> _errors.WorkerStartError:
    error = _errors.WorkerStartError("fork workers could not start: too many open files (RLIMIT_NOFILE is 16, ...)")
    error.reason = "too many open files (RLIMIT_NOFILE is 16, ...)"
    return error


#: One instance of every exception class of ``autopar._errors``, with its attributes.
ERROR_SAMPLES: dict[type[BaseException], tuple[BaseException, dict[str, object]]] = {
    _errors.AutoparError: (_errors.AutoparError("something failed"), {}),
    _errors.WorkerCrashedError: (
        _errors.WorkerCrashedError("a spawn worker died while running item 3, with signal SIGSEGV", 3, -11),
        {"index": 3, "exitcode": -11},
    ),
    _errors.SerializationError: (_errors.SerializationError("cannot pickle the function 'f'"), {}),
    _errors.WorkerStartError: (_start_error(), {"reason": "too many open files (RLIMIT_NOFILE is 16, ...)"}),
    _errors.RemoteError: (_errors.RemoteError("mod.Odd: it broke", "mod.Odd"), {"type_name": "mod.Odd"}),
    _errors.RemoteTraceback: (_errors.RemoteTraceback("\nTraceback (most recent call last): ..."), {}),
    _errors.UnsafeStrategyWarning: (_errors.UnsafeStrategyWarning("strategy 'fork' is unsafe here"), {}),
}


def test_every_error_class_has_a_pickle_sample() -> None:
    """Each exception or warning class defined in ``autopar._errors`` has a round-trip case below."""
    defined = {
        obj
        for obj in vars(_errors).values()
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ in ("autopar", "autopar._errors")
    }
    assert defined == set(ERROR_SAMPLES)


@pytest.mark.parametrize("cls", list(ERROR_SAMPLES), ids=lambda cls: cls.__name__)
def test_error_survives_a_pickle_round_trip(cls: type[BaseException]) -> None:
    """An autopar exception pickles and unpickles to the same type, message, args and attributes."""
    error, attributes = ERROR_SAMPLES[cls]
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error)
    assert copy.args == error.args
    for name, value in attributes.items():
        assert getattr(copy, name) == value


def test_worker_crashed_error_keeps_its_standard_library_bases_after_pickling() -> None:
    """A round-tripped WorkerCrashedError is still a BrokenProcessPool; SerializationError a PicklingError."""
    crashed: autopar.WorkerCrashedError = pickle.loads(pickle.dumps(autopar.WorkerCrashedError("died", 3, 7)))
    assert isinstance(crashed, BrokenProcessPool)
    assert isinstance(crashed, autopar.AutoparError)
    assert (crashed.index, crashed.exitcode) == (3, 7)
    serialization: autopar.SerializationError = pickle.loads(pickle.dumps(autopar.SerializationError("no")))
    assert isinstance(serialization, pickle.PicklingError)
    assert isinstance(serialization, autopar.AutoparError)
    start: autopar.WorkerStartError = pickle.loads(pickle.dumps(autopar.WorkerStartError("no")))
    assert isinstance(start, OSError)
    assert isinstance(start, autopar.AutoparError)


def test_worker_crashed_error_defaults_survive_pickling() -> None:
    """WorkerCrashedError built from a message only keeps index and exitcode as None after pickling."""
    copy = pickle.loads(pickle.dumps(autopar.WorkerCrashedError("a worker died while starting")))
    assert (copy.index, copy.exitcode, str(copy)) == (None, None, "a worker died while starting")
