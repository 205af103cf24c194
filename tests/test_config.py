"""Options: ``config()`` scopes, ``AUTOPAR_*`` variables and their precedence, and argument validation."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest

import autopar
import helpers
from autopar import _pools

ITEMS = range(100)


def forced(**options: Any) -> tuple[str, int] | None:
    """(strategy, workers) that explain() reports for the current scope, or None when autopar would choose."""
    decision = autopar.explain(helpers.square, ITEMS, **options)
    return (decision.strategy, decision.workers) if decision.forced else None


def raise_inside(expected: tuple[str, int]) -> None:
    """Check the scope's (strategy, workers), then raise RuntimeError to leave it."""
    assert forced() == expected
    raise RuntimeError("boom")


# -- config() scopes -------------------------------------------------------------


def test_config_sets_defaults_inside_the_block_only() -> None:
    """Inside config() its options apply to calls; after the block they no longer do."""
    assert forced() is None
    with autopar.config(strategy="threads", workers=3):
        assert forced() == ("threads", 3)
        assert set(autopar.map(helpers.pid_of, range(10))) == {os.getpid()}
    assert forced() is None


def test_config_scopes_nest_with_inner_values_winning() -> None:
    """An inner config() overrides the outer one for its own options and keeps the others; exit restores."""
    with autopar.config(strategy="threads", workers=3):
        with autopar.config(workers=2):
            assert forced() == ("threads", 2)
            with autopar.config(strategy="spawn"):
                assert forced() == ("spawn", 2)
            assert forced() == ("threads", 2)
        assert forced() == ("threads", 3)
    assert forced() is None


def test_config_restores_the_outer_scope_when_the_block_raises() -> None:
    """An exception leaving a config() block restores the enclosing options."""
    with autopar.config(strategy="threads", workers=3):
        with pytest.raises(RuntimeError, match="boom"), autopar.config(workers=2):
            raise_inside(expected=("threads", 2))
        assert forced() == ("threads", 3)
    with pytest.raises(RuntimeError, match="boom"), autopar.config(strategy="serial"):
        raise RuntimeError("boom")
    assert forced() is None


def test_call_arguments_override_config() -> None:
    """Options given to the call win over config() options."""
    with autopar.config(strategy="threads", workers=3):
        assert forced(workers=2) == ("threads", 2)
        assert forced(strategy="spawn") == ("spawn", 3)


def test_config_in_one_thread_does_not_affect_another_thread() -> None:
    """A config() block in one thread is invisible to another thread running at the same time, and vice versa."""
    entered = threading.Barrier(2, timeout=30)
    checked = threading.Barrier(2, timeout=30)
    seen: dict[str, object] = {}

    def other() -> None:
        with autopar.config(strategy="serial"):
            entered.wait()
            seen["other inside"] = forced()
            checked.wait()
        seen["other after"] = forced()

    thread = threading.Thread(target=other)
    thread.start()
    try:
        with autopar.config(strategy="threads", workers=3):
            entered.wait()
            seen["main inside"] = forced()
            checked.wait()
        seen["main after"] = forced()
    finally:
        thread.join(30)
    assert not thread.is_alive()
    assert seen["other inside"] == ("serial", 1)
    assert seen["main inside"] == ("threads", 3)
    assert seen["other after"] is None
    assert seen["main after"] is None


def test_config_is_isolated_between_asyncio_tasks() -> None:
    """Two asyncio tasks each inside their own config() see only their own options while both blocks are open."""

    async def scenario() -> dict[str, object]:
        seen: dict[str, object] = {}
        a_entered = asyncio.Event()
        b_checked = asyncio.Event()

        async def task_a() -> None:
            with autopar.config(strategy="threads", workers=2):
                a_entered.set()
                await b_checked.wait()
                seen["a"] = forced()

        async def task_b() -> None:
            await a_entered.wait()
            seen["b before"] = forced()
            with autopar.config(strategy="threads", workers=3):
                seen["b"] = forced()
            b_checked.set()

        await asyncio.wait_for(asyncio.gather(task_a(), task_b()), timeout=30)
        seen["outer"] = forced()
        return seen

    seen = asyncio.run(scenario())
    assert seen == {"a": ("threads", 2), "b before": None, "b": ("threads", 3), "outer": None}


# -- AUTOPAR_STRATEGY and AUTOPAR_WORKERS -------------------------------------------


def test_autopar_strategy_overrides_the_call_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    """AUTOPAR_STRATEGY=serial beats strategy='spawn' given to the call: everything runs in this process."""
    monkeypatch.setenv("AUTOPAR_STRATEGY", "serial")
    assert set(autopar.map(helpers.pid_of, range(20), strategy="spawn", workers=2)) == {os.getpid()}
    decision = autopar.explain(helpers.square, ITEMS, strategy="spawn")
    assert decision.strategy == "serial"
    assert "AUTOPAR_STRATEGY" in " ".join(decision.reasons)
    assert _pools.live_pools() == []


def test_autopar_strategy_overrides_the_decorator(monkeypatch: pytest.MonkeyPatch) -> None:
    """AUTOPAR_STRATEGY=serial beats ``@parallel(strategy="spawn")``."""
    monkeypatch.setenv("AUTOPAR_STRATEGY", "serial")
    assert set(helpers.spawn_pid.map(range(20))) == {os.getpid()}
    assert _pools.live_pools() == []


