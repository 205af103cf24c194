"""Apply a pure-Python function to many items with ``autopar.map``.

The function holds the GIL the whole time it runs, so threads cannot speed it up;
autopar measures it on the first items and picks serial or a process pool.
Run ``python examples/plain_map.py``.
"""

from __future__ import annotations

import autopar


def collatz_steps(n: int) -> int:
    """How many Collatz steps take ``n`` down to 1."""
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def main() -> None:
    numbers = range(1, 100_001)
    steps = autopar.map(collatz_steps, numbers)  # results come back in input order
    longest = max(range(len(steps)), key=steps.__getitem__)
    print(f"{len(steps)} numbers; the longest chain starts at {numbers[longest]} and takes {steps[longest]} steps")


if __name__ == "__main__":
    main()
