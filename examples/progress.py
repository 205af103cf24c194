"""Report progress with a callback: ``progress=`` takes any callable of ``(done, total)``.

autopar calls it in the calling thread each time items finish, with the count so far
and the input length (``None`` when the input has no length, such as a generator).
``progress=True`` draws a tqdm bar instead, with ``pip install 'autopar[progress]'``.
Run ``python examples/progress.py``.
"""

from __future__ import annotations

import autopar


def digit_sum(n: int) -> int:
    """The sum of the decimal digits of ``n ** 50``."""
    return sum(int(d) for d in str(n**50))


class Report:
    """Print a line each time another tenth of the items is done."""

    def __init__(self) -> None:
        self.shown = -1

    def __call__(self, done: int, total: int | None) -> None:
        if total is None:
            print(f"{done} items done")
            return
        tenth = 10 * done // total
        if tenth > self.shown:
            self.shown = tenth
            print(f"{done}/{total} items done")


def main() -> None:
    sums = autopar.map(digit_sum, range(20_000), progress=Report())
    print(f"largest digit sum: {max(sums)}")


if __name__ == "__main__":
    main()
