"""The package's structure: one import order for every module, a pure rulebook, and small units.

These tests read source files, not behaviour: every autopar module has a place
in ``ORDER`` and imports only modules placed before it (so layers, and the
order inside each layer, go one way); ``_core`` imports only itself and the
records layer and no module that touches the clock or the operating system;
no module is over 300 lines and no function over 50.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import autopar

PACKAGE_DIR = Path(autopar.__file__).resolve().parent

#: Every module, in import order: a module imports only modules listed before it.
#: Each tuple is a layer; inside a layer the order is the one-way rule too.
#: A package's ``__init__`` is named by the package (``_core``), and placed after the modules it imports.
LAYERS: tuple[tuple[str, ...], ...] = (
    # 0: records and errors, standard library and attrs only.
    ("_version", "_errors", "_types", "_render", "_model", "_timeline", "_report"),
    # 1: the rulebook: pure functions of records.
    (
        "_core",
        "_core._safety",
        "_core._workload",
        "_core._rounds",
        "_core._sizing",
        "_core._costs",
        "_core._reasons",
        "_core._decide",
        "_core._sampling",
        "_core._watching",
        "_core._plans",
        "_core._submit",
        "_core._identity",
        "_core._joblib",
        "_core._joblib_speculate",
    ),
    # 2: what runs in a worker, and lookups of the machine, the options and the caches.
    (
        "_forksafe",
        "_pickling",
        "_native",
        "_limits",
        "_worker",
        "_shared",
        "_serialize",
        "_transfer",
        "_main_module",
        "_platform",
        "_info",
        "_registry",
        "_config",
        "_warn",
        "_cache",
        "_progress",
        "_deadline",
        "_recorder",
        "_joblib_batch",
    ),
    # 3: strategies and their pools.
    (
        "_strategies",
        "_strategies._serial",
        "_strategies._threads",
        "_strategies._process",
        "_strategies._process._protocol",
        "_strategies._process._lifeline",
        "_strategies._process._child",
        "_strategies._process._failures",
        "_strategies._process._popen",
        "_strategies._process._handle",
        "_strategies._process._receive",
        "_strategies._process._pool",
        "_strategies._interpreters",
        "_strategies._dask_cluster",
        "_strategies._dask",
        "_pools",
        "_dispatch",
        "_trial",
    ),
    # 4: measuring a call and gathering its facts.
    (
        "_os_readings",
        "_sample",
        "_bytecode",
        "_thread_probe",
        "_thread_carry",
        "_carry_watch",
        "_calibrate",
        "_gather",
        "_pool_spec",
        "_feeder",
        "_speculation_thread",
        "_speculation",
    ),
    # 5: calls and the front ends over them.
    (
        "_pooled",
        "_call",
        "_run",
        "_decorator",
        "_asyncio",
        "_executor._stop",
        "_executor._pools",
        "_executor._router",
        "_executor._buffered",
        "_executor._map",
        "_executor",
        "_joblib_pool",
        "_joblib_probe",
        "_joblib_speculate",
        "_joblib_route",
        "_joblib_backend",
    ),
    # 6: the public package.
    ("__init__", "joblib"),
    # 7: the command line, over the public API.
    ("_demo", "_cli", "__main__"),
)
ORDER: tuple[str, ...] = tuple(unit for layer in LAYERS for unit in layer)
POSITION = {unit: i for i, unit in enumerate(ORDER)}

#: autopar modules ``_core`` may import besides its own: the records and errors layer.
CORE_MAY_IMPORT = frozenset({"_model", "_errors", "_types", "_render"})
#: Modules outside autopar that ``_core`` may import: none reads a clock, the OS or global state.
CORE_EXTERNAL = frozenset({"__future__", "attrs", "collections", "functools", "math", "types", "typing"})

MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 50


def _source_files() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def _unit(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _package(path: Path) -> list[str]:
    """The package a file's relative imports resolve against: ``_core/_plans.py`` -> [autopar, _core]."""
    parts = ["autopar", *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
    return parts[:-1]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, *, type_checking: bool) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement at any depth; those under ``if TYPE_CHECKING:`` only if ``type_checking``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test) and not type_checking:
            for branch in node.orelse:
                visit(branch)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def imported_targets(source: str, package: list[str], *, type_checking: bool = False) -> list[list[str]]:
    """The dotted names ``source`` imports, relative imports resolved against ``package``."""
    targets: list[list[str]] = []
    for node in _imports(ast.parse(source), type_checking=type_checking):
        if isinstance(node, ast.Import):
            targets.extend(alias.name.split(".") for alias in node.names)
            continue
        base = package[: len(package) - node.level + 1] if node.level else []
        module = [*base, *(node.module.split(".") if node.module else [])]
        if node.module is None:
            targets.extend([*module, alias.name] for alias in node.names)  # ``from . import _cache``
        else:
            targets.append(module)
    return targets


