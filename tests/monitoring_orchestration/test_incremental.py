"""`monitor_run` over a real prediction log: incremental, per version, once per window, crash-safe."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import select

from kyklos.api.monitor import monitor_run, monitor_show
from kyklos.config import load_project
from kyklos.data.predlog import PredictionLog, PredictionLogWriter
from kyklos.errors import MonitorError
from kyklos.monitoring.store import MonitorStore, StoredResult
from kyklos.store import open_db
from kyklos.store.schema import events

from .conftest import MODEL, LogWriter, months, set_window

BASE = 1_370_044_800_000_000  # 2013-06-01 00:00 UTC in µs
SECOND = 1_000_000


def _ts(first: int, n: int, step: int = 1) -> np.ndarray:
    """``n`` times, ``step`` seconds apart, from second ``first`` after BASE."""
    return BASE + (first + np.arange(n, dtype=np.int64) * step) * SECOND


def _micros(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def _label_start(stored: StoredResult) -> int:
    return int(stored.result.window.label.split()[1].split("–")[0])


def _assert_windows_partition_the_log(project: Path, version: int, size: int) -> None:
    """The stored windows of ``version`` are consecutive, disjoint ``size``-row slices of the
    version's rows in log order, each checked once."""
    rows = PredictionLog(project / ".kyklos" / "logs").scan(version=version)
    times = rows.column("ts").cast(pa.int64()).to_numpy()
    stored = sorted(monitor_show(project, limit=None, version=version), key=_label_start)
    assert [_label_start(s) for s in stored] == [i * size for i in range(len(stored))]
    for s in stored:
        lo = _label_start(s)
        window = s.result.window
        assert window.n_rows == size and window.model_version == version
        span = times[lo : lo + size]
        assert len(span) == size
        assert window.start is not None and window.end is not None
        assert (_micros(window.start), _micros(window.end)) == (span.min(), span.max())


def test_run_checks_each_new_window_once_per_version(
    project: Path, flights: pa.Table, write_log: LogWriter, write_labels: Callable[..., None]
) -> None:
    june = months(flights, 6)
    first = june.slice(0, 2500)
    ids = write_log(first, version=1, ts=_ts(0, 2500))
    write_labels(ids[:10], first)  # the first 1,000 rows get their labels

    run = monitor_run(project)
    assert [(r.window.model_version, r.window.label) for r in run] == [
        (1, "rows 0–999"),
        (1, "rows 1000–1999"),
    ]
    assert run.pending == {1: 500} and run.late == {} and run.skipped == {}
    assert run[0].dataset_drift  # June flights against a January model
    assert run[0].performance is not None and run[0].performance.n_labelled == 1000
    assert run[1].performance is None  # no label yet
    assert run[0].prediction is not None
    assert [Path(p).name for p in run.reports] == [
        "monitor-000001-v1.html",
        "monitor-000002-v1.html",
    ]
    assert "rows 0–999" in Path(run.reports[0]).read_text()

    write_log(june.slice(2500, 1700), version=1, ts=_ts(2500, 1700), prefix="b")
    write_log(june.slice(4200, 1200), version=2, ts=_ts(4200, 1200), prefix="c")
    again = monitor_run(project)
    assert [(r.window.model_version, r.window.label) for r in again] == [
        (1, "rows 2000–2999"),
        (1, "rows 3000–3999"),
        (2, "rows 0–999"),
    ]
    assert again.pending == {1: 200, 2: 200}
    assert again.stored[-1].result.n_reference > 0
    assert len(monitor_run(project)) == 0  # nothing new: nothing checked twice

    _assert_windows_partition_the_log(project, 1, 1000)
    _assert_windows_partition_the_log(project, 2, 1000)
    assert [s.id for s in monitor_show(project, limit=None)] == [5, 4, 3, 2, 1]


def test_rows_of_interleaved_writers_are_windowed_in_log_order(
    project: Path, flights: pa.Table, write_log: LogWriter
) -> None:
    rows = months(flights, 1).slice(6000, 3800)
    write_log(rows.slice(0, 1200), ts=_ts(0, 1200, step=2), prefix="even")
    write_log(rows.slice(1200, 1200), ts=_ts(1, 1200, step=2), prefix="odd")
    assert [r.window.n_rows for r in monitor_run(project, reports=False)] == [1000, 1000]
    write_log(rows.slice(2400, 700), ts=_ts(2400, 700, step=2), prefix="even2")
    write_log(rows.slice(3100, 700), ts=_ts(2401, 700, step=2), prefix="odd2")
    second = monitor_run(project, reports=False)
    assert [r.window.label for r in second] == ["rows 2000–2999"]
    assert second.pending == {1: 800} and second.late == {}
    _assert_windows_partition_the_log(project, 1, 1000)


