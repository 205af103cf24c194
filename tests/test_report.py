"""``report=True``: per-call reports and ``last_report()``, under every strategy, with real workers."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import autopar
from autopar._cli import main
from conftest import PROCESS_STRATEGIES
from helpers import (
    crash_first_attempt_on_3,
    exit_on_3,
    fail_on_3,
    run_python,
    sleep_for,
    sleep_on_3,
    spin,
    square,
)

ITEMS = 120
#: matplotlib is looked up, never imported here: it imports NumPy, whose BLAS threads make fork unsafe later.
needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed (the plot extra)"
)
#: The phases of a worker add up to its lifetime within this share (the issue's 5%).
TOLERANCE = 0.05


def assert_phases_partition_lifetimes(report: autopar.Report) -> None:
    """Per worker: start-up + init + waiting + working + sending is its lifetime, within 5%."""
    assert report.workers
    for worker in report.workers:
        total = sum(worker.phases.values())
        assert set(worker.phases) == {"start_up", "init", "waiting", "working", "sending"}
        assert all(value >= 0 for value in worker.phases.values()), worker
        assert abs(total - worker.lifetime_s) <= TOLERANCE * worker.lifetime_s, worker
        assert worker.lifetime_s <= report.wall_s * (1 + TOLERANCE)
        spans = sorted(worker.spans, key=lambda s: s.began_s)
        for earlier, later in itertools.pairwise(spans):
            assert earlier.sent_s <= later.began_s + 1e-6, "a worker runs one chunk at a time"


def covered(report: autopar.Report) -> list[int]:
    """Every input position some worker ran, once per run."""
    return sorted(i for w in report.workers for s in w.spans for i in range(s.start, s.start + s.items))


def test_report_phases_and_counts_add_up(strategy: str) -> None:
    """Under each strategy, every worker's phases add up to its lifetime, and item counts to the input."""
    results = autopar.map(spin, range(ITEMS), strategy=strategy, workers=2, report=True)
    assert results == list(range(ITEMS))
    report = autopar.last_report()
    assert report is not None
    assert report.call == "map"
    assert report.strategy == strategy
    assert report.items == ITEMS
    assert_phases_partition_lifetimes(report)
    assert sum(w.items for w in report.workers) == ITEMS
    assert covered(report) == list(range(ITEMS))
    names = [w.name for w in report.workers]
    assert names == (["caller"] if strategy == "serial" else ["worker 0", "worker 1"])
    assert sum(w.chunks for w in report.workers) == sum(len(w.spans) for w in report.workers)
    if strategy in PROCESS_STRATEGIES:
        assert all(w.bytes_in > 0 and w.bytes_out > 0 for w in report.workers)
    assert len(report.slowest) == 5
    assert all(0 <= s.index < ITEMS and s.seconds >= 0.0004 for s in report.slowest)
    assert 0 < report.efficiency <= 1.0 + TOLERANCE


@pytest.mark.parametrize("process_strategy", PROCESS_STRATEGIES)
def test_report_names_the_crashed_item(process_strategy: str) -> None:
    """A worker killed mid-item: the report lists the crash with the item's index, and a failed chunk holds it."""
    with pytest.raises(autopar.WorkerCrashedError):
        autopar.map(exit_on_3, range(12), strategy=process_strategy, workers=2, chunksize=3, report=True)
    report = autopar.last_report()
    assert report is not None
    assert [c.index for c in report.crashes] == [3]
    assert "WorkerCrashedError" in (report.error or "")
    failed = [s for w in report.workers for s in w.spans if s.failed]
    assert any(s.start <= 3 < s.start + s.items for s in failed)
    assert_phases_partition_lifetimes(report)
    assert "crash item 3" in str(report)


def test_report_lists_crash_and_retry_of_an_item(tmp_path: Path) -> None:
    """With retries, the crashed item appears as a crash and a retry, and ran twice in the counts."""
    items = [(str(tmp_path), x) for x in range(8)]
    results = autopar.map(crash_first_attempt_on_3, items, strategy="fork", workers=2, retries=1, report=True)
    assert results == [x * x for x in range(8)]
    report = autopar.last_report()
    assert report is not None
    assert [c.index for c in report.crashes] == [3]
    assert [r.index for r in report.retries] == [3]
    assert sum(w.items for w in report.workers) == len(items) + 1
    assert covered(report).count(3) == 2
    assert_phases_partition_lifetimes(report)