def imported_units(source: str, package: list[str], *, type_checking: bool = False) -> set[str]:
    """The autopar modules (``ORDER`` names) ``source`` imports: the longest known prefix of each target."""
    units = set()
    for target in imported_targets(source, package, type_checking=type_checking):
        if target[0] != "autopar":
            continue
        if len(target) == 1:
            units.add("__init__")
            continue
        names = [".".join(target[1:end]) for end in range(len(target), 1, -1)]
        units.add(next((name for name in names if name in POSITION), names[0]))
    return units


def order_violations(unit: str, source: str, package: list[str]) -> dict[str, str]:
    """Imports of ``unit`` that are not placed before it in ``ORDER``, with the reason."""
    problems = {}
    for imported in imported_units(source, package):
        if imported == unit or imported == unit.rpartition(".")[0]:
            continue  # a package's own __init__ runs first anyway
        if imported not in POSITION:
            problems[imported] = "not in ORDER"
        elif POSITION[imported] > POSITION[unit]:
            problems[imported] = f"placed after {unit}"
    return problems


def purity_violations(source: str, package: list[str]) -> set[str]:
    """What a ``_core`` module imports that the rulebook may not (TYPE_CHECKING imports included)."""
    bad = set()
    for target in imported_targets(source, package, type_checking=True):
        if target[0] == "autopar":
            inner = target[1] if len(target) > 1 else "__init__"
            if inner != "_core" and inner not in CORE_MAY_IMPORT:
                bad.add(".".join(target))
        elif target[0] not in CORE_EXTERNAL:
            bad.add(".".join(target))
    return bad


def test_every_module_has_a_place_in_the_order() -> None:
    """Each module under src/autopar is placed in ``LAYERS``, so a new module is placed deliberately."""
    units = {_unit(path) for path in _source_files()}
    assert units - set(ORDER) == set(), "add these modules to LAYERS"
    assert set(ORDER) - units == set(), "these LAYERS entries name no module"
    assert len(ORDER) == len(POSITION), "a module is listed twice"


@pytest.mark.parametrize("path", _source_files(), ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_module_imports_only_modules_placed_before_it(path: Path) -> None:
    """A module imports (at run time) only autopar modules placed before it: layers and their insides go one way."""
    assert order_violations(_unit(path), path.read_text(), _package(path)) == {}


@pytest.mark.parametrize("path", sorted((PACKAGE_DIR / "_core").glob("*.py")), ids=lambda p: p.name)
def test_core_imports_only_the_core_and_records(path: Path) -> None:
    """The rulebook imports itself, the records and errors layer and pure standard-library modules only."""
    assert purity_violations(path.read_text(), _package(path)) == set()


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("import time\n", {"time"}),
        ("from .._pools import warm_pools\n", {"autopar._pools"}),
        ("from .. import _platform\n", {"autopar._platform"}),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .._run import map\n", {"autopar._run"}),
        ("import os.path\n", {"os.path"}),
        ("from .._model import Decision\nfrom ._costs import predict\nimport math\n", set()),
    ],
)
def test_purity_check_catches_a_wrong_import(source: str, bad: set[str]) -> None:
    """The purity check flags a clock, the OS or an execution module imported into ``_core``."""
    assert purity_violations(source, ["autopar", "_core"]) == bad


def test_order_check_catches_an_import_of_a_later_module() -> None:
    """The order check flags an import of a module placed later, inside a layer as across layers."""
    assert order_violations("_core._costs", "from ._decide import decide\n", ["autopar", "_core"]) == {
        "_core._decide": "placed after _core._costs"
    }
    assert order_violations("_worker", "from . import _shared\n", ["autopar"]) == {"_shared": "placed after _worker"}
    assert order_violations("_run", "from ._call import Call\nimport autopar._pools\n", ["autopar"]) == {}
    assert order_violations("_cli", "from . import _nowhere\n", ["autopar"]) == {"_nowhere": "not in ORDER"}


