"""Open one database connection per worker with ``initializer=``, then run many queries on it.

Opening a connection per item would cost more than the query.
``initializer=connect, initargs=(path,)`` runs ``connect(path)`` once in each worker
before its first item; the connection is kept in a ``threading.local``, because a
``sqlite3`` connection belongs to the thread that opened it: with threads each thread
opens its own, and in a process worker (or the calling thread) there is one.

Process workers receive this script's functions by value, with the globals they use
(they never import the script).  A ``threading.local`` cannot be pickled, so the one
here says how it crosses: as a fresh, empty one in each worker process.
Run ``python examples/connection_per_worker.py``.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading

import autopar


class PerWorker(threading.local):
    """Per-thread state that arrives empty in each worker process."""

    def __reduce__(self) -> tuple[type[PerWorker], tuple[()]]:
        return PerWorker, ()


#: This worker's connection, opened by ``connect``.
_local = PerWorker()


def create_database(path: str) -> None:
    """A database of 10,000 orders: (id, customer, amount in cents)."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER, cents INTEGER)")
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)", ((i, i % 250, (i * 7919) % 10_000) for i in range(10_000))
        )
        db.execute("CREATE INDEX by_customer ON orders (customer)")
    db.close()


def connect(path: str) -> None:
    """The initializer: open a read-only connection for this worker."""
    _local.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def customer_total(customer: int) -> tuple[int, int]:
    """(number of orders, total cents) of ``customer``, on this worker's connection."""
    db = getattr(_local, "db", None)
    if db is None:
        msg = "no connection in this worker: pass initializer=connect"
        raise RuntimeError(msg)
    count, cents = db.execute("SELECT COUNT(*), SUM(cents) FROM orders WHERE customer = ?", (customer,)).fetchone()
    return count, cents


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "orders.db")
        create_database(path)
        customers = range(250)
        for strategy in ("threads", "spawn"):
            totals = autopar.map(
                customer_total, customers, strategy=strategy, workers=2, initializer=connect, initargs=(path,)
            )
            best = max(customers, key=lambda c: totals[c][1])
            orders = sum(count for count, _ in totals)
            print(
                f"{strategy}: {orders} orders of {len(totals)} customers; the largest total is customer {best} with {totals[best][1]} cents"
            )
        autopar.shutdown()  # close the workers (and their connections) before the database file goes


if __name__ == "__main__":
    main()
