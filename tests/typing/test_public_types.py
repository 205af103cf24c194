"""Public types pinned with ``assert_type``: checked by ``mypy tests/typing``, and run once by pytest."""

from __future__ import annotations

from collections.abc import Iterator

from typing_extensions import assert_type

import autopar


def square(x: int) -> int:
    """x * x."""
    return x * x


def describe(x: int, *, unit: str = "s") -> str:
    """x with a unit."""
    return f"{x} {unit}"


@autopar.parallel
def double(x: int) -> int:
    """2 * x."""
    return 2 * x


@autopar.parallel(strategy="threads", workers=2)
def label(x: int, *, prefix: str = "#") -> str:
    """x with a prefix."""
    return f"{prefix}{x}"


def check_public_types() -> None:
    """Each call's static type is the one the public API promises."""
    assert_type(autopar.map(square, [1, 2]), list[int])
    assert_type(autopar.map(describe, range(3), strategy="serial"), list[str])
    assert_type(autopar.imap(square, [1, 2]), Iterator[int])
    assert_type(autopar.imap(describe, iter([1, 2]), ordered=False), Iterator[str])
    assert_type(double(2), int)
    assert_type(label(2, prefix="n"), str)
    assert_type(double.map([1, 2]), list[int])
    assert_type(double.imap([1, 2]), Iterator[int])
    assert_type(label.map(range(3), strategy="serial"), list[str])
    assert_type(autopar.explain(square, [1, 2]), autopar.Decision)
    assert_type(autopar.last_report(), autopar.Report | None)


def rejected_calls() -> None:
    """Calls that break the decorated signature are type errors (never run; strict mypy flags an unused ignore)."""
    double("2")  # type: ignore[arg-type]
    label(2, suffix="n")  # type: ignore[call-arg]
    autopar.map(square, ["a"])  # type: ignore[arg-type]


def test_public_types_hold_at_run_time() -> None:
    """The calls pinned for mypy also run and return values of the pinned types."""
    check_public_types()
    assert autopar.map(square, [1, 2]) == [1, 4]
    assert list(autopar.imap(square, [1, 2])) == [1, 4]
    assert double(2) == 4
    assert label(2, prefix="n") == "n2"