def test_autopar_strategy_overrides_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """AUTOPAR_STRATEGY beats config(strategy=...)."""
    monkeypatch.setenv("AUTOPAR_STRATEGY", "serial")
    with autopar.config(strategy="spawn", workers=2):
        assert set(autopar.map(helpers.pid_of, range(20))) == {os.getpid()}
        assert autopar.explain(helpers.square, ITEMS).strategy == "serial"


def test_autopar_strategy_set_after_import_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """AUTOPAR_STRATEGY is read on each call, so setting and removing it takes effect at once."""
    monkeypatch.setenv("AUTOPAR_STRATEGY", "threads")
    assert autopar.explain(helpers.square, ITEMS).strategy == "threads"
    monkeypatch.delenv("AUTOPAR_STRATEGY")
    assert autopar.explain(helpers.square, ITEMS, strategy="serial").strategy == "serial"


@pytest.mark.parametrize("value", ["", "  "])
def test_autopar_strategy_empty_is_ignored(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """An empty or blank AUTOPAR_STRATEGY counts as unset."""
    monkeypatch.setenv("AUTOPAR_STRATEGY", value)
    assert forced(strategy="threads", workers=2) == ("threads", 2)


def test_autopar_workers_overrides_the_call_decorator_and_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """AUTOPAR_WORKERS=2 beats workers= given to the call, the decorator and config()."""
    monkeypatch.setenv("AUTOPAR_WORKERS", "2")
    assert forced(strategy="threads", workers=5) == ("threads", 2)
    assert len(set(autopar.map(helpers.worker_id, range(60), strategy="threads", workers=6, chunksize=1))) <= 2
    with autopar.config(workers=6):
        assert forced(strategy="threads") == ("threads", 2)
    assert len(set(helpers.threads_worker_id.map(range(60), workers=6, chunksize=1))) <= 2


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("AUTOPAR_STRATEGY", "forkk", "'spawn'"),
        ("AUTOPAR_WORKERS", "-2", "positive integer"),
        ("AUTOPAR_WORKERS", "0", "positive integer"),
        ("AUTOPAR_WORKERS", "abc", "positive integer"),
    ],
)
def test_bad_environment_value_raises_value_error_naming_variable_value_and_accepted(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, accepted: str
) -> None:
    """A bad AUTOPAR_* value raises ValueError naming the variable, the bad value and what is accepted."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as info:
        autopar.map(helpers.square, range(5))
    message = str(info.value)
    assert variable in message
    assert repr(value) in message
    assert accepted in message
    assert _pools.live_pools() == []


# -- argument validation -----------------------------------------------------------


@pytest.mark.parametrize("entry", ["map", "imap"])
@pytest.mark.parametrize(
    ("args", "options", "error", "words"),
    [
        ((5, [1, 2]), {}, TypeError, "func"),
        ((helpers.square, 5), {}, TypeError, "iterable"),
        ((helpers.square, "abc"), {}, TypeError, "iterable"),
        ((helpers.square, [1, 2]), {"workers": 0}, ValueError, "workers"),
        ((helpers.square, [1, 2]), {"workers": 1.5}, TypeError, "workers"),
        ((helpers.square, [1, 2]), {"strategy": "forkk"}, ValueError, "'threads'"),
        ((helpers.square, [1, 2]), {"chunksize": -1}, ValueError, "chunksize"),
        ((helpers.square, [1, 2]), {"timeout": -1}, ValueError, "timeout"),
        ((helpers.square, [1, 2]), {"timeout": "soon"}, TypeError, "timeout"),
        ((helpers.square, [1, 2]), {"errors": "ignore"}, ValueError, "errors"),
        ((helpers.square, [1, 2]), {"bogus": 1}, TypeError, "'bogus'"),
    ],
    ids=[
        "non-callable-func",
        "non-iterable",
        "string-iterable",
        "workers-0",
        "workers-float",
        "unknown-strategy",
        "chunksize-negative",
        "timeout-negative",
        "timeout-string",
        "errors-unknown",
        "unknown-option",
    ],
)
def test_invalid_argument_raises_naming_it(
    entry: str, args: tuple[Any, ...], options: dict[str, Any], error: type[Exception], words: str
) -> None:
    """A bad argument to map or imap raises TypeError or ValueError at the call, naming it, before any work."""
    call = getattr(autopar, entry)
    with pytest.raises(error) as info:
        call(*args, **options)
    assert type(info.value) is error
    assert words in str(info.value)
    assert _pools.live_pools() == []


def test_unknown_strategy_message_lists_every_accepted_name() -> None:
    """An unknown strategy's ValueError lists 'auto' and every registered strategy."""
    with pytest.raises(ValueError, match="forkk") as info:
        autopar.map(helpers.square, [1], strategy="forkk")
    for name in ("auto", *autopar.strategy_names()):
        assert repr(name) in str(info.value)


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"workers": 0}, ValueError, "workers"),
        ({"strategy": "forkk"}, ValueError, "forkk"),
        ({"bogus": 1}, TypeError, "'bogus'"),
    ],
)
def test_config_with_a_bad_option_raises_naming_it(options: dict[str, Any], error: type, words: str) -> None:
    """config() validates its options on entry, naming the bad one, and leaves no scope behind."""
    with pytest.raises(error) as info, autopar.config(**options):
        pass
    assert words in str(info.value)
    assert forced() is None
