"""``import autopar`` is lazy: each public name is imported on first access, from the module that defines it.

Each check runs in a fresh interpreter, since this test process has long since imported everything.
"""

from __future__ import annotations

import ast
import importlib
import json
import textwrap
from pathlib import Path

import pytest

import autopar
import helpers

#: Deadlock guard for child interpreters, not a measurement.
SUBPROCESS_TIMEOUT_S = 60

#: Modules a spawn or forkserver worker should not pay for just because it imports the package.
HEAVY_MODULES = (
    "asyncio",
    "psutil",
    "attrs",
    "attr",
    "concurrent.futures.process",
    "multiprocessing.pool",
    "numpy",
    "joblib",
)


def _run(code: str, tmp_path: Path) -> str:
    """Run ``code`` in a fresh interpreter and return its standard output."""
    done = helpers.run_python(["-c", textwrap.dedent(code)], tmp_path, timeout=SUBPROCESS_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _type_checking_imports() -> dict[str, tuple[str, str]]:
    """Public name -> (defining module, name there), read from the ``if TYPE_CHECKING:`` block of ``__init__``."""
    tree = ast.parse(Path(autopar.__file__).read_text())
    found: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom), ast.dump(statement)
                for alias in statement.names:
                    found[alias.asname or alias.name] = (f"autopar.{statement.module}", alias.name)
    return found


def test_import_autopar_loads_no_heavy_module(tmp_path: Path) -> None:
    """``import autopar`` alone imports none of asyncio, psutil, attrs, the process pools or NumPy."""
    code = f"""
        import json, sys
        import autopar
        print(json.dumps([name for name in {list(HEAVY_MODULES)!r} if name in sys.modules]))
        print(json.dumps(sorted(name for name in sys.modules if name.startswith("autopar"))))
    """
    heavy, loaded = (json.loads(line) for line in _run(code, tmp_path).splitlines())
    assert heavy == []
    assert loaded == ["autopar", "autopar._version"]


def test_map_works_after_a_lazy_import(tmp_path: Path) -> None:
    """``autopar.map`` imports what it needs on first access and runs."""
    code = """
        import autopar
        print(autopar.map(abs, [-1, -2, 3]))
    """
    assert _run(code, tmp_path).strip() == "[1, 2, 3]"


def test_a_first_call_without_a_report_imports_no_report_classes(tmp_path: Path) -> None:
    """Only ``report=True`` imports the report's classes; the first call of a script does not pay for them."""
    code = """
        import sys
        import autopar
        autopar.map(abs, [-1, -2, 3])
        print("autopar._report" in sys.modules)
        autopar.map(abs, [-1, -2, 3], report=True)
        print("autopar._report" in sys.modules, autopar.last_report().items)
    """
    assert _run(code, tmp_path).splitlines() == ["False", "True 3"]


def test_type_checking_imports_match_all() -> None:
    """The ``TYPE_CHECKING`` imports that type checkers see name exactly ``__all__``, ``__version__`` aside."""
    assert set(_type_checking_imports()) == set(autopar.__all__) - {"__version__"}


@pytest.mark.parametrize(("name", "source"), sorted(_type_checking_imports().items()))
def test_public_name_is_the_object_its_module_defines(name: str, source: tuple[str, str]) -> None:
    """Each public name is the very object the ``TYPE_CHECKING`` import names, so types and run time agree."""
    module, attr = source
    assert getattr(autopar, name) is getattr(importlib.import_module(module), attr)


def test_every_name_of_all_resolves_in_a_fresh_interpreter(tmp_path: Path) -> None:
    """``dir(autopar)`` lists every public name before any is used, and each one resolves."""
    code = """
        import autopar
        listed = set(dir(autopar))
        print(sorted(set(autopar.__all__) - listed))
        print(sorted(name for name in autopar.__all__ if getattr(autopar, name) is None))
        print(autopar.__version__ == __import__("autopar._version").__version__)
    """
    assert _run(code, tmp_path).splitlines() == ["[]", "[]", "True"]


def test_unknown_name_raises_attribute_error_naming_it(tmp_path: Path) -> None:
    """A name autopar does not have raises AttributeError with the module and the name, as a plain module does."""
    code = """
        import autopar
        try:
            autopar.nope
        except AttributeError as exc:
            print(exc)
        print(hasattr(autopar, "nope"))
    """
    assert _run(code, tmp_path).splitlines() == ["module 'autopar' has no attribute 'nope'", "False"]


def test_star_import_binds_every_public_name(tmp_path: Path) -> None:
    """``from autopar import *`` binds each name of ``__all__``."""
    code = """
        import autopar
        namespace = {}
        exec("from autopar import *", namespace)
        print(sorted(set(autopar.__all__) - set(namespace)))
        print(namespace["map"](abs, [-4]))
    """
    assert _run(code, tmp_path).splitlines() == ["[]", "[4]"]


def test_public_classes_report_the_public_module_without_access_through_autopar(tmp_path: Path) -> None:
    """A public class imported from its defining module already reports ``__module__ == "autopar"``."""
    sources = {name: src for name, src in _type_checking_imports().items() if isinstance(getattr(autopar, name), type)}
    assert "Executor" in sources
    assert "WorkerCrashedError" in sources
    code = f"""
        import importlib
        sources = {sources!r}
        wrong = {{}}
        for name, (module, attr) in sources.items():
            cls = getattr(importlib.import_module(module), attr)
            if cls.__module__ != "autopar":
                wrong[name] = cls.__module__
        print(wrong)
    """
    assert _run(code, tmp_path).strip() == "{}"


def test_error_and_record_unpickle_in_a_fresh_interpreter(tmp_path: Path) -> None:
    """An error and a record pickled by reference (``autopar.X``) load in a process that never imported autopar."""
    dump = """
        import pickle, sys
        from autopar._errors import WorkerCrashedError
        from autopar._model import PlatformFacts
        facts = PlatformFacts(system="linux", python_version=(3, 11), start_methods=("fork",), default_start_method="fork")
        sys.stdout.write(pickle.dumps((WorkerCrashedError("a worker died while running item 3", 3, -11), facts)).hex())
    """
    payload = _run(dump, tmp_path).strip()
    load = f"""
        import pickle, sys
        error, facts = pickle.loads(bytes.fromhex({payload!r}))
        print(type(error).__module__, type(error).__name__, error.index, error.exitcode, str(error))
        print(type(facts).__module__, type(facts).__name__, facts.system, facts.start_methods)
        print(type(error) is sys.modules["autopar"].WorkerCrashedError)
    """
    assert _run(load, tmp_path).splitlines() == [
        "autopar WorkerCrashedError 3 -11 a worker died while running item 3",
        "autopar PlatformFacts linux ('fork',)",
        "True",
    ]
