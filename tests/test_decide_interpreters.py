"""Auto-selection of a pool of subinterpreters: the rule, the price and the reasons, with injected facts."""

from __future__ import annotations

import attrs
import pytest

from autopar._core._costs import DEFAULT_WORKER_STARTUP_S, INTERPRETER_CHUNK_OVERHEAD_S, predict
from autopar._core._decide import decide
from autopar._core._safety import interpreters_auto_problem, interpreters_excluded, is_environment_failure
from autopar._errors import SerializationError
from autopar._model import Measurements, Options, PlatformFacts
from platforms import (
    LINUX,
    LINUX_314,
    LINUX_314_INTERP,
    LINUX_FORK_314_INTERP,
    MACOS_314,
    WINDOWS,
    WINDOWS_314,
)
from test_decide import GIL_1S, IO_WAIT, LARGE_ARGS, RELEASES_GIL, TINY

AUTO = Options()


def loads_there(m: Measurements) -> Measurements:
    """``m`` for a function auto's rule lets run in subinterpreters."""
    return attrs.evolve(m, interpreters_problem=None)


GIL_INTERP = loads_there(GIL_1S)

#: (id, measurements, facts, strategy expected).
CHOICES = [
    # Spawn is the only process start: subinterpreters start and hand over chunks for less.
    ("gil-bound-windows-3.14", GIL_INTERP, WINDOWS_314, "interpreters"),
    # A safe fork stays cheaper.
    ("gil-bound-linux-fork-3.14", GIL_INTERP, LINUX_FORK_314_INTERP, "fork"),
    # forkserver starts its workers for less than subinterpreters by default (80 ms against 100 ms).
    ("gil-bound-linux-3.14", GIL_INTERP, LINUX_314_INTERP, "forkserver"),
    ("gil-bound-macos-3.14", GIL_INTERP, MACOS_314, "forkserver"),
    ("gil-bound-macos-3.14-spawn-only", GIL_INTERP, attrs.evolve(MACOS_314, start_methods=("spawn",)), "interpreters"),
    # Pickling large arguments costs as much as the work, wherever they go.
    ("large-arguments-linux-3.14", loads_there(LARGE_ARGS), LINUX_314_INTERP, "serial"),
    # Threads need no start-up and no pickling where the GIL is released or the work waits.
    ("releases-gil-windows-3.14", loads_there(RELEASES_GIL), WINDOWS_314, "threads"),
    ("io-waiting-windows-3.14", loads_there(IO_WAIT), WINDOWS_314, "threads"),
    ("tiny-items-windows-3.14", loads_there(TINY), WINDOWS_314, "serial"),
    # Before 3.14 there are none: spawn, as before.
    ("gil-bound-windows-3.12", GIL_INTERP, WINDOWS, "spawn"),
]


@pytest.mark.parametrize(("m", "facts", "expected"), [pytest.param(*case[1:], id=case[0]) for case in CHOICES])
def test_auto_chooses_interpreters_where_they_cost_least(m: Measurements, facts: PlatformFacts, expected: str) -> None:
    """Each workload and platform gets the strategy its row expects, subinterpreters among the candidates."""
    decision = decide(m, facts, AUTO)
    assert decision.strategy == expected, str(decision)
    listed = {c.strategy for c in decision.candidates}
    assert ("interpreters" in listed) is (facts.subinterpreters and facts.python_version >= (3, 14))


def test_chosen_interpreters_say_the_first_item_is_a_trial() -> None:
    """The reasons of a decision for subinterpreters tell that the first item tries them, with a fallback."""
    decision = decide(GIL_INTERP, WINDOWS_314, AUTO)
    assert decision.strategy == "interpreters"
    assert any("first item runs alone in a subinterpreter as a trial" in r for r in decision.reasons)
    assert not decision.limit_native_threads


@pytest.mark.parametrize(
    ("m", "facts", "options", "words"),
    [
        (GIL_1S, WINDOWS_314, AUTO, "not checked"),
        (attrs.evolve(GIL_INTERP, interpreters_problem="its module uses numpy"), WINDOWS_314, AUTO, "numpy"),
        (attrs.evolve(GIL_INTERP, data_picklable=False), WINDOWS_314, AUTO, "cannot be pickled"),
        (GIL_INTERP, WINDOWS_314, Options(has_shared=True, shared=b"x"), "shared="),
        (GIL_INTERP, WINDOWS_314, Options(max_tasks_per_worker=5), "max_tasks_per_worker"),
        (
            GIL_INTERP,
            attrs.evolve(WINDOWS_314, start_failures=(("interpreters", "No module named 'x'"),)),
            AUTO,
            "the trial in a subinterpreter failed: No module named 'x'",
        ),
    ],
    ids=["unchecked", "extension-module", "unpicklable-data", "shared", "max-tasks", "failed-trial"],
)
def test_interpreters_left_out_say_why(m: Measurements, facts: PlatformFacts, options: Options, words: str) -> None:
    """A call the rule keeps from subinterpreters lists none, and a reason names the cause."""
    assert words in (interpreters_excluded(facts, m, options) or "")
    decision = decide(m, facts, options)
    assert all(c.strategy != "interpreters" for c in decision.candidates)
    assert any(r.startswith("interpreters not a candidate") and words in r for r in decision.reasons), decision.reasons
    assert not any("could not start" in r for r in decision.reasons)


