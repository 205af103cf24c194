"""Stream results with ``autopar.imap`` over a generator, in completion order.

``imap`` reads the input only a bounded window ahead of what the loop has consumed,
so the generator may be long or endless.
With ``ordered=False`` each result comes as soon as it is ready, not in input order.
Run ``python examples/imap_stream.py``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import autopar

if TYPE_CHECKING:
    from collections.abc import Iterator


def requests(count: int) -> Iterator[int]:
    """A generator of request ids: its length is unknown to autopar."""
    yield from range(count)


def fetch(request_id: int) -> tuple[int, int]:
    """Pretend to wait 2 ms on the network, then return the id and its answer."""
    time.sleep(0.002)
    return request_id, request_id * request_id


def main() -> None:
    seen: set[int] = set()
    total = 0
    for request_id, answer in autopar.imap(fetch, requests(600), ordered=False):
        seen.add(request_id)  # handle each answer as soon as it arrives
        total += answer
    print(f"{len(seen)} distinct answers received; sum of answers: {total}")


if __name__ == "__main__":
    main()
