"""Pass one large read-only table to every item with ``shared=``: ``func(item, table)``.

Sending the table with every item would pickle it once per item; ``shared=table``
sends it at most once per worker.  Threads, serial runs and fork workers see the
object itself.  spawn and forkserver workers map one copy in shared memory instead
of unpickling their own: ``bytes`` arrive as a read-only ``memoryview``, a NumPy
array as a read-only array.  The shared-memory segment is removed when the call ends.
Run ``python examples/shared_table.py``.
"""

from __future__ import annotations

from array import array

import autopar

#: Entries in the table: 4-byte unsigned integers, 8 MB in all.
ENTRIES = 2_000_000


def build_table() -> bytes:
    """A lookup table of ``ENTRIES`` unsigned 32-bit integers: entry i is i * i mod 1,000,003."""
    return array("I", (i * i % 1_000_003 for i in range(ENTRIES))).tobytes()


def lookup(query: int, table: bytes | memoryview) -> tuple[int, str, bool]:
    """(sum of the table entries that ``query`` reads, the table's type, whether it is read-only), in a worker."""
    entries = memoryview(table).cast("I")
    positions = [(query * 7_919 + k * 104_729) % ENTRIES for k in range(16)]
    readonly = memoryview(table).readonly
    return sum(entries[p] for p in positions), type(table).__name__, readonly


def main() -> None:
    table = build_table()
    queries = range(5_000)
    print(f"table: {len(table):,} bytes; {len(queries)} queries of 16 entries each")
    # autopar chooses how to run; the table reaches every item whatever it chooses.
    answers = autopar.map(lookup, queries, shared=table)
    print(f"auto: sum of answers {sum(answer for answer, _, _ in answers)}")
    # spawn workers start a fresh interpreter: they map the table from shared memory.
    answers = autopar.map(lookup, queries, strategy="spawn", workers=2, shared=table)
    kinds = sorted({(kind, readonly) for _, kind, readonly in answers})
    print(f"spawn: sum of answers {sum(answer for answer, _, _ in answers)}; items saw (type, read-only): {kinds}")


if __name__ == "__main__":
    main()