def test_report_lists_a_crash_and_a_timeout_returned_as_results(tmp_path: Path) -> None:
    """errors="return": a crash and an item timeout are listed with their items, and every item is counted once."""
    items = [(str(tmp_path), x) for x in range(8)]
    results = autopar.map(sleep_on_3, items, strategy="fork", workers=2, item_timeout=0.5, errors="return", report=True)
    assert isinstance(results[3], TimeoutError)
    report = autopar.last_report()
    assert report is not None
    assert [t.index for t in report.timeouts] == [3]
    assert sum(w.items for w in report.workers) == len(items)
    assert_phases_partition_lifetimes(report)
    autopar.map(exit_on_3, range(8), strategy="fork", workers=2, errors="return", retries=0, report=True)
    report = autopar.last_report()
    assert report is not None
    assert [c.index for c in report.crashes] == [3]
    assert covered(report) == list(range(8))
    assert_phases_partition_lifetimes(report)


def test_report_of_a_failing_serial_call_names_the_item() -> None:
    """An item's exception that ends a call run in the caller is in the report, with its index."""
    with pytest.raises(ValueError, match="bad item 3"):
        autopar.map(fail_on_3, range(10), strategy="serial", report=True)
    report = autopar.last_report()
    assert report is not None
    assert [(i.kind, i.index) for i in report.incidents] == [("error", 3)]
    assert "ValueError" in (report.error or "")


def test_report_of_an_auto_call_has_calibration_and_prediction() -> None:
    """Under auto, the caller's row holds the calibration items, and the prediction is compared with the wall."""
    autopar.map(spin, range(400), report=True)
    report = autopar.last_report()
    assert report is not None
    assert report.calibration_items > 0
    assert report.calibration_s > 0
    assert report.predicted_s is not None
    caller = report.workers[0]
    assert caller.name == "caller"
    assert any(s.calibration for s in caller.spans)
    assert sum(w.items for w in report.workers) == 400
    assert_phases_partition_lifetimes(report)
    assert "predicted" in str(report)
    assert report.reasons == report.decision.reasons  # type: ignore[union-attr]


def nap(x: int) -> int:
    """Wait 4 ms: work that auto sends to threads, after a first call's workers ran its first item."""
    time.sleep(0.004)
    return x


def test_report_keeps_a_first_calls_unused_workers_apart() -> None:
    """The workers that ran the first items while the caller measured, and the threads the decision chose,
    are separate rows, each adding up to its own lifetime (both are numbered from 0)."""
    assert autopar.map(nap, range(120), report=True) == list(range(120))
    report = autopar.last_report()
    assert report is not None
    assert report.decision is not None
    assert sum(w.items for w in report.workers) == 120
    assert_phases_partition_lifetimes(report)
    if report.decision.strategy == "threads" and any(w.name.startswith("early ") for w in report.workers):
        assert len({w.name for w in report.workers}) == len(report.workers)


def test_last_report_is_per_thread_and_kept_only_when_asked() -> None:
    """last_report() is None in a thread before a recorded call; a call without report=True leaves it alone."""
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(autopar.last_report()))
    thread.start()
    thread.join()
    assert seen == [None]
    autopar.map(square, range(5), strategy="serial", report=True)
    first = autopar.last_report()
    autopar.map(square, range(5), strategy="serial")
    assert autopar.last_report() is first


def test_config_report_records_every_call_in_the_block() -> None:
    """config(report=True) records calls made inside it."""
    with autopar.config(report=True):
        autopar.map(square, range(7), strategy="threads", workers=2)
    report = autopar.last_report()
    assert report is not None
    assert report.items == 7


@pytest.mark.parametrize("value", ["yes", 1])
def test_bad_report_value_is_named(value: object) -> None:
    """report= takes True or False; anything else is a TypeError naming the value."""
    with pytest.raises(TypeError, match=rf"report must be True or False, not {value!r}"):
        autopar.map(square, range(3), report=value)


def test_imap_report_is_complete_when_the_iterator_is_closed() -> None:
    """A report of imap is made when its iterator is exhausted, or closed early."""
    results = autopar.imap(spin, range(200), strategy="fork", workers=2, chunksize=5, report=True)
    assert next(results) == 0
    results.close()  # type: ignore[attr-defined]
    report = autopar.last_report()
    assert report is not None
    assert report.call == "imap"
    assert report.error is None
    assert_phases_partition_lifetimes(report)
    assert list(autopar.imap(square, range(9), strategy="threads", workers=2, report=True)) == [x * x for x in range(9)]
    assert autopar.last_report().items == 9  # type: ignore[union-attr]


