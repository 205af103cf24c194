"""autopar.amap and autopar.aimap: parallel work awaited from asyncio, with the event loop left free."""

from __future__ import annotations

import asyncio
import contextlib

import autopar


def count_primes(limit: int) -> int:
    """How many primes are below limit (trial division: CPU work that holds the GIL)."""
    return sum(all(n % d for d in range(2, int(n**0.5) + 1)) for n in range(2, limit))


async def heartbeat(ticks: list[int]) -> None:
    """Tick every 10 ms until cancelled: it keeps ticking because amap does not block the loop."""
    while True:
        ticks.append(1)
        await asyncio.sleep(0.01)


async def main() -> None:
    ticks: list[int] = []
    beat = asyncio.create_task(heartbeat(ticks))
    totals = await autopar.amap(count_primes, [10_000, 20_000, 30_000, 40_000])
    print("primes below 10k, 20k, 30k, 40k:", totals)
    async with contextlib.aclosing(autopar.aimap(count_primes, range(1_000, 6_000, 1_000))) as results:
        async for total in results:
            print("streamed:", total)
    beat.cancel()
    print("the event loop stayed free:", len(ticks) > 1)


if __name__ == "__main__":
    asyncio.run(main())
