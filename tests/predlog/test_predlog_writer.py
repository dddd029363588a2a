"""The group-committed writer: round trip, group commit, rolling, torn tails, crash recovery."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kyklos.data.predlog import (
    LabelLogWriter,
    PredictionLog,
    PredictionLogWriter,
    read_wal,
)
from kyklos.data.predlog_frames import frame_rows, iter_frames, read_header
from kyklos.errors import DataError, StoreError

from .conftest import FEATURES, T0

WORKER = Path(__file__).with_name("log_worker.py")


def _wal_frames(root: Path) -> list[int]:
    """The rows of each frame (one per group commit) of the prediction WALs."""
    sizes: list[int] = []
    for wal in sorted((root / "predictions").glob("wal-*.kwal")):
        data = wal.read_bytes()
        header = read_header(data)
        assert header is not None
        schema, at = header
        sizes += [frame_rows(kind, payload, schema) for kind, payload in iter_frames(data, at)]
    return sizes


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_round_trip_keeps_every_column(root: Path, make_batch: Callable[..., Any]) -> None:
    ts = T0 + dt.timedelta(seconds=5)
    with PredictionLogWriter(root, features=FEATURES) as writer:
        writer.append(make_batch("req-1", rows=3, version=7, arm="challenger", ts=ts)).wait()
        writer.append(
            {
                "request_id": "req-2",
                "model": "flights",
                "version": 7,
                "endpoint": "invocations",
                "prediction": 12.5,
                "ts": ts + dt.timedelta(seconds=1),
                "f.distance": 99.0,
            }
        ).wait()
        live = PredictionLog(root).scan()  # from the WAL, before sealing
    table = PredictionLog(root).scan()  # from the sealed segment
    assert live.equals(table)
    assert not list((root / "predictions").glob("wal-*"))
    assert len(list((root / "predictions").glob("seg-*.parquet"))) == 1
    expected = make_batch("req-1", rows=3, version=7)
    rows = table.to_pylist()
    assert [r["request_id"] for r in rows] == ["req-1"] * 3 + ["req-2"]
    assert [r["row"] for r in rows] == [0, 1, 2, 0]
    assert [r["seq"] for r in rows] == [0, 1, 2, 3]
    assert {r["writer"] for r in rows} == {writer.writer_id}
    assert rows[0]["ts"] == ts and rows[3]["ts"] == ts + dt.timedelta(seconds=1)
    assert [r["arm"] for r in rows] == ["challenger"] * 3 + ["champion"]
    assert [r["endpoint"] for r in rows] == ["predict"] * 3 + ["invocations"]
    assert [r["prediction"] for r in rows[:3]] == expected["prediction"].tolist()
    assert [r["score"] for r in rows[:3]] == expected["score"].tolist()
    assert rows[3]["score"] is None and rows[3]["latency_ms"] is None
    assert [r["f.distance"] for r in rows] == [*expected["f.distance"].tolist(), 99.0]
    assert [r["f.carrier"] for r in rows] == [*expected["f.carrier"].tolist(), None]
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("version").type == pa.int32()
    assert table.schema.field("f.carrier").type == pa.string()
    meta = pq.read_metadata(next((root / "predictions").glob("seg-*.parquet"))).metadata
    assert meta[b"kyklos.format"] == b"1" and meta[b"kyklos.rows"] == b"4"


def test_group_commit_merges_concurrent_appends(root: Path, make_batch: Callable[..., Any]) -> None:
    threads, rounds = 32, 40
    barrier = threading.Barrier(threads)
    writer = PredictionLogWriter(root, features=FEATURES, commit_interval_ms=5)

    def work(t: int) -> None:
        for i in range(rounds):
            barrier.wait()
            writer.append(make_batch(f"{t}-{i}", seed=i)).wait()

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    frames = _wal_frames(root)
    stats = writer.stats()
    writer.close()
    rows = threads * rounds
    assert sum(frames) == stats.rows == rows
    assert len(frames) == stats.commits  # one WAL frame (and one fsync) per group commit
    print(f"\n{rows} appends from {threads} threads in {len(frames)} commits")
    assert len(frames) <= rows / 4, f"{len(frames)} commits for {rows} appends: no grouping"
    assert PredictionLog(root).scan().num_rows == rows


def test_async_appends_resolve_on_the_event_loop(
    root: Path, make_batch: Callable[..., Any]
) -> None:
    async def main(writer: PredictionLogWriter) -> None:
        await asyncio.gather(*(writer.append_async(make_batch(f"a-{i}")) for i in range(200)))
        await writer.append(make_batch("last"))

    with PredictionLogWriter(root, features=FEATURES) as writer:
        asyncio.run(main(writer))
        assert writer.stats().rows == 201
        assert writer.stats().pending_rows == 0


def test_wal_rolls_into_segments_by_rows_and_by_age(
    root: Path, make_batch: Callable[..., Any]
) -> None:
    writer = PredictionLogWriter(root, features=FEATURES, segment_rows=10, segment_seconds=1.5)
    folder = root / "predictions"

    def files(segments: int, wals: int) -> Callable[[], bool]:
        return lambda: (
            len(list(folder.glob("seg-*"))) == segments and len(list(folder.glob("wal-*"))) == wals
        )

    for i in range(7):  # 21 rows: a full WAL of 12 (4 batches of 3), then 9 rows
        writer.append(make_batch(f"r-{i}", rows=3)).wait()
        if i == 3:
            _wait_for(files(1, 0), "a segment (by rows)")
    _wait_for(files(2, 0), "a second segment (by age)")
    writer.close()
    infos = PredictionLog(root).segments()
    assert [i.rows for i in infos] == [12, 9]  # a batch is never split across files
    assert all(i.sealed for i in infos)
    assert [(i.seq_first, i.seq_last) for i in infos] == [(0, 11), (12, 20)]
    assert infos == sorted(infos, key=lambda i: i.name)  # names start with the first ts


def test_torn_tail_is_ignored_and_sealed_away(
    root: Path, tmp_path: Path, make_batch: Callable[..., Any]
) -> None:
    writer = PredictionLogWriter(root, features=FEATURES)
    for i in range(3):
        writer.append(make_batch(f"t-{i}", rows=2)).wait()
    wal = next((root / "predictions").glob("wal-*.kwal"))
    crashed = tmp_path / "crashed" / "predictions"
    crashed.mkdir(parents=True)
    copy = crashed / wal.name
    shutil.copyfile(wal, copy)  # what a crash in the middle of the 3rd write would leave
    writer.close()
    with copy.open("r+b") as handle:
        handle.truncate(copy.stat().st_size - 7)
    assert read_wal(copy).num_rows == 4
    log = PredictionLog(crashed.parent)
    assert log.scan().column("request_id").to_pylist() == ["t-0", "t-0", "t-1", "t-1"]

    recovering = PredictionLogWriter(crashed.parent)  # seals what is complete
    recovering.close()
    assert len(recovering.recovered) == 1 and not copy.exists()
    assert log.scan().column("request_id").to_pylist() == ["t-0", "t-0", "t-1", "t-1"]


def test_wal_torn_inside_its_header_holds_nothing(
    root: Path, tmp_path: Path, make_batch: Callable[..., Any]
) -> None:
    with PredictionLogWriter(root, features=FEATURES) as writer:
        writer.append(make_batch("x")).wait()
        wal = next((root / "predictions").glob("wal-*.kwal"))
        crashed = tmp_path / "crashed" / "predictions"
        crashed.mkdir(parents=True)
        (crashed / wal.name).write_bytes(wal.read_bytes()[:40])
    assert read_wal(crashed / wal.name).num_rows == 0
    assert PredictionLog(crashed.parent).scan().num_rows == 0
    assert PredictionLogWriter(crashed.parent).recovered == []
    assert not list(crashed.iterdir())


def test_a_killed_writers_wal_is_sealed_by_the_next_writer(root: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(WORKER), "crash", str(root), "50"], capture_output=True, timeout=60
    )
    assert done.returncode == -9, done.stderr.decode()
    folder = root / "predictions"
    assert len(list(folder.glob("wal-*.kwal"))) == 1 and not list(folder.glob("seg-*"))
    assert PredictionLog(root).scan().num_rows == 53  # readable before any recovery

    writer = PredictionLogWriter(root, features=FEATURES)
    assert len(writer.recovered) == 1 and writer.recovered[0].name.startswith("seg-")
    assert not list(folder.glob("wal-*"))
    writer.append({"request_id": "new", "model": "m", "version": 2, "prediction": 0.0}).wait()
    writer.close()
    table = PredictionLog(root).scan()
    assert table.num_rows == 54
    assert table.filter(pa.compute.field("request_id") == "c-multi")["row"].to_pylist() == [
        0,
        1,
        2,
    ]


def test_a_live_writers_wal_is_not_taken_over(root: Path, make_batch: Callable[..., Any]) -> None:
    first = PredictionLogWriter(root, features=FEATURES)
    first.append(make_batch("first-0")).wait()
    second = PredictionLogWriter(root, features=FEATURES)  # another "process" starting
    assert second.recovered == []
    assert len(list((root / "predictions").glob("wal-*"))) == 1
    second.append(make_batch("second-0")).wait()
    first.append(make_batch("first-1")).wait()
    first.close()
    second.close()
    table = PredictionLog(root).scan()
    assert sorted(table.column("request_id").to_pylist()) == ["first-0", "first-1", "second-0"]
    assert len(set(table.column("writer").to_pylist())) == 2


def test_new_features_roll_the_wal_and_old_files_still_read(
    root: Path, make_batch: Callable[..., Any]
) -> None:
    writer = PredictionLogWriter(root, features=FEATURES)
    writer.append(make_batch("v1")).wait()
    writer.extend_features([("carrier", "categorical"), ("hour", "numeric")])
    writer.append(
        {"request_id": "v2", "model": "flights", "version": 2, "prediction": 1.0, "f.hour": 5.0}
    ).wait()
    with pytest.raises(DataError, match="logged as numeric, not categorical"):
        writer.extend_features([("hour", "categorical")])
    writer.close()
    table = PredictionLog(root).scan()
    assert len(PredictionLog(root).segments()) == 2
    assert table.column("f.hour").to_pylist() == [None, 5.0]
    assert table.column("request_id").to_pylist() == ["v1", "v2"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"f.unknown": 1.0}, "unknown column", id="unknown-column"),
        pytest.param({"request_id": None}, "'request_id' cannot be empty", id="null-id"),
        pytest.param({"prediction": ["a", "b", "c"]}, "not float64 numbers", id="text-prediction"),
        pytest.param({"version": "three"}, "not a int32", id="version-text"),
        pytest.param({"version": 2**40}, "int32 range", id="version-overflow"),
        pytest.param({"f.distance": [1.0, 2.0]}, "has 2 values; the batch has 3", id="length"),
        pytest.param({"f.distance": ["a", "b", "c"]}, "not float64 numbers", id="text-as-number"),
        pytest.param({"ts": "yesterday"}, "is not a time", id="bad-ts"),
        pytest.param({"row": [0.5, 1.5, 2.5]}, "not int32 numbers", id="fractional-row"),
    ],
)
def test_a_malformed_batch_fails_its_caller_only(
    root: Path, make_batch: Callable[..., Any], change: dict[str, Any], message: str
) -> None:
    with PredictionLogWriter(root, features=FEATURES) as writer:
        good = writer.append(make_batch("good", rows=3))
        with pytest.raises(DataError, match=message):
            writer.append({**make_batch("bad", rows=3), **change})
        good.wait()
    assert PredictionLog(root).scan().column("request_id").to_pylist() == ["good"] * 3


def test_missing_required_column_is_named(root: Path) -> None:
    with (
        PredictionLogWriter(root) as writer,
        pytest.raises(DataError, match="no 'version' column"),
    ):
        writer.append({"request_id": "x", "model": "m", "prediction": 1.0})


def test_closed_writer_refuses_appends(root: Path, make_batch: Callable[..., Any]) -> None:
    writer = PredictionLogWriter(root, features=FEATURES)
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        writer.append(make_batch("late"))


def test_a_failed_write_is_not_acknowledged_and_the_wal_stays_readable(root: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(WORKER), "fsize", str(root)], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert len(report["errors"]) == 3 and "cannot write the log file" in report["errors"][0]
    assert report["size_after"] == report["size"]  # the partial batch was cut off again
    assert report["stats"]["rows"] == 4 and report["stats"]["last_error"]
    table = PredictionLog(root).scan()
    assert table.column("request_id").to_pylist() == ["before-0", "before-1", "before-1", "after-0"]
    assert table.column("seq").to_pylist() == [0, 1, 2, 3]  # refused rows took no numbers


def test_labels_are_logged_like_predictions(root: Path) -> None:
    with LabelLogWriter(root) as writer:
        writer.append({"request_id": ["a", "b"], "row": [0, 3], "label": [1, 0]}).wait()
        writer.append({"request_id": "c", "label": 1.0, "ts": 1_767_225_600_000_000}).wait()
    labels = PredictionLog(root).labels()
    assert labels.column_names == ["request_id", "row", "label", "ts", "writer", "seq"]
    assert labels.column("request_id").to_pylist() == ["c", "a", "b"]  # "c" is oldest
    by_id = {r["request_id"]: r for r in labels.to_pylist()}
    assert by_id["c"]["ts"] == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert by_id["b"]["label"] == 0.0 and by_id["b"]["row"] == 3


ODD_TEXT = ["", "ü", "日本語", "🛫✈️", 'a,b\n"c"', "x" * 10_000, None, "\x00nul"]


@pytest.mark.parametrize("text", ODD_TEXT, ids=lambda t: "none" if t is None else f"len{len(t)}")
def test_odd_categorical_values_round_trip(root: Path, text: str | None) -> None:
    with PredictionLogWriter(root, features=FEATURES) as writer:
        writer.append(
            {
                "request_id": text or "",
                "model": "m",
                "version": 1,
                "prediction": [1.0, 0.0],
                "f.carrier": [text, float("nan")],
                "f.distance": [math.nan, math.inf],
            }
        ).wait()
    row = PredictionLog(root).scan().to_pylist()
    assert row[0]["f.carrier"] == text and row[1]["f.carrier"] is None  # NaN means missing
    assert math.isnan(row[0]["f.distance"]) and row[1]["f.distance"] == math.inf


def test_text_that_is_not_utf8_is_escaped_not_lost(root: Path) -> None:
    with PredictionLogWriter(root, features=FEATURES) as writer:
        ok = writer.append(make_batch_with_carrier("fine", "UA"))
        odd = writer.append(make_batch_with_carrier("odd", "bad\ud800"))  # a lone surrogate
        ok.wait()
        odd.wait()
    carriers = PredictionLog(root).scan().column("f.carrier").to_pylist()
    assert carriers == ["UA", "bad\\ud800"]


def make_batch_with_carrier(request_id: str, carrier: str) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "model": "m",
        "version": 1,
        "prediction": 1.0,
        "f.carrier": carrier,
    }


def test_numpy_and_arrow_inputs_are_accepted(root: Path) -> None:
    stamps = np.array(["2026-01-01T00:00:00", "2026-01-01T00:00:01"], dtype="datetime64[s]")
    with PredictionLogWriter(root, features=FEATURES) as writer:
        writer.append(
            {
                "request_id": pa.array(["a", "b"]),
                "row": np.array([0, 0], dtype=np.int64),
                "model": "m",
                "version": np.int64(4),
                "prediction": pa.array([1.0, 0.0]),
                "ts": stamps,
                "f.carrier": np.array(["UA", "AA"]),
                "f.distance": np.array([1, 2], dtype=np.int16),
            }
        ).wait()
    table = PredictionLog(root).scan()
    assert table.column("request_id").to_pylist() == ["a", "b"]
    assert table.column("version").to_pylist() == [4, 4]
    assert table.column("f.distance").to_pylist() == [1.0, 2.0]
    assert table.column("ts").to_pylist()[1] == dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=dt.UTC)


#: Rows of (f.distance, f.carrier, prediction) with missing, NaN and infinite values.
ANY_ROWS = st.lists(
    st.tuples(
        st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
        st.one_of(st.none(), st.text(max_size=20)),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=30, deadline=None)
@given(ANY_ROWS)
def test_any_values_round_trip(rows: list[tuple[float | None, str | None, float]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        with PredictionLogWriter(Path(folder), features=FEATURES) as writer:
            writer.append(
                {
                    "request_id": [f"r{i}" for i in range(len(rows))],
                    "model": "m",
                    "version": 1,
                    "prediction": [r[2] for r in rows],
                    "f.distance": [r[0] for r in rows],
                    "f.carrier": [r[1] for r in rows],
                }
            ).wait()
        table = PredictionLog(Path(folder)).scan()
    assert table.num_rows == len(rows)
    got = sorted(table.to_pylist(), key=lambda r: int(r["request_id"][1:]))
    for (distance, carrier, prediction), row in zip(rows, got, strict=True):
        assert row["prediction"] == prediction
        assert row["f.carrier"] == carrier
        if distance is None or math.isnan(distance):
            assert math.isnan(row["f.distance"])  # a missing number is NaN in float64 columns
        else:
            assert row["f.distance"] == distance


def test_without_fsync_the_event_loop_commits_each_iterations_appends_together(
    root: Path, make_batch: Callable[..., Any]
) -> None:
    committers: list[str] = []

    async def main(writer: PredictionLogWriter) -> None:
        original = writer._commit

        def spy(group: Any) -> None:
            committers.append(threading.current_thread().name)
            original(group)

        writer._commit = spy  # type: ignore[method-assign]
        await asyncio.gather(*(writer.append_async(make_batch(f"a-{i}")) for i in range(100)))
        for i in range(3):  # one at a time: one commit each, at once
            await writer.append_async(make_batch(f"b-{i}"))

    with PredictionLogWriter(root, features=FEATURES, fsync=False) as writer:
        asyncio.run(main(writer))
        stats = writer.stats()
        assert stats.rows == 103 and stats.pending_rows == 0
        # the 100 appends of one loop iteration: one group (max_batch_rows 4096), then 3
        assert stats.commits == 4 == len(committers)
        assert set(committers) == {threading.main_thread().name}  # on the loop, no thread hop
        assert _wal_frames(root) == [100, 1, 1, 1]
    ids = PredictionLog(root).scan(columns=["request_id"]).column("request_id").to_pylist()
    assert sorted(ids) == sorted([f"a-{i}" for i in range(100)] + [f"b-{i}" for i in range(3)])


def test_with_fsync_async_appends_are_committed_by_the_thread(
    root: Path, make_batch: Callable[..., Any]
) -> None:
    committers: list[str] = []
    with PredictionLogWriter(root, features=FEATURES, fsync=True) as writer:
        original = writer._commit

        def spy(group: Any) -> None:
            committers.append(threading.current_thread().name)
            original(group)

        writer._commit = spy  # type: ignore[method-assign]

        async def main() -> None:
            await asyncio.gather(*(writer.append_async(make_batch(f"a-{i}")) for i in range(50)))

        asyncio.run(main())
        assert writer.stats().rows == 50
    assert committers and all(name.startswith("kyklos-log-commit") for name in committers)


def test_thread_and_loop_commits_interleave_without_losing_or_repeating_rows(
    root: Path, make_batch: Callable[..., Any]
) -> None:
    with PredictionLogWriter(root, features=FEATURES, fsync=False) as writer:

        def threads_append() -> None:
            for i in range(300):
                writer.append(make_batch(f"t-{i}")).wait()

        async def main() -> None:
            thread = threading.Thread(target=threads_append)
            thread.start()
            for i in range(300):
                await writer.append_async(make_batch(f"l-{i}"))
            await asyncio.to_thread(thread.join)

        asyncio.run(main())
    table = PredictionLog(root).scan(columns=["request_id", "seq"])
    ids = table.column("request_id").to_pylist()
    assert len(ids) == len(set(ids)) == 600
    assert sorted(table.column("seq").to_pylist()) == list(range(600))


@settings(max_examples=30, deadline=None)
@given(ANY_ROWS)
def test_one_row_appends_round_trip_through_row_frames(
    rows: list[tuple[float | None, str | None, float]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        with PredictionLogWriter(Path(folder), features=FEATURES, fsync=False) as writer:
            commits = [
                writer.append(
                    {
                        "request_id": f"r{i}",
                        "model": "m",
                        "version": 1,
                        "prediction": np.array([prediction]),
                        "f.distance": distance,
                        "f.carrier": carrier,
                    }
                )
                for i, (distance, carrier, prediction) in enumerate(rows)
            ]
            for commit in commits:
                commit.wait()
            live = PredictionLog(Path(folder)).scan()  # read from the WAL's row frames
        sealed = PredictionLog(Path(folder)).scan()
    for table in (live, sealed):
        assert table.column("seq").to_pylist() == list(range(len(rows)))
        for (distance, carrier, prediction), row in zip(rows, table.to_pylist(), strict=True):
            assert row["prediction"] == prediction and row["f.carrier"] == carrier
            if distance is None:
                assert row["f.distance"] is None
            elif math.isnan(distance):
                assert math.isnan(row["f.distance"])
            else:
                assert row["f.distance"] == distance


def test_row_frames_and_arrow_frames_keep_their_order(root: Path) -> None:
    with PredictionLogWriter(root, features=FEATURES, fsync=False) as writer:
        writer.append(make_batch_with_carrier("one-0", "UA")).wait()
        writer.append({**make_batch_with_carrier("many", "AA"), "prediction": [1.0, 0.0]}).wait()
        writer.append(make_batch_with_carrier("one-1", "bad\ud800")).wait()
        assert _wal_frames(root) == [1, 2, 1]
        live = PredictionLog(root).scan()
    sealed = PredictionLog(root).scan()
    for table in (live, sealed):
        assert table.column("request_id").to_pylist() == ["one-0", "many", "many", "one-1"]
        assert table.column("seq").to_pylist() == [0, 1, 2, 3]
        assert table.column("f.carrier").to_pylist() == ["UA", "AA", "AA", "bad\\ud800"]
        assert len(set(table.column("writer").to_pylist())) == 1


def test_a_frame_with_a_wrong_checksum_ends_the_wal(root: Path, tmp_path: Path) -> None:
    with PredictionLogWriter(root, features=FEATURES, fsync=False) as writer:
        for i in range(3):
            writer.append(make_batch_with_carrier(f"r{i}", "UA")).wait()
        wal = next((root / "predictions").glob("wal-*.kwal"))
        data = bytearray(wal.read_bytes())
    data[-3] ^= 0xFF  # a bit flipped in the last frame: it was never completely written
    crashed = tmp_path / "crashed" / "predictions"
    crashed.mkdir(parents=True)
    (crashed / wal.name).write_bytes(bytes(data))
    assert read_wal(crashed / wal.name).column("request_id").to_pylist() == ["r0", "r1"]


def test_a_wal_of_the_earlier_arrow_stream_format_is_read_and_sealed(
    root: Path, make_batch: Callable[..., Any]
) -> None:
    """WALs left by kyklos 0.1 (a bare Arrow IPC stream, ``.arrows``) are still recovered."""
    with PredictionLogWriter(root / "made", features=FEATURES) as writer:
        writer.append(make_batch("old", rows=3)).wait()
    table = PredictionLog(root / "made").scan()
    folder = root / "predictions"
    folder.mkdir(parents=True)
    old = folder / "wal-123-0123456789abcdef.arrows"
    with pa.OSFile(str(old), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    assert PredictionLog(root).scan().column("request_id").to_pylist() == ["old"] * 3
    writer = PredictionLogWriter(root, features=FEATURES)  # seals the orphan
    writer.close()
    assert [p.name for p in writer.recovered] and not old.exists()
    assert PredictionLog(root).scan().column("request_id").to_pylist() == ["old"] * 3


def test_a_growing_wal_is_read_again_with_its_new_frames(root: Path) -> None:
    """Each process decodes a live WAL's frames once; later reads add only the new ones."""
    from kyklos.data import predlog_files

    with PredictionLogWriter(root, features=FEATURES, fsync=False) as writer:
        log = PredictionLog(root)
        for i in range(5):
            writer.append(make_batch_with_carrier(f"r{i}", "UA")).wait()
            many = {**make_batch_with_carrier(f"m{i}", "AA"), "prediction": [1.0, 0.0]}
            writer.append(many).wait()
            ids = log.scan().column("request_id").to_pylist()
            assert ids == [x for j in range(i + 1) for x in (f"r{j}", f"m{j}", f"m{j}")]
        wal = next((root / "predictions").glob("wal-*.kwal"))
        assert wal in predlog_files._decoded._wals
    assert wal not in predlog_files._decoded._wals  # sealed on close: its rows are forgotten
    assert log.scan().num_rows == 15  # read from the segment


def test_wals_sealed_by_another_process_are_forgotten(root: Path, tmp_path: Path) -> None:
    from kyklos.data import predlog_files

    with PredictionLogWriter(root, features=FEATURES, fsync=False) as writer:
        writer.append(make_batch_with_carrier("a", "UA")).wait()
        wal = next((root / "predictions").glob("wal-*.kwal"))
        elsewhere = tmp_path / "copy" / "predictions"
        elsewhere.mkdir(parents=True)
        copy = elsewhere / wal.name
        shutil.copyfile(wal, copy)
        assert read_wal(copy).num_rows == 1
        assert copy in predlog_files._decoded._wals
        copy.unlink()  # as when another process seals it
        assert PredictionLog(root).scan().num_rows == 1  # any later read prunes it
        assert copy not in predlog_files._decoded._wals
