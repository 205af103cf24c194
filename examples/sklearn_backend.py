"""scikit-learn's n_jobs= on autopar: the "autopar" joblib backend chooses for each Parallel call.

Run: python examples/sklearn_backend.py   (needs scikit-learn: pip install 'autopar[joblib]' scikit-learn)

Each call below leaves scikit-learn's code unchanged; ``parallel_config(backend="autopar")``
lets autopar measure the first batches and pick serial, threads or processes, and
``autopar.joblib.last_decision()`` says what it chose and why.
"""

from __future__ import annotations

import logging
import sys

try:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, cross_val_score
except ImportError:
    print("scikit-learn is not installed: pip install scikit-learn")
    sys.exit(0)

from joblib import parallel_config

import autopar.joblib  # registers the "autopar" joblib backend


def main() -> None:
    X, y = make_classification(n_samples=400, n_features=10, random_state=0)
    with parallel_config(backend="autopar"):
        scores = cross_val_score(LogisticRegression(), X, y, cv=5, n_jobs=-1)
        print(f"cross_val_score: mean accuracy {scores.mean():.3f}, on {autopar.joblib.last_decision().strategy}")

        search = GridSearchCV(LogisticRegression(), {"C": [0.01, 0.1, 1.0, 10.0]}, cv=4, n_jobs=-1).fit(X, y)
        print(f"GridSearchCV: best C {search.best_params_['C']}, on {autopar.joblib.last_decision().strategy}")

        forest = RandomForestClassifier(n_estimators=50, random_state=0, n_jobs=-1).fit(X, y)
        # predict_proba writes into one shared array (require="sharedmem"): threads or serial only.
        proba = forest.predict_proba(X)
        print(f"forest: {proba.shape[0]} rows of probabilities, on {autopar.joblib.last_decision().strategy}")

    # The whole decision, candidates and reasons, as autopar.explain() shows it:
    print(autopar.joblib.last_decision())


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
