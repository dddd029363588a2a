"""Reading the log: filters, the label join, incremental cursors, reading while writing."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kyklos.data.predlog import (
    LabelLogWriter,
    LogCursor,
    PredictionLog,
    PredictionLogWriter,
)

from .conftest import FEATURES, T0


def _minute(i: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=i)


@pytest.fixture
def filled(root: Path, make_batch: Callable[..., Any]) -> PredictionLog:
    """60 requests, one a minute from T0, versions 1/2 alternating; segments of 20 rows."""
    with PredictionLogWriter(root, features=FEATURES, segment_rows=20) as writer:
        for i in range(60):
            writer.append(make_batch(f"r{i}", version=1 + i % 2, ts=_minute(i))).wait()
    return PredictionLog(root)


@pytest.mark.parametrize(
    ("since", "until", "version", "expected"),
    [
        pytest.param(None, None, None, list(range(60)), id="all"),
        pytest.param(_minute(10), _minute(15), None, [10, 11, 12, 13, 14], id="window"),
        pytest.param(_minute(55), None, 2, [55, 57, 59], id="since-and-version"),
        pytest.param(None, _minute(3), None, [0, 1, 2], id="until-excludes-its-end"),
        pytest.param(_minute(100), None, None, [], id="after-everything"),
        pytest.param(
            (T0 + dt.timedelta(minutes=30)).replace(tzinfo=None), _minute(32), 1, [30], id="naive"
        ),
    ],
)
def test_scan_filters_by_time_and_version(
    filled: PredictionLog,
    since: dt.datetime | None,
    until: dt.datetime | None,
    version: int | None,
    expected: list[int],
) -> None:
    table = filled.scan(since=since, until=until, version=version)
    assert table.column("request_id").to_pylist() == [f"r{i}" for i in expected]


def test_segments_outside_the_window_are_not_read(filled: PredictionLog) -> None:
    assert len(filled.segments()) == 3
    assert [s.rows for s in filled.segments()] == [20, 20, 20]
    snap = filled.snapshot(since=_minute(45), until=_minute(50))
    assert [s.first_ts for s in snap.segments] == [_minute(40)]
    assert json.loads(json.dumps(filled.segments()[0].to_dict()))["rows"] == 20


def test_scan_projects_columns_and_fills_unknown_features(filled: PredictionLog) -> None:
    table = filled.scan(columns=["request_id", "f.distance", "f.never_logged"], version=1)
    assert table.column_names == ["request_id", "f.distance", "f.never_logged"]
    assert table.num_rows == 30 and table.column("f.never_logged").null_count == 30


def test_predictions_join_their_latest_label(root: Path, make_batch: Callable[..., Any]) -> None:
    with PredictionLogWriter(root, features=FEATURES) as writer:
        writer.append(make_batch("a", rows=2, ts=_minute(0))).wait()
        writer.append(make_batch("b", ts=_minute(1))).wait()
        writer.append(make_batch("c", ts=_minute(2))).wait()
    with LabelLogWriter(root) as labels:
        labels.append(
            {
                "request_id": ["a", "a", "b", "ghost", "a"],
                "row": [0, 1, 0, 0, 0],
                "label": [1.0, 0.0, 1.0, 1.0, 0.0],
                "ts": [_minute(10), _minute(10), _minute(11), _minute(12), _minute(13)],
            }
        ).wait()
        labels.append({"request_id": "b", "label": 0.0, "ts": _minute(5)}).wait()  # older
    joined = PredictionLog(root).joined()
    assert joined.num_rows == 4  # labels never add or drop predictions
    got = [(r["request_id"], r["row"], r["label"]) for r in joined.to_pylist()]
    assert got == [("a", 0, 0.0), ("a", 1, 0.0), ("b", 0, 1.0), ("c", 0, None)]
    assert joined.column("label_ts").to_pylist()[0] == _minute(13)
    narrow = PredictionLog(root).joined(columns=["ts", "prediction"], version=1)
    assert narrow.column_names == ["ts", "prediction", "label", "label_ts"]


def test_scan_since_returns_each_record_once_across_sealing(
    root: Path, make_batch: Callable[..., Any]
) -> None:
    log = PredictionLog(root)
    writer = PredictionLogWriter(root, features=FEATURES, segment_rows=10)
    seen: list[str] = []
    cursor = None
    for step in range(12):
        for j in range(step % 4):  # 0-3 requests of 3 rows between reads
            writer.append(make_batch(f"s{step}-{j}", rows=3)).wait()
        table, cursor = log.scan_since(cursor, columns=["request_id", "row"])
        cursor = LogCursor.from_dict(json.loads(json.dumps(cursor.to_dict())))  # persisted
        seen += [f"{r['request_id']}/{r['row']}" for r in table.to_pylist()]
    writer.close()  # seals the last WAL: its records are not returned again
    table, cursor = log.scan_since(cursor)
    assert table.num_rows == 0
    everything = log.scan()
    assert len(seen) == everything.num_rows == 3 * sum(step % 4 for step in range(12))
    assert Counter(seen).most_common(1)[0][1] == 1
    assert cursor.get(writer.writer_id) == everything.num_rows - 1


def test_reading_while_writing_and_sealing_sees_each_record_once(
    root: Path, make_batch: Callable[..., Any]
) -> None:
    writer = PredictionLogWriter(root, features=FEATURES, segment_rows=30, commit_interval_ms=0)
    stop = threading.Event()
    problems: list[str] = []
    scans = 0

    def read() -> None:
        nonlocal scans
        log = PredictionLog(root)
        while not stop.is_set():
            seqs = log.scan(columns=["seq"]).column("seq").to_pylist()
            scans += 1
            if sorted(seqs) != list(range(len(seqs))):  # a prefix: no gap, nothing twice
                problems.append(f"{len(seqs)} rows, {len(set(seqs))} distinct")

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    for i in range(400):
        writer.append(make_batch(f"w{i}")).wait()
    stop.set()
    for thread in readers:
        thread.join()
    writer.close()
    assert not problems, problems[:5]
    assert scans > 0
    assert len(PredictionLog(root).segments()) >= 13


def test_a_feature_logged_as_number_and_as_text_reads_as_text(root: Path) -> None:
    base = {"model": "m", "version": 1, "prediction": 1.0}
    with PredictionLogWriter(root / "a", features=[("x", "numeric")]) as writer:
        writer.append({**base, "request_id": "n", "f.x": 2.5}).wait()
    with PredictionLogWriter(root / "b", features=[("x", "categorical")]) as writer:
        writer.append({**base, "request_id": "t", "f.x": "high"}).wait()
    (root / "predictions").mkdir()
    for sub in ("a", "b"):  # gather both folders' segments into one log
        for segment in (root / sub / "predictions").glob("seg-*"):
            segment.rename(root / "predictions" / segment.name)
    table = PredictionLog(root).scan()
    assert table.schema.field("f.x").type == pa.string()
    assert sorted(table.column("f.x").to_pylist()) == ["2.5", "high"]


def test_an_empty_log_reads_as_an_empty_table(root: Path) -> None:
    log = PredictionLog(root)
    assert log.scan().num_rows == 0
    assert "request_id" in log.scan().column_names
    assert log.labels().num_rows == 0
    assert log.joined().column_names[-2:] == ["label", "label_ts"]
    assert log.segments() == []
    table, cursor = log.scan_since(None)
    assert table.num_rows == 0 and cursor.positions == {}
    assert pc.sum(log.scan().column("latency_ms")).as_py() is None


def test_lookup_finds_logged_request_ids(filled: PredictionLog) -> None:
    found = filled.lookup(["r3", "r59", "nobody", "r3"])
    assert found.column_names == ["request_id", "row", "ts", "version", "arm"]
    assert found.column("request_id").to_pylist() == ["r3", "r59"]
    assert filled.lookup(["r3", "r59"], since=_minute(10)).column("request_id").to_pylist() == [
        "r59"
    ]
    assert filled.lookup([]).num_rows == 0