def test_rows_read_from_a_live_wal_are_not_read_again_from_its_segment(
    project: Path, flights: pa.Table, write_log: LogWriter, open_writer: PredictionLogWriter
) -> None:
    rows = months(flights, 1).slice(6000, 2600)
    write_log(rows.slice(0, 1500), ts=_ts(0, 1500), writer=open_writer)
    log = PredictionLog(project / ".kyklos" / "logs")
    assert [s.sealed for s in log.segments()] == [False]
    assert [r.window.label for r in monitor_run(project, reports=False)] == ["rows 0–999"]
    write_log(rows.slice(1500, 600), ts=_ts(1500, 600), writer=open_writer)
    open_writer.close()  # the WAL becomes a sealed segment; its records keep their seq
    assert [s.sealed for s in log.segments()] == [True]
    write_log(rows.slice(2100, 500), ts=_ts(2100, 500), prefix="another-writer")
    run = monitor_run(project, reports=False)
    assert [r.window.label for r in run] == ["rows 1000–1999"]
    assert run.pending == {1: 600} and run.late == {}
    _assert_windows_partition_the_log(project, 1, 1000)


def test_each_version_is_checked_against_its_own_profile(
    project: Path, flights: pa.Table, write_log: LogWriter
) -> None:
    from kyklos.monitoring.monitor import Monitor
    from kyklos.registry import ModelRegistry

    rows = months(flights, 1).slice(6000, 1000)
    write_log(rows, version=1, ts=_ts(0, 1000))
    write_log(rows, version=2, ts=_ts(0, 1000), prefix="v2")
    results = {r.window.model_version: r for r in monitor_run(project)}
    registry = ModelRegistry.for_project(load_project(project))
    log = PredictionLog(project / ".kyklos" / "logs")
    for version in (1, 2):
        profile = registry.get(version).profile
        assert profile is not None
        records = log.scan(version=version)
        expected = Monitor(task="classification").fit(profile).check_log_window(records)
        got = results[version]
        assert got.prediction is not None and expected.prediction is not None
        assert got.prediction.reference == expected.prediction.reference
        assert got.prediction.statistic == pytest.approx(expected.prediction.statistic)
        assert [f.statistic for f in got.features] == pytest.approx(
            [f.statistic for f in expected.features]
        )
    assert results[1].prediction.reference != results[2].prediction.reference  # type: ignore[union-attr]


def test_rows_that_arrive_after_their_window_are_counted_late(
    project: Path, flights: pa.Table, write_log: LogWriter
) -> None:
    rows = months(flights, 1).slice(6000, 1500)
    write_log(rows.slice(0, 1200), version=1, ts=_ts(100, 1200))
    assert len(monitor_run(project)) == 1  # rows 0–999; 200 wait
    write_log(rows.slice(1200, 300), version=1, ts=_ts(0, 300), prefix="late")  # before it all
    run = monitor_run(project)
    assert len(run) == 0
    assert run.late == {1: 300}
    assert run.pending == {1: 200}
    assert monitor_run(project).late == {}  # counted once
    state = MonitorStore(
        open_db(load_project(project).db_url), project=MODEL, model_name=MODEL
    ).state()
    assert state is not None and state["versions"]["1"]["late"] == 300


@pytest.mark.parametrize(
    ("window", "expected_first", "expected_second"),
    [
        (
            "{duration: 1h}",
            [("2013-06-01 00:00 → 01:00", 360), ("2013-06-01 01:00 → 02:00", 360)],
            [("2013-06-01 02:00 → 03:00", 360), ("2013-06-01 03:00 → 04:00", 360)],
        ),
        (
            "{duration: 2h, slide: 1h}",
            [("2013-06-01 00:00 → 02:00", 720)],
            [("2013-06-01 01:00 → 03:00", 720), ("2013-06-01 02:00 → 04:00", 720)],
        ),
    ],
    ids=["tumbling", "sliding"],
)
def test_time_windows_over_the_log(
    project: Path,
    flights: pa.Table,
    write_log: LogWriter,
    window: str,
    expected_first: list[tuple[str, int]],
    expected_second: list[tuple[str, int]],
) -> None:
    set_window(project, window)
    rows = months(flights, 6).slice(0, 1500)
    write_log(rows.slice(0, 1000), version=1, ts=_ts(0, 1000, step=10))  # up to 02:46:30
    first = monitor_run(project, reports=False)
    assert [(r.window.label, r.window.n_rows) for r in first] == expected_first
    write_log(rows.slice(1000, 500), version=1, ts=_ts(10_000, 500, step=10), prefix="b")
    second = monitor_run(project, reports=False)
    assert [(r.window.label, r.window.n_rows) for r in second] == expected_second
    assert first.reports == () and not (project / ".kyklos" / "reports").exists()


