"""Load a "model" once per worker with ``initializer=``, then score many items with it.

Loading the model (here: building a word lexicon and compiling a regular expression)
costs more than scoring one item, so it must not happen per item.
``initializer=load_model, initargs=(LEXICON,)`` runs ``load_model(LEXICON)`` once in
each worker before its first item: once in each process of a process pool, once in
each thread of a thread pool, and once in the calling thread before items run there.
The model lives in a module global of the worker.
Run ``python examples/model_per_worker.py``.
"""

from __future__ import annotations

import os
import re

import autopar

#: Word weights: the "weights file" of the model, as (word, weight) pairs.
LEXICON = (
    ("good", 2),
    ("great", 3),
    ("excellent", 4),
    ("fast", 1),
    ("bad", -2),
    ("slow", -1),
    ("broken", -3),
    ("awful", -4),
)

#: The model of this worker process, set by ``load_model``.
_MODEL: tuple[dict[str, int], re.Pattern[str]] | None = None
#: Loads of the model per process id (a worker receiving this module's functions by value starts
#: from the caller's copy of this dict, so each process counts under its own id).
_LOADS: dict[int, int] = {}


def load_model(weights: tuple[tuple[str, int], ...]) -> None:
    """The initializer: build the model once and keep it in this worker's module global."""
    global _MODEL
    lexicon = dict(weights)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(lexicon))) + r")\b", re.IGNORECASE)
    _MODEL = (lexicon, pattern)
    _LOADS[os.getpid()] = _LOADS.get(os.getpid(), 0) + 1


def score(review: str) -> tuple[int, int, int]:
    """(score of ``review``, process id, loads in this process): uses the model the initializer loaded."""
    if _MODEL is None:
        msg = "the model is not loaded: pass initializer=load_model"
        raise RuntimeError(msg)
    lexicon, pattern = _MODEL
    total = sum(lexicon[word.lower()] for word in pattern.findall(review))
    return total, os.getpid(), _LOADS.get(os.getpid(), 0)


def reviews() -> list[str]:
    """2,000 short reviews built from a few phrases."""
    phrases = ["good value", "great and fast", "slow delivery", "broken on arrival", "excellent", "bad, awful fit"]
    return [f"{phrases[i % 6]}; {phrases[(i * 7) % 6]} (#{i})" for i in range(2_000)]


def main() -> None:
    items = reviews()
    scored = autopar.map(score, items, initializer=load_model, initargs=(LEXICON,))
    scores = [s for s, _, _ in scored]
    print(f"{len(scores)} reviews scored; total score {sum(scores)}; positive: {sum(s > 0 for s in scores)}")

    # Forced onto two spawn workers: each process loads the model once, whatever the number of items.
    scored = autopar.map(score, items, strategy="spawn", workers=2, initializer=load_model, initargs=(LEXICON,))
    assert [s for s, _, _ in scored] == scores
    loads = {pid: count for _, pid, count in scored}
    print(
        f"spawn: same scores; {len(loads)} worker processes, each loaded the model once: {set(loads.values()) == {1}}"
    )


if __name__ == "__main__":
    main()
