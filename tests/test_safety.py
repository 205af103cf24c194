"""Start-method rules of ``autopar._core._safety``, driven by injected platform facts."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from autopar._core._safety import (
    PROCESS_METHODS,
    auto_process_methods,
    cannot_start,
    method_verdict,
    method_verdicts,
    require_available,
    ruled_out_by,
    usable_process_methods,
)
from autopar._errors import WorkerStartError
from autopar._model import MethodVerdict, PlatformFacts

ALL_POSIX = ("fork", "spawn", "forkserver")

WINDOWS = PlatformFacts(
    system="windows", python_version=(3, 12), start_methods=("spawn",), default_start_method="spawn"
)
MACOS = PlatformFacts(
    system="darwin", python_version=(3, 12), start_methods=("spawn", "fork", "forkserver"), default_start_method="spawn"
)
LINUX = PlatformFacts(system="linux", python_version=(3, 12), start_methods=ALL_POSIX, default_start_method="fork")
LINUX_PY_THREADS = attrs.evolve(LINUX, python_threads=3, native_threads=3)
#: One Python thread, but a BLAS pool started four native ones.
LINUX_NATIVE_THREADS = attrs.evolve(LINUX, python_threads=1, native_threads=5)
LINUX_314 = PlatformFacts(
    system="linux",
    python_version=(3, 14),
    start_methods=("forkserver", "fork", "spawn"),
    default_start_method="forkserver",
)
LINUX_314_THREADS = attrs.evolve(LINUX_314, python_threads=2, native_threads=4)

#: (facts id, facts, expected auto order).
AUTO_CASES = [
    ("windows", WINDOWS, ("spawn",)),
    ("macos", MACOS, ("forkserver", "spawn")),
    ("macos-spawn-only", attrs.evolve(MACOS, start_methods=("spawn", "fork")), ("spawn",)),
    ("linux", LINUX, ("fork", "forkserver", "spawn")),
    ("linux-python-threads", LINUX_PY_THREADS, ("forkserver", "spawn")),
    ("linux-native-threads", LINUX_NATIVE_THREADS, ("forkserver", "spawn")),
    ("linux-3.14", LINUX_314, ("forkserver", "spawn")),
    ("linux-3.14-threads", LINUX_314_THREADS, ("forkserver", "spawn")),
    ("linux-set-spawn", attrs.evolve(LINUX, default_start_method="spawn"), ("forkserver", "spawn")),
    ("no-methods", PlatformFacts(system="emscripten", python_version=(3, 12)), ()),
]

#: (facts id, facts, method, available, safe, words the reason must contain).
VERDICT_CASES = [
    ("windows", WINDOWS, "fork", False, False, ("fork", "windows")),
    ("windows", WINDOWS, "forkserver", False, False, ("forkserver", "windows")),
    ("windows", WINDOWS, "spawn", True, True, ("fresh interpreter",)),
    ("macos", MACOS, "fork", True, False, ("macOS",)),
    ("macos", MACOS, "forkserver", True, True, ("server",)),
    ("macos", MACOS, "spawn", True, True, ("fresh interpreter",)),
    ("linux", LINUX, "fork", True, True, ("single-threaded",)),
    ("linux", LINUX, "forkserver", True, True, ("server",)),
    ("linux", LINUX, "spawn", True, True, ("fresh interpreter",)),
    ("linux-python-threads", LINUX_PY_THREADS, "fork", True, False, ("3 threads", "3 Python", "deadlock")),
    ("linux-native-threads", LINUX_NATIVE_THREADS, "fork", True, False, ("5 threads", "1 Python", "5 native")),
    ("linux-native-threads", LINUX_NATIVE_THREADS, "forkserver", True, True, ("server",)),
    ("linux-3.14", LINUX_314, "fork", True, True, ("single-threaded",)),
    ("linux-3.14-threads", LINUX_314_THREADS, "fork", True, False, ("4 threads",)),
    ("unknown-method", LINUX, "threads", False, False, ("threads", "linux")),
]


@pytest.mark.parametrize(
    ("facts", "method", "available", "safe", "words"),
    [pytest.param(*case[1:], id=f"{case[0]}-{case[2]}") for case in VERDICT_CASES],
)
def test_method_verdict_matches_table_per_platform(
    facts: PlatformFacts, method: str, available: bool, safe: bool, words: tuple[str, ...]
) -> None:
    """Each start method gets the expected availability, safety and a reason that says why."""
    verdict = method_verdict(method, facts)
    assert verdict == MethodVerdict(method=method, available=available, safe=safe, reason=verdict.reason)
    for word in words:
        assert word in verdict.reason


@pytest.mark.parametrize(("facts", "expected"), [pytest.param(f, e, id=i) for i, f, e in AUTO_CASES])
def test_auto_process_methods_order_per_platform(facts: PlatformFacts, expected: tuple[str, ...]) -> None:
    """Auto-selection offers exactly the expected safe methods, cheapest first."""
    assert auto_process_methods(facts) == expected


@pytest.mark.parametrize("facts", [pytest.param(f, id=i) for i, f, _ in AUTO_CASES])
def test_auto_process_methods_subset_of_safe_verdicts_any_platform(facts: PlatformFacts) -> None:
    """Every method auto may use is available and safe by its own verdict."""
    for method in auto_process_methods(facts):
        verdict = method_verdict(method, facts)
        assert verdict.available
        assert verdict.safe


@pytest.mark.parametrize(("facts", "expected"), [pytest.param(f, e, id=i) for i, f, e in AUTO_CASES])
def test_auto_process_methods_unchanged_when_free_threaded(facts: PlatformFacts, expected: tuple[str, ...]) -> None:
    """A free-threaded build (GIL disabled) does not change which start methods auto may use."""
    free = attrs.evolve(facts, gil_enabled=False)
    assert auto_process_methods(free) == auto_process_methods(facts) == expected


@pytest.mark.parametrize("facts", [pytest.param(f, id=i) for i, f, _ in AUTO_CASES])
def test_method_verdicts_unchanged_when_free_threaded(facts: PlatformFacts) -> None:
    """Every verdict is identical with and without the GIL."""
    assert method_verdicts(attrs.evolve(facts, gil_enabled=False)) == method_verdicts(facts)


@pytest.mark.parametrize("facts", [pytest.param(f, id=i) for i, f, _ in AUTO_CASES])
def test_method_verdicts_cover_process_methods_in_order(facts: PlatformFacts) -> None:
    """``method_verdicts`` returns one verdict per process method, in ``PROCESS_METHODS`` order."""
    verdicts = method_verdicts(facts)
    assert tuple(v.method for v in verdicts) == PROCESS_METHODS == ("fork", "forkserver", "spawn")
    assert verdicts == tuple(method_verdict(m, facts) for m in PROCESS_METHODS)


@pytest.mark.parametrize(
    ("facts", "method"),
    [
        pytest.param(WINDOWS, "fork", id="windows-fork"),
        pytest.param(WINDOWS, "forkserver", id="windows-forkserver"),
        pytest.param(attrs.evolve(MACOS, start_methods=("spawn", "fork")), "forkserver", id="macos-forkserver"),
        pytest.param(LINUX, "bogus", id="linux-bogus"),
    ],
)
def test_require_available_raises_when_method_missing(facts: PlatformFacts, method: str) -> None:
    """Forcing a start method the platform lacks raises ValueError naming the method, the platform and the options."""
    with pytest.raises(ValueError, match=f"'{method}'") as info:
        require_available(method, facts)
    message = str(info.value)
    assert facts.system in message
    for available in facts.start_methods:
        assert repr(available) in message


def test_require_available_raises_when_no_methods_at_all() -> None:
    """A platform without any start method says so instead of listing an empty set."""
    facts = PlatformFacts(system="emscripten", python_version=(3, 12))
    with pytest.raises(ValueError, match="available start methods: none"):
        require_available("spawn", facts)


@pytest.mark.parametrize(
    ("facts", "method", "safe"),
    [
        pytest.param(WINDOWS, "spawn", True, id="windows-spawn"),
        pytest.param(MACOS, "fork", False, id="macos-fork"),
        pytest.param(LINUX, "fork", True, id="linux-fork"),
        pytest.param(LINUX_PY_THREADS, "fork", False, id="linux-threads-fork"),
        pytest.param(LINUX_NATIVE_THREADS, "fork", False, id="linux-native-threads-fork"),
        pytest.param(LINUX_314, "fork", True, id="linux-3.14-fork"),
        pytest.param(LINUX_314, "forkserver", True, id="linux-3.14-forkserver"),
        pytest.param(attrs.evolve(LINUX, gil_enabled=False), "fork", True, id="free-threaded-fork"),
    ],
)
def test_require_available_returns_verdict_when_method_exists(facts: PlatformFacts, method: str, safe: bool) -> None:
    """Forcing an existing start method returns its verdict, safe or not, without raising."""
    verdict = require_available(method, facts)
    assert verdict == method_verdict(method, facts)
    assert verdict.available
    assert verdict.safe is safe


def test_auto_process_methods_leaves_fork_out_when_default_is_forkserver() -> None:
    """On Python 3.14+ Linux auto respects the forkserver default though fork is safe and can still be forced."""
    assert LINUX_314.python_threads == LINUX_314.native_threads == 1
    assert "fork" not in auto_process_methods(LINUX_314)
    assert require_available("fork", LINUX_314) == MethodVerdict(
        method="fork", available=True, safe=True, reason="single-threaded process: fork is safe"
    )


@pytest.mark.parametrize(("python_threads", "native_threads"), [(1, 2), (2, 1), (2, 2), (1, 64), (8, 8)])
def test_fork_unsafe_when_any_extra_thread(python_threads: int, native_threads: int) -> None:
    """Any thread beyond the main one, Python or native, makes fork unsafe on Linux and drops it from auto."""
    facts = attrs.evolve(LINUX, python_threads=python_threads, native_threads=native_threads)
    verdict = method_verdict("fork", facts)
    assert verdict.available
    assert not verdict.safe
    assert f"{max(python_threads, native_threads)} threads" in verdict.reason
    assert auto_process_methods(facts)[0] == "forkserver"


@pytest.mark.parametrize(
    "changes",
    [
        {"main_importable": False},
        {"in_worker": True},
        {"in_main_bootstrap": True},
        {"cloudpickle_available": True},
        {"cpu_count": 64, "cpu_logical": 64},
    ],
    ids=lambda changes: ",".join(changes),
)
def test_start_method_rules_ignore_unrelated_facts(changes: dict[str, Any]) -> None:
    """Facts that other layers act on (main module, nesting, cloudpickle, CPUs) leave the start-method rules alone."""
    for facts in (WINDOWS, MACOS, LINUX, LINUX_NATIVE_THREADS, LINUX_314):
        changed = attrs.evolve(facts, **changes)
        assert method_verdicts(changed) == method_verdicts(facts)
        assert auto_process_methods(changed) == auto_process_methods(facts)


# -- processes that cannot start here (issue 19) ------------------------------------------

DAEMON = attrs.evolve(LINUX, daemon=True)


@pytest.mark.parametrize("facts", [DAEMON, attrs.evolve(LINUX_314, daemon=True), attrs.evolve(MACOS, daemon=True)])
def test_daemonic_process_has_no_process_method(facts: PlatformFacts) -> None:
    """In a daemonic process every existing start method is unavailable, for that reason, and auto uses none."""
    for verdict in method_verdicts(facts):
        if verdict.method in facts.start_methods:
            assert not verdict.available
            assert "daemonic" in verdict.reason
    assert auto_process_methods(facts) == ()


@pytest.mark.parametrize("method", ALL_POSIX)
def test_require_available_in_daemonic_process_raises_worker_start_error(method: str) -> None:
    """A forced start method in a daemonic process fails with WorkerStartError naming the cause and the way out."""
    with pytest.raises(WorkerStartError, match=r"daemonic.*strategy='threads'"):
        require_available(method, DAEMON)


def test_require_available_still_raises_value_error_for_a_missing_method_in_a_daemon() -> None:
    """A method that does not exist at all is a bad argument, daemonic process or not."""
    with pytest.raises(ValueError, match="does not exist on windows"):
        require_available("fork", attrs.evolve(WINDOWS, daemon=True))


def test_failed_start_rules_out_that_method_only() -> None:
    """A method whose workers failed to start is unavailable with the reason; the others stay as they were."""
    facts = attrs.evolve(LINUX, start_failures=(("fork", "RLIMIT_NPROC is 3"),))
    verdict = method_verdict("fork", facts)
    assert (verdict.available, verdict.safe) == (False, False)
    assert "could not start: RLIMIT_NPROC is 3" in verdict.reason
    assert auto_process_methods(facts) == ("forkserver", "spawn")
    assert cannot_start("spawn", facts) is None
    with pytest.raises(WorkerStartError, match="RLIMIT_NPROC is 3"):
        require_available("fork", facts)


INTERACTIVE = [
    ("linux-3.13", attrs.evolve(LINUX, python_version=(3, 13))),
    ("linux-3.14", LINUX_314),
    ("macos", MACOS),
    ("windows", WINDOWS),
]


@pytest.mark.parametrize(("name", "facts"), INTERACTIVE, ids=[n for n, _ in INTERACTIVE])
def test_fresh_interpreters_are_safe_without_an_importable_main(name: str, facts: PlatformFacts) -> None:
    """spawn and forkserver workers never import ``__main__``: python -c, a REPL or a notebook changes no verdict."""
    interactive = attrs.evolve(facts, main_importable=False)
    assert method_verdicts(interactive) == method_verdicts(facts)
    for method in ("forkserver", "spawn"):
        if method in facts.start_methods:
            assert method_verdict(method, interactive).safe, name


@pytest.mark.parametrize(("name", "facts"), INTERACTIVE, ids=[n for n, _ in INTERACTIVE])
def test_function_sent_by_value_may_use_every_auto_method(name: str, facts: PlatformFacts) -> None:
    """A lambda, a closure or a function of ``__main__`` that cloudpickle sends is as usable as a module function."""
    interactive = attrs.evolve(facts, main_importable=False)
    assert usable_process_methods(interactive, shippable=True, picklable=True) == auto_process_methods(facts)


@pytest.mark.parametrize(
    ("name", "facts", "expected"),
    [("linux-3.13", LINUX, ("fork",)), ("linux-3.14", LINUX_314, ()), ("macos", MACOS, ()), ("windows", WINDOWS, ())],
)
def test_function_not_even_sendable_by_value_leaves_only_fork(
    name: str, facts: PlatformFacts, expected: tuple[str, ...]
) -> None:
    """A function holding a lock reaches only fork workers, which inherit it, and only where auto may fork."""
    assert usable_process_methods(facts, shippable=False, picklable=True) == expected


@pytest.mark.parametrize("method", ALL_POSIX)
def test_no_usable_dev_shm_rules_out_every_process_method(method: str) -> None:
    """A missing or read-only /dev/shm: no method is available, auto has none, forcing one names /dev/shm."""
    facts = attrs.evolve(LINUX, shm_problem="/dev/shm is mounted read-only")
    verdict = method_verdict(method, facts)
    assert (verdict.available, verdict.safe) == (False, False)
    assert "/dev/shm is mounted read-only" in verdict.reason
    assert auto_process_methods(facts) == ()
    with pytest.raises(WorkerStartError, match=r"/dev/shm is mounted read-only.*strategy='threads'"):
        require_available(method, facts)


def test_a_process_limit_rules_out_every_start_method_and_other_causes_one() -> None:
    """RLIMIT_NPROC binds fork, forkserver and spawn alike; an unnamed cause, or threads, rules out itself only."""
    assert ruled_out_by("fork", "RLIMIT_NPROC") == PROCESS_METHODS
    assert ruled_out_by("spawn", None) == ("spawn",)
    assert ruled_out_by("threads", "RLIMIT_NPROC") == ("threads",)