def test_import_parser_resolves_relative_absolute_and_lazy_imports() -> None:
    """Relative, absolute and function-level imports resolve to ``ORDER`` names; TYPE_CHECKING imports are skipped."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "import autopar._pools\n"
        "from .. import _cache\n"
        "from .._errors import AutoparError\n"
        "from ._process._pool import ProcessPool\n"
        "if TYPE_CHECKING:\n"
        "    from .._run import map\n"
        "def lazy():\n"
        "    from .._core._decide import decide\n"
    )
    units = imported_units(source, ["autopar", "_strategies"])
    assert units == {"_pools", "_cache", "_errors", "_strategies._process._pool", "_core._decide"}
    assert imported_units("import autopar\nfrom . import _run\n", ["autopar"]) == {"__init__", "_run"}


@pytest.mark.parametrize("path", _source_files(), ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_modules_and_functions_stay_small(path: Path) -> None:
    """No module over 300 lines and no function over 50: a unit past that has two jobs."""
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    long = {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    }
    assert long == {}


def private_imports(source: str, package: list[str]) -> set[str]:
    """Private (underscore) names ``source`` imports from autopar modules; modules themselves do not count."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom) or node.module is None:
            continue
        base = package[: len(package) - node.level + 1] if node.level else []
        module = [*base, *node.module.split(".")]
        if module[0] != "autopar":
            continue
        for alias in node.names:
            name = alias.name
            is_module = (PACKAGE_DIR.joinpath(*module[1:], name).with_suffix(".py")).exists() or (
                PACKAGE_DIR.joinpath(*module[1:], name, "__init__.py")
            ).exists()
            if name.startswith("_") and not name.startswith("__") and not is_module:
                found.add(f"{'.'.join(module)}.{name}")
    return found


@pytest.mark.parametrize("path", _source_files(), ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_no_module_imports_another_modules_private_name(path: Path) -> None:
    """A name shared between modules is public in its module: no ``from ._x import _private`` across modules."""
    assert private_imports(path.read_text(), _package(path)) == set()


def test_private_import_check_tells_names_from_modules() -> None:
    """Importing a private module is fine; importing another module's private name is not."""
    assert private_imports("from ._core import _safety\n", ["autopar"]) == set()
    assert private_imports("from ._model import _hidden\n", ["autopar"]) == {"autopar._model._hidden"}


#: Patches of private autopar names the suite still needs, each with its reason (at most two).
ALLOWED_PRIVATE_PATCHES: dict[str, str] = {}


def _private_patches(source: str) -> list[str]:
    """``monkeypatch.setattr``/``setitem``/``delattr`` calls in ``source`` that replace a private name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"setattr", "delattr"}
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "monkeypatch"
        ):
            continue
        strings = [a.value for a in node.args[:2] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        names = [part for text in strings for part in text.split(".")[-1:]]
        if any(name.startswith("_") and not name.startswith("__") for name in names):
            found.append(ast.unparse(node))
    return found


def test_tests_patch_at_most_two_private_names() -> None:
    """Tests inject rules and clocks through parameters; patching a private name is the rare, listed exception."""
    tests_dir = Path(__file__).resolve().parent
    patches = [patch for path in sorted(tests_dir.rglob("*.py")) for patch in _private_patches(path.read_text())]
    assert len(patches) <= 2
    assert len(patches) == len(ALLOWED_PRIVATE_PATCHES)


def test_private_patch_check_catches_a_patch() -> None:
    """The patch count sees a private name patched by object or by dotted path, and not a public one."""
    source = (
        "def test(monkeypatch):\n"
        "    monkeypatch.setattr(_plan, '_warned', set())\n"
        "    monkeypatch.setattr('autopar._serialize.has_cloudpickle', lambda: False)\n"
        "    monkeypatch.setattr('autopar._call._hidden', 1)\n"
        "    monkeypatch.setattr(os, 'cpu_count', lambda: 64)\n"
    )
    assert len(_private_patches(source)) == 2
