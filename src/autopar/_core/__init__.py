"""The rulebook: every decision autopar makes, as pure functions of records.

Nothing here reads a clock, calls the operating system, starts a thread or
process, or keeps state: calibration measures, ``_run`` and the strategies
execute, and they ask this package what to do.  Its modules import only each
other and the records and errors layer (``_model``, ``_errors``, ``_types``);
a test reads every import to keep it so.

In dependency order:

* ``_safety``: which process start methods exist and are safe, and which auto may use.
* ``_workload``: what the measurements say about the work (computing, waiting, native threads).
* ``_rounds``: how chunks share workers and cores (the tail of the last round).
* ``_sizing``: worker counts and chunk sizes.
* ``_costs``: the predicted wall time of each strategy.
* ``_reasons``: the texts that explain a choice.
* ``_decide``: candidates, ``decide`` and ``forced_decision``.
* ``_sampling``: how long calibration's serial sample runs, and whether a thread probe runs.
* ``_watching``: what the watcher of the first item reads of it: when the carry starts early, and the GIL.
* ``_plans``: what a call does first (``plan_call``), and whether process workers start at once.
* ``_submit``: where ``Executor.submit`` sends a function's later calls.
* ``_identity``: what identifies a function across calls.
* ``_joblib``: joblib's ``n_jobs``, ``prefer`` and ``require``, and the decision of a ``Parallel`` call.
"""
