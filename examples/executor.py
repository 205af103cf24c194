"""autopar.Executor as a concurrent.futures executor: submit, as_completed, map, and a forced strategy."""

from __future__ import annotations

import concurrent.futures

import autopar


def collatz_steps(n: int) -> int:
    """How many Collatz steps take n to 1."""
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def main() -> None:
    # "auto": submit times the first calls of a function, then keeps it on threads or moves it to processes.
    with autopar.Executor() as executor:
        futures = {executor.submit(collatz_steps, n): n for n in (27, 97, 871, 6171)}
        done = {futures[f]: f.result() for f in concurrent.futures.as_completed(futures)}
        print("steps:", dict(sorted(done.items())))
        # map calibrates on the first items and picks a strategy, like autopar.map.
        longest = max(zip(executor.map(collatz_steps, range(1, 20_000)), range(1, 20_000), strict=True))
        print(f"longest below 20000: {longest[1]} takes {longest[0]} steps")

    # A forced strategy runs on the standard library's executor, with its semantics.
    with autopar.Executor("threads", workers=4) as executor:
        print("threads:", list(executor.map(collatz_steps, [7, 9, 11], timeout=30)))


if __name__ == "__main__":
    main()