@pytest.mark.parametrize("facts", [LINUX, LINUX_314, WINDOWS], ids=["3.12", "3.14-without", "windows-3.12"])
def test_no_interpreter_reason_where_there_are_none(facts: PlatformFacts) -> None:
    """Where subinterpreters do not exist, decisions neither list them nor speak of them."""
    decision = decide(GIL_INTERP, facts, AUTO)
    assert all("interpreters" not in r for r in decision.reasons)


def test_auto_prices_the_trial_and_no_pipe() -> None:
    """Auto pays one item and a chunk hand-over more than a forced pool, for its trial; no pipe transfer."""
    forced = Options(strategy="interpreters", strategy_source="call")
    m = GIL_INTERP
    auto_s = predict("interpreters", 2, 20, m, WINDOWS_314, AUTO)
    forced_s = predict("interpreters", 2, 20, m, WINDOWS_314, forced)
    assert auto_s - forced_s == pytest.approx(m.item_wall_s + INTERPRETER_CHUNK_OVERHEAD_S)
    spawn_s = predict("spawn", 2, 20, m, WINDOWS_314, forced)
    startup_gap = DEFAULT_WORKER_STARTUP_S["spawn"] - DEFAULT_WORKER_STARTUP_S["interpreters"]
    assert spawn_s - forced_s > startup_gap


def test_large_arguments_cost_subinterpreters_less_than_processes() -> None:
    """Bytes cross a pipe to a process, but are only copied in memory to a subinterpreter."""
    decision = decide(loads_there(LARGE_ARGS), LINUX_314_INTERP, AUTO)
    predicted = {c.strategy: c.predicted_s for c in decision.candidates}
    assert predicted["interpreters"] < 0.7 * predicted["forkserver"], str(decision)


def test_measured_interpreter_startup_replaces_default() -> None:
    """A start-up measured on this machine prices subinterpreters instead of the default."""
    slow = attrs.evolve(GIL_INTERP, worker_startup_s={"interpreters": 2.0})
    assert decide(slow, WINDOWS_314, AUTO).strategy == "spawn"


@pytest.mark.parametrize(
    ("module", "qualname", "by_reference", "packages", "words"),
    [
        ("work", "resize", True, (), None),
        ("work", "resize", True, ("numpy",), "numpy"),
        ("work", "resize", True, ("numpy", "psutil"), "numpy, psutil"),
        ("work", "resize", False, (), "pickled by reference"),
        ("__main__", "resize", True, (), "__main__"),
        ("work", "<lambda>", False, (), "lambda"),
    ],
)
def test_interpreters_auto_problem_allows_pure_python_found_by_name(
    module: str, qualname: str, by_reference: bool, packages: tuple[str, ...], words: str | None
) -> None:
    """The rule allows a function found by name whose module uses no third-party extension module."""
    problem = interpreters_auto_problem(module, qualname, by_reference=by_reference, extension_packages=packages)
    assert problem is None if words is None else words in (problem or "")


NOT_LOADED = ImportError("module numpy._core._multiarray_umath does not support loading in subinterpreters")


@pytest.mark.parametrize(
    ("error", "ran", "expected"),
    [
        (NOT_LOADED, False, True),
        (ImportError("No module named 'work'"), False, True),
        (SerializationError("could not be unpickled in the subinterpreter"), False, True),
        (NOT_LOADED, True, True),
        (ImportError("No module named 'work'"), True, False),
        (ValueError("bad item"), True, False),
        (ValueError("bad initializer"), False, False),
        (None, True, False),
    ],
)
def test_environment_failures_are_import_and_serialization_errors(
    error: BaseException | None, ran: bool, expected: bool
) -> None:
    """Only a failure to load, or an import refused in a subinterpreter, counts against the environment."""
    assert is_environment_failure(error, ran=ran) is expected
