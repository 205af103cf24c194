"""Hash blocks of bytes with ``hashlib``: C code that releases the GIL while it hashes a large buffer.

Run it as a script, ``python examples/hashing.py``, or ask autopar what it would do
with ``digest`` and why (put ``examples`` on the path so ``hashing`` can be imported)::

    PYTHONPATH=examples python -m autopar explain hashing:digest "range(64)"
    PYTHONPATH=examples python -m autopar explain hashing:digest "range(64)" --json
"""

from __future__ import annotations

import hashlib

import autopar

#: Bytes hashed per item.
BLOCK_BYTES = 1 << 20


def block(n: int) -> bytes:
    """The ``n``-th block: its index as 8 little-endian bytes, repeated to ``BLOCK_BYTES``."""
    return n.to_bytes(8, "little") * (BLOCK_BYTES // 8)


def digest(n: int) -> str:
    """The SHA-256 hex digest of block ``n``."""
    return hashlib.sha256(block(n)).hexdigest()


def main() -> None:
    digests = autopar.map(digest, range(128))
    combined = hashlib.sha256("".join(digests).encode()).hexdigest()
    print(f"{len(digests)} blocks of {BLOCK_BYTES} bytes hashed")
    print(f"block 0: {digests[0]}")
    print(f"all blocks combined: {combined}")


if __name__ == "__main__":
    main()
