"""Windows by rows and by time, tumbling and sliding, on hand-made tables."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from kyklos.errors import MonitorError
from kyklos.monitoring.window import plan_windows, window_size, windows

T0 = dt.datetime(2013, 6, 1, tzinfo=dt.UTC)
MIN = 60_000_000  # a minute in µs
EPOCH_T0 = int((T0 - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds()) * 1_000_000


def _rows(n: int) -> pa.Table:
    return pa.table({"i": list(range(n))})


def _timed(minutes: list[float]) -> pa.Table:
    ts = [T0 + dt.timedelta(minutes=m) for m in minutes]
    return pa.table({"i": list(range(len(ts))), "ts": pa.array(ts, pa.timestamp("us", tz="UTC"))})


@pytest.mark.parametrize(
    ("n", "size", "slide", "expected", "resume"),
    [
        (10, 4, None, [(0, 4), (4, 8)], 8),
        (8, 4, None, [(0, 4), (4, 8)], 8),
        (3, 4, None, [], 0),
        (10, 4, 2, [(0, 4), (2, 6), (4, 8), (6, 10)], 8),
        (9, 4, 3, [(0, 4), (3, 7)], 6),
        (5, 1, None, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)], 5),
    ],
    ids=["tumbling-remainder", "tumbling-exact", "too-few", "sliding", "sliding-remainder", "one"],
)
def test_row_windows(
    n: int, size: int, slide: int | None, expected: list[tuple[int, int]], resume: int
) -> None:
    table = _rows(n)
    cut = list(windows(table, rows=size, slide=slide))
    assert [(part.column("i")[0].as_py(), part.column("i")[-1].as_py() + 1) for _, part in cut] == (
        expected
    )
    assert all(spec.n_rows == size for spec, _ in cut)
    plan = plan_windows(n, rows=size, slide=slide)
    assert plan.resume == resume
    assert plan.remainder(table).column("i").to_pylist() == list(range(resume, n))


def test_row_windows_label_from_first_row_and_times() -> None:
    table = _timed([0, 1, 2, 3, 4])
    (first, _), (second, part) = windows(table, rows=2, first_row=1000, model_version=3)
    assert (first.label, second.label) == ("rows 1000–1001", "rows 1002–1003")
    assert second.model_version == 3
    assert (second.start, second.end) == (
        T0 + dt.timedelta(minutes=2),
        T0 + dt.timedelta(minutes=3),
    )
    assert part.column("i").to_pylist() == [2, 3]


def test_tumbling_time_windows_keep_the_incomplete_one() -> None:
    table = _timed([0, 5, 59.9, 60, 61, 125, 130])
    cut = list(windows(table, duration="1h"))
    assert [part.column("i").to_pylist() for _, part in cut] == [[0, 1, 2], [3, 4]]
    assert [spec.label for spec, _ in cut] == [
        "2013-06-01 00:00 → 01:00",
        "2013-06-01 01:00 → 02:00",
    ]
    assert cut[0][0].end == T0 + dt.timedelta(hours=1)
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    plan = plan_windows(ts, duration="1h")
    assert plan.resume == 5  # the rows of 02:00–03:00 wait: the watermark is 02:10
    assert plan.resume_us == EPOCH_T0 + 120 * MIN


def test_time_windows_are_aligned_to_the_epoch_and_skip_empty_ones() -> None:
    table = _timed([7, 8, 190, 191, 300])  # nothing between 01:00 and 03:00
    cut = list(windows(table, duration="1h"))
    assert [spec.start for spec, _ in cut] == [T0, T0 + dt.timedelta(hours=3)]
    assert [spec.n_rows for spec, _ in cut] == [2, 2]


def test_sliding_time_windows_overlap() -> None:
    table = _timed([0, 30, 60, 90, 120, 150, 181])
    cut = list(windows(table, duration="1h", slide="30m"))
    assert [part.column("i").to_pylist() for _, part in cut] == [
        [0, 1],
        [1, 2],
        [2, 3],
        [3, 4],
        [4, 5],
    ]
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    plan = plan_windows(ts, duration="1h", slide="30m")
    assert plan.resume_us == EPOCH_T0 + 150 * MIN  # 02:30–03:30 is not complete at 03:01
    assert plan.resume == 5


def test_time_windows_from_a_start_and_up_to_a_watermark() -> None:
    ts = np.array([EPOCH_T0 + m * MIN for m in (61, 62, 130)], dtype=np.int64)
    plan = plan_windows(ts, duration="1h", start=T0 + dt.timedelta(hours=1))
    assert [(w.lo, w.hi) for w in plan.windows] == [(0, 2)]
    later = plan_windows(
        ts, duration="1h", start=EPOCH_T0 + 60 * MIN, watermark=EPOCH_T0 + 200 * MIN
    )
    assert [(w.lo, w.hi) for w in later.windows] == [(0, 2), (2, 3)]
    assert later.resume == 3 and later.resume_us == EPOCH_T0 + 180 * MIN


def test_unsorted_table_is_sorted_for_time_windows() -> None:
    table = _timed([61, 1, 2, 70, 130])
    cut = list(windows(table, duration="1h"))
    assert [part.column("i").to_pylist() for _, part in cut] == [[1, 2], [0, 3]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "neither rows nor duration"),
        ({"rows": 0}, "monitor.window.rows"),
        ({"rows": 10, "slide": 20}, "larger than the window"),
        ({"rows": 10, "slide": "5m"}, "whole number of rows"),
        ({"duration": "1h", "slide": "2h"}, "larger than the window"),
        ({"duration": "soon"}, "not a duration"),
        ({"duration": 0}, "positive duration"),
    ],
    ids=["nothing", "zero-rows", "row-gap", "row-slide-duration", "time-gap", "bad", "zero"],
)
def test_bad_window_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(MonitorError, match=message):
        window_size(**kwargs)  # type: ignore[arg-type]


def test_duration_wins_over_the_default_rows() -> None:
    assert window_size(rows=1000, duration="10m") == ("time", 600_000_000, 600_000_000)


def test_time_windows_need_a_time_column() -> None:
    with pytest.raises(MonitorError, match="time column 'ts'"):
        list(windows(_rows(3), duration="1h"))
    nulls = pa.table({"ts": pa.array([None, T0], pa.timestamp("us", tz="UTC"))})
    with pytest.raises(MonitorError, match="missing value"):
        list(windows(nulls, duration="1h"))
