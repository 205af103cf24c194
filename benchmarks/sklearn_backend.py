"""scikit-learn and joblib workloads, cold: the "autopar" joblib backend against loky, threading and n_jobs=1.

Usage::

    python benchmarks/sklearn_backend.py [--repeats N] [--only cv,grid]

Each measurement is a new interpreter that imports scikit-learn, builds the data,
then times one workload under ``joblib.parallel_config(backend=...)`` (pool
start-up included), so every figure is what a script run once pays.  The
workloads ask for ``n_jobs=-1``; "sequential" is joblib's own ``n_jobs=1`` path.
Backends run interleaved within each repeat, in an order rotated at each repeat;
times are medians, and each row gives autopar over the best of the others.
Results go to ``benchmarks/results/sklearn_backend.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "sklearn_backend.md"
BACKENDS = ("autopar", "loky", "threading", "sequential")

#: The code of each workload: ``run()`` does the work once, timed by the driver below.
WORKLOADS = {
    # A small linear model, 5 folds of a few ms each: serial or threads win.
    "cv": """
        from sklearn.datasets import make_classification
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_score
        X, y = make_classification(n_samples=500, n_features=20, random_state=0)
        def run():
            return cross_val_score(LogisticRegression(), X, y, cv=5, n_jobs=-1).mean()
    """,
    # A pure-Python estimator (GIL-bound fits of tens of ms): processes win.
    "grid": """
        import numpy as np
        from sklearn.base import BaseEstimator, ClassifierMixin
        from sklearn.datasets import make_classification
        from sklearn.model_selection import GridSearchCV
        from benchmarks_sklearn_estimator import SlowEstimator
        X, y = make_classification(n_samples=200, n_features=5, random_state=0)
        def run():
            grid = {"steps": [4_000_000, 5_000_000, 6_000_000, 7_000_000]}
            return GridSearchCV(SlowEstimator(), grid, cv=5, n_jobs=-1).fit(X, y).best_params_
    """,
    # A random forest with n_jobs=-1: trees are built in compiled code that releases the GIL.
    "forest": """
        from sklearn.datasets import make_classification
        from sklearn.ensemble import RandomForestClassifier
        X, y = make_classification(n_samples=2000, n_features=20, random_state=0)
        def run():
            forest = RandomForestClassifier(n_estimators=200, n_jobs=-1, random_state=0).fit(X, y)
            return forest.predict_proba(X).sum()
    """,
    # joblib's Parallel over 50,000 tiny tasks.
    "tiny": """
        import math
        from joblib import Parallel, delayed
        def run():
            return sum(Parallel(n_jobs=-1)(delayed(math.sqrt)(i) for i in range(50_000)))
    """,
}

ESTIMATOR = '''
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class SlowEstimator(ClassifierMixin, BaseEstimator):
    """Fits in pure Python (a loop of ``steps`` additions), then predicts the majority class."""

    def __init__(self, steps=100_000):
        self.steps = steps

    def fit(self, X, y):
        total = 0
        for i in range(self.steps):
            total += i
        values, counts = np.unique(y, return_counts=True)
        self.classes_ = values
        self.majority_ = values[np.argmax(counts)]
        return self

    def predict(self, X):
        return np.full(len(X), self.majority_)
'''

DRIVER = """
import time
import autopar.joblib
from joblib import parallel_config
{setup}
if __name__ == "__main__":
    started = time.perf_counter()
    with parallel_config(backend={backend!r}):
        run()
    print(time.perf_counter() - started)
"""


def measure(workload: str, backend: str, folder: Path) -> float:
    """Seconds of one workload in a fresh interpreter (imports and data excluded, pool start-up included)."""
    script = folder / f"bench_{workload}_{backend}.py"
    script.write_text(DRIVER.format(setup=textwrap.dedent(WORKLOADS[workload]), backend=backend))
    env = {**os.environ, "PYTHONPATH": str(folder)}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=env, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default=",".join(WORKLOADS))
    args = parser.parse_args()
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / "autopar_sklearn_bench"
    folder.mkdir(exist_ok=True)
    (folder / "benchmarks_sklearn_estimator.py").write_text(ESTIMATOR)
    load = os.getloadavg()
    lines = [
        "# scikit-learn workloads, cold: the autopar joblib backend against the others",
        "",
        f"Median of {args.repeats} fresh interpreters per cell; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}.",
        "",
        "| workload | " + " | ".join(BACKENDS) + " | best other | autopar / best |",
        "|---|" + "---:|" * (len(BACKENDS) + 2),
    ]
    for workload in args.only.split(","):
        times: dict[str, list[float]] = {b: [] for b in BACKENDS}
        for repeat in range(args.repeats):
            order = BACKENDS[repeat % len(BACKENDS) :] + BACKENDS[: repeat % len(BACKENDS)]
            for backend in order:
                times[backend].append(measure(workload, backend, folder))
        medians = {b: statistics.median(t) for b, t in times.items()}
        best = min((b for b in BACKENDS if b != "autopar"), key=medians.__getitem__)
        ratio = medians["autopar"] / medians[best]
        cells = " | ".join(f"{medians[b]:.3f} s" for b in BACKENDS)
        lines.append(f"| {workload} | {cells} | {best} | {ratio:.2f}x |")
        print(lines[-1], flush=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
