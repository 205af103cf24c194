"""The public surface and the package structure: ``__all__``, public module names, picklable errors, import layers."""

from __future__ import annotations

import ast
import pickle
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

import autopar
from autopar import _errors

PACKAGE_DIR = Path(autopar.__file__).resolve().parent

#: Import layers: a module imports only from its own layer or lower ones.
LAYERS: dict[str, int] = {
    "_version": 0,
    "_errors": 0,
    "_types": 0,
    "_model": 0,
    "_safety": 1,
    "_costs": 1,
    "_decide": 1,
    "_platform": 2,
    "_config": 2,
    "_serialize": 2,
    "_main_module": 2,
    "_worker": 2,
    "_native": 2,
    "_cache": 2,
    "_shared": 2,
    "_progress": 2,
    "_registry": 2,
    "_futures": 2,
    "_submit_choice": 2,
    "_strategies": 3,
    "_pools": 3,
    "_dispatch": 3,
    "_calibrate": 4,
    "_plan": 4,
    "_run": 5,
    "_decorator": 5,
    "_asyncio": 5,
    "_executor": 5,
    "__init__": 6,
    "_cli": 7,
    "_demo": 7,
    "__main__": 7,
}

#: Modules held to a stricter rule than their layer: they import from layer 0 only.
LAYER_0_ONLY = frozenset({"_worker"})

#: (importer, imported) pairs that break the layers today, each with the reason it is a known violation.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}


def _source_files() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def _unit(path: Path) -> str:
    """The layer-map key of a source file: the top-level module or package under ``autopar``."""
    parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
    return parts[0]


def _dotted(path: Path) -> list[str]:
    """The package path of the module in ``path``, as a list: ``_strategies/_process.py`` -> [autopar, _strategies]."""
    parts = ["autopar", *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
    return parts[:-1]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for branch in node.orelse:
                visit(branch)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _imported_units(source: str, package: list[str]) -> set[str]:
    """Layer-map keys of the autopar modules ``source`` imports at run time (``autopar`` itself is ``__init__``).

    ``package`` is the dotted package the source lives in, split: relative imports resolve against it.
    """
    targets: list[list[str]] = []
    for node in _runtime_imports(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets.extend(alias.name.split(".") for alias in node.names)
            continue
        base = package[: len(package) - node.level + 1] if node.level else []
        module = [*base, *(node.module.split(".") if node.module else [])]
        if node.module is None:
            # ``from . import _cache``: each name is a module of the package.
            targets.extend([*module, alias.name] for alias in node.names)
        else:
            targets.append(module)
    units = set()
    for target in targets:
        if target[0] != "autopar":
            continue
        units.add(target[1] if len(target) > 1 else "__init__")
    return units


def _layering_cases() -> list[object]:
    cases: list[object] = []
    for path in _source_files():
        unit = _unit(path)
        name = str(path.relative_to(PACKAGE_DIR))
        known = [reason for (importer, _), reason in KNOWN_VIOLATIONS.items() if importer == unit]
        marks = [pytest.mark.xfail(reason=r, strict=True) for r in known]
        cases.append(pytest.param(path, id=name, marks=marks))
    return cases


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
    for name in ("AutoparError", "WorkerCrashedError", "SerializationError", "RemoteError", "UnsafeStrategyWarning"):
        assert name in autopar.__all__
        assert getattr(autopar, name) is getattr(_errors, name)


# -- exceptions survive pickling ------------------------------------------------------

#: One instance of every exception class of ``autopar._errors``, with its attributes.
ERROR_SAMPLES: dict[type[BaseException], tuple[BaseException, dict[str, object]]] = {
    _errors.AutoparError: (_errors.AutoparError("something failed"), {}),
    _errors.WorkerCrashedError: (
        _errors.WorkerCrashedError("a spawn worker died while running item 3, with signal SIGSEGV", 3, -11),
        {"index": 3, "exitcode": -11},
    ),
    _errors.SerializationError: (_errors.SerializationError("cannot pickle the function 'f'"), {}),
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


def test_worker_crashed_error_defaults_survive_pickling() -> None:
    """WorkerCrashedError built from a message only keeps index and exitcode as None after pickling."""
    copy = pickle.loads(pickle.dumps(autopar.WorkerCrashedError("a worker died while starting")))
    assert (copy.index, copy.exitcode, str(copy)) == (None, None, "a worker died while starting")


# -- import layers --------------------------------------------------------------------


def test_every_module_is_in_the_layer_map() -> None:
    """Each module and package under src/autopar has a layer, so a new module must be placed deliberately."""
    units = {_unit(path) for path in _source_files()}
    assert units - set(LAYERS) == set(), "add these modules to LAYERS"
    assert set(LAYERS) - units == set(), "these LAYERS entries name no module"


@pytest.mark.parametrize("path", _layering_cases())
def test_module_imports_only_from_its_layer_or_lower(path: Path) -> None:
    """A module imports autopar modules of its own layer or lower (``_worker``: layer 0 only), TYPE_CHECKING aside."""
    unit = _unit(path)
    layer = LAYERS[unit]
    limit = 0 if unit in LAYER_0_ONLY else layer
    upward = {
        imported: LAYERS.get(imported, -1)
        for imported in _imported_units(path.read_text(), _dotted(path))
        if imported != unit and LAYERS.get(imported, 99) > limit
    }
    assert upward == {}, f"{path.name} (layer {layer}) imports from higher layers: {upward}"


def test_import_parser_sees_relative_absolute_and_lazy_imports() -> None:
    """The import parser resolves relative, absolute and function-level imports and skips TYPE_CHECKING blocks."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "import autopar._pools\n"
        "from .. import _cache\n"
        "from .._errors import AutoparError\n"
        "from ._process import ProcessStrategy\n"
        "if TYPE_CHECKING:\n"
        "    from .._run import map\n"
        "def lazy():\n"
        "    from .._decide import decide\n"
    )
    units = _imported_units(source, ["autopar", "_strategies"])
    assert units == {"_pools", "_cache", "_errors", "_strategies", "_decide"}
    assert _imported_units("import autopar\nfrom . import _run\n", ["autopar"]) == {"__init__", "_run"}
