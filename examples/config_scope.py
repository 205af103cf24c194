"""Set default options for a block of code with ``autopar.config``, and see what wins.

Precedence, highest first:
the ``AUTOPAR_STRATEGY`` and ``AUTOPAR_WORKERS`` environment variables,
then options given to the call, then the ``@autopar.parallel`` decorator's,
then the innermost ``autopar.config`` block, then autopar's own choice.
The variables are read at every call, so they let you force a strategy
on a whole program without touching its code: ``AUTOPAR_STRATEGY=serial python app.py``.
Run ``python examples/config_scope.py``.
"""

from __future__ import annotations

import os

import autopar


def square(x: int) -> int:
    """x * x."""
    return x * x


def show(label: str, decision: autopar.Decision) -> None:
    """Print a decision's strategy and who chose it."""
    why = decision.reasons[0] if decision.forced else "chosen by measuring square on the first items"
    print(f"{label:<34} {decision.strategy:<8} ({why})")


def main() -> None:
    items = range(1_000)
    show("autopar's own choice:", autopar.explain(square, items))
    with autopar.config(strategy="threads", workers=2):
        show("inside config(strategy='threads'):", autopar.explain(square, items))
        print(f"{'map under config, sum of squares:':<34} {sum(autopar.map(square, items))}")
        show("the call's own strategy wins:", autopar.explain(square, items, strategy="serial"))
        os.environ["AUTOPAR_STRATEGY"] = "serial"
        try:
            show("AUTOPAR_STRATEGY wins over all:", autopar.explain(square, items, strategy="threads"))
        finally:
            del os.environ["AUTOPAR_STRATEGY"]
    show("after the block:", autopar.explain(square, items))


if __name__ == "__main__":
    main()