def test_only_the_chosen_version_then_the_others(
    project: Path, flights: pa.Table, write_log: LogWriter
) -> None:
    rows = months(flights, 1).slice(6000, 1000)
    write_log(rows, version=1, ts=_ts(0, 1000))
    write_log(rows, version=2, ts=_ts(0, 1000), prefix="v2")
    write_log(rows, version=7, ts=_ts(0, 1000), prefix="v7")  # not in this registry
    champion = monitor_run(project, version="champion", reports=False)
    assert [r.window.model_version for r in champion] == [1]
    assert champion.pending == {2: 1000, 7: 1000}
    rest = monitor_run(project, reports=False)
    assert [r.window.model_version for r in rest] == [2]
    assert "no version 7" in rest.skipped[7]
    assert rest.pending[7] == 1000


def test_alert_rules_fire_on_stored_windows(
    project: Path, flights: pa.Table, write_log: LogWriter
) -> None:
    path = project / "kyklos.yaml"
    path.write_text(
        path.read_text()
        + "\nmonitor:\n  alerts:\n    rules:\n      - {name: drifting, when: 'share_drifted > 0.1'}\n"
    )
    write_log(months(flights, 7).slice(0, 1000), version=1, ts=_ts(0, 1000))
    run = monitor_run(project, reports=False)
    assert run[0].share_drifted > 0.1
    db = open_db(load_project(project).db_url)
    with db.read() as conn:
        fired = conn.execute(
            select(events.c.subject).where(events.c.kind == "alert.fired")
        ).scalars()
        assert list(fired) == [f"{MODEL} alert drifting"]


def test_a_concurrent_run_wins_and_nothing_is_stored_twice(
    project: Path, flights: pa.Table, write_log: LogWriter
) -> None:
    from kyklos.monitoring.incremental import run_incremental

    write_log(months(flights, 1).slice(6000, 3000), version=1, ts=_ts(0, 3000))
    loaded = load_project(project)
    store = MonitorStore(open_db(loaded.db_url), project=MODEL, model_name=MODEL)
    log = PredictionLog(project / ".kyklos" / "logs")
    other: list[int] = []

    def interfere(stored: StoredResult) -> None:
        if not other:  # after our first window: another run does the rest
            other.append(len(monitor_run(project, reports=False)))

    from kyklos.monitoring.monitor import Monitor
    from kyklos.registry import ModelRegistry

    profile = ModelRegistry.for_project(loaded).get(1).profile
    assert profile is not None
    with pytest.raises(MonitorError, match="moved the cursor"):
        run_incremental(
            log,
            store,
            window=loaded.config.monitor.window,
            monitors=lambda _v: Monitor().fit(profile),
            after_commit=interfere,
        )
    assert other == [2]
    _assert_windows_partition_the_log(project, 1, 1000)
    assert len(monitor_show(project, limit=None)) == 3


CRASH = textwrap.dedent(
    """
    import os, sys
    from kyklos.monitoring import store

    calls = []
    original = store.MonitorStore._write_state

    def crash(self, conn, state, *, exists):
        calls.append(1)
        if len(calls) == int(sys.argv[2]):
            os._exit(3)  # the process dies inside the transaction, after the result insert
        return original(self, conn, state, exists=exists)

    store.MonitorStore._write_state = crash
    from kyklos.api.monitor import monitor_run
    monitor_run(sys.argv[1], reports=False)
    """
)


def test_a_crash_inside_a_window_transaction_loses_and_repeats_nothing(
    project: Path, flights: pa.Table, write_log: LogWriter
) -> None:
    write_log(months(flights, 1).slice(6000, 3500), version=1, ts=_ts(0, 3500))
    # call 1 records the cursor, calls 2.. store windows: die while storing the second window
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(project), "3"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=120,
    )
    assert crashed.returncode == 3, crashed.stderr
    after_crash = monitor_show(project, limit=None)
    assert [s.result.window.label for s in after_crash] == ["rows 0–999"]
    resumed = monitor_run(project, reports=False)
    assert [r.window.label for r in resumed] == ["rows 1000–1999", "rows 2000–2999"]
    _assert_windows_partition_the_log(project, 1, 1000)
    assert len(monitor_show(project, limit=None)) == 3