def test_executor_map_is_recorded() -> None:
    """Executor.map (auto) records its call like imap."""
    with autopar.Executor(report=True) as executor:
        assert list(executor.map(square, range(30))) == [x * x for x in range(30)]
    report = autopar.last_report()
    assert report is not None
    assert report.items == 30


def test_amap_report_reaches_the_awaiting_thread() -> None:
    """amap runs the call in a helper thread; its report is the event loop thread's last_report() once awaited."""

    async def run() -> autopar.Report | None:
        await autopar.amap(square, range(20), strategy="threads", workers=2, report=True)
        return autopar.last_report()

    report = asyncio.run(run())
    assert report is not None
    assert report.items == 20
    assert autopar.last_report() is report


def test_report_renders_a_table_and_json() -> None:
    """str(report) is a table with mpire's efficiency warning when workers idle; to_dict() is JSON-ready."""
    autopar.map(sleep_for, [0.2, 0.01, 0.01, 0.01], strategy="threads", workers=2, chunksize=1, report=True)
    report = autopar.last_report()
    assert report is not None
    text = str(report)
    assert "worker 1" in text
    assert "working" in text
    assert report.efficiency < 0.8
    assert "Efficiency warning: working ratio is < 80%" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["strategy"] == "threads"
    assert data["decision"]["workers"] == 2
    assert set(data["workers"][0]["phases"]) == {"start_up", "init", "waiting", "working", "sending"}
    assert data["efficiency"] == pytest.approx(report.efficiency)
    assert next(s["index"] for s in data["slowest"]) == 0


#: Run in a child interpreter: matplotlib imports NumPy, whose BLAS threads would make fork unsafe for later tests.
_PLOT_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import autopar, helpers

if __name__ == "__main__":
    autopar.map(helpers.spin, range(300), strategy="fork", workers=2, report=True)
    report = autopar.last_report()
    png = report.plot({png!r})
    report.plot({svg!r})
    print(json.dumps({{
        "labels": [label.get_text() for label in png.axes[0].get_yticklabels()],
        "workers": [w.name for w in report.workers],
    }}))
"""


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file, read from its header (the signature, then the IHDR chunk)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@needs_matplotlib
def test_timeline_of_a_real_run_has_one_row_per_worker(tmp_path: Path) -> None:
    """plot() of a real fork run writes a valid PNG and SVG, with one labelled row per worker."""
    png, svg = tmp_path / "timeline.png", tmp_path / "timeline.svg"
    script = tmp_path / "plot_run.py"
    script.write_text(_PLOT_SCRIPT.format(tests=str(Path(__file__).parent), png=str(png), svg=str(svg)))
    done = run_python([str(script)], tmp_path)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout.splitlines()[-1])
    assert rows["labels"] == rows["workers"] == ["worker 0", "worker 1"]
    width, height = png_size(png)
    assert width > 400
    assert height > 200
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    texts = "".join(root.itertext())
    assert "worker 0" in texts
    assert "worker 1" in texts


@needs_matplotlib
def test_cli_explain_run_plot_writes_the_timeline(tmp_path: Path) -> None:
    """`autopar explain MODULE:FUNCTION ITEMS --run --plot PATH` runs the call, prints the report and writes the picture."""
    path = tmp_path / "timeline.png"
    args = ["-m", "autopar", "explain", "math:sqrt", "range(500)", "--strategy", "fork", "--run", "--plot", str(path)]
    done = run_python(args, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "autopar report: map of 500 item(s) with fork" in done.stdout
    assert png_size(path)[0] > 400


def test_cli_plot_names_a_bad_suffix(capsys: pytest.CaptureFixture[str]) -> None:
    """--plot takes a .png, .svg or .pdf path; anything else is a usage error naming it."""
    assert main(["explain", "math:sqrt", "range(5)", "--plot", "timeline.gif"]) == 2
    assert "'timeline.gif'" in capsys.readouterr().err


def test_calibration_in_the_caller_around_items_early_workers_took_is_recorded_at_its_positions() -> None:
    """The caller ran positions 1, 4 and 5 (workers took 0, 2 and 3): its row has two spans, its time shared."""
    from autopar._recorder import Recorder

    recorder = Recorder("map")
    recorder.calibrated(10.0, 10.3, 3, [1, 4, 5])
    report = recorder.finish(None, 6)
    caller = next(w for w in report.workers if w.name == "caller")
    assert [(s.start, s.items) for s in caller.spans] == [(1, 1), (4, 2)]
    assert caller.spans[0].ended_s == pytest.approx(caller.spans[1].began_s)
    assert caller.working_s == pytest.approx(0.3)
