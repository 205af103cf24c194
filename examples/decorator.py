"""Decorate a function with ``@autopar.parallel`` and map it with ``.map``.

The decorated function is still an ordinary function: calling it runs it once, here.
``.map`` runs it over many items the way ``autopar.map`` does.
The decorator also takes options, ``@autopar.parallel(workers=2, errors="return")``.
Run ``python examples/decorator.py``.
"""

from __future__ import annotations

import autopar


@autopar.parallel
def count_primes(limit: int) -> int:
    """How many primes are below ``limit`` (trial division: pure Python)."""
    count = 0
    for n in range(2, limit):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            count += 1
    return count


@autopar.parallel(errors="return")
def inverse(x: float) -> float:
    """1 / x; with ``errors="return"`` a failing item yields its exception instead of stopping the call."""
    return 1 / x


def main() -> None:
    print(f"a plain call: count_primes(100) = {count_primes(100)}")
    limits = [2_000 * k for k in range(1, 17)]
    counts = count_primes.map(limits)  # options given here would override the decorator's
    print(f"primes below {limits[-1]}: {counts[-1]}; all counts: {counts}")
    print(f"inverse of [4, 2, 0, 1]: {inverse.map([4, 2, 0, 1])}")


if __name__ == "__main__":
    main()
