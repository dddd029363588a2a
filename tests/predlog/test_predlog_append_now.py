"""LogWriter.append_now: the record (and everything else pending) is written before it returns.

The strongest check runs in a child process (``append_now_worker.py``) that calls ``append_now``
and kills itself with SIGKILL at once, before its event loop could commit anything: whatever
the parent then reads from the WAL left behind was written by that call.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kyklos.data.predlog import PredictionLog, PredictionLogWriter
from kyklos.errors import StoreError

from .conftest import FEATURES, batch
from .test_predlog_writer import _wal_frames

WORKER = Path(__file__).with_name("append_now_worker.py")


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, str(WORKER), *args], capture_output=True, timeout=60, check=False
    )


def _ids(root: Path) -> list[str]:
    table = PredictionLog(root).scan(columns=["request_id"])
    return table.column("request_id").to_pylist()


@pytest.mark.parametrize(
    ("fsync", "pending"),
    [
        pytest.param("0", 5, id="no-fsync-with-pending-async"),
        pytest.param("0", 0, id="no-fsync-alone"),
        pytest.param("1", 0, id="fsync-alone"),
    ],
)
def test_what_append_now_returned_for_survives_sigkill(
    root: Path, fsync: str, pending: int
) -> None:
    done = _run("kill", str(root), fsync, str(pending))
    assert done.returncode == -9, done.stderr.decode()
    wals = list((root / "predictions").glob("wal-*.kwal"))
    assert len(wals) == 1 and not list((root / "predictions").glob("seg-*"))
    # read in this (another) process from the WAL the killed writer left: no recovery yet
    table = PredictionLog(root).scan(columns=["request_id", "row", "seq", "f.distance"])
    rows = table.to_pylist()
    expected = {f"pending-{i}" for i in range(pending)} | {"now"}
    assert {r["request_id"] for r in rows} == expected
    assert table.num_rows == pending + 3
    now = [r for r in rows if r["request_id"] == "now"]
    assert [r["row"] for r in now] == [0, 1, 2]
    assert [r["f.distance"] for r in now] == [0.0, 1.0, 2.0]
    assert sorted(r["seq"] for r in rows) == list(range(pending + 3))
    assert _wal_frames(root) == [pending + 3]  # one write covered everything pending


def test_without_append_now_the_kill_leaves_nothing(root: Path) -> None:
    """The control of the test above: the same process without ``append_now`` logs nothing,
    so what that test reads was written by ``append_now`` itself."""
    done = _run("control", str(root), "5")
    assert done.returncode == -9, done.stderr.decode()
    assert _ids(root) == []


def test_append_now_commits_the_pending_appends_in_one_write(
    root: Path, make_batch: Callable[..., Any]
) -> None:
    async def main(writer: PredictionLogWriter) -> tuple[Any, Any]:
        tasks = [asyncio.create_task(writer.append_async(make_batch(f"a-{i}"))) for i in range(4)]
        await asyncio.sleep(0)  # the four appended, their loop commit scheduled, not run
        before = writer.stats()
        writer.append_now(make_batch("now", rows=2))
        after = writer.stats()
        await asyncio.gather(*tasks)  # resolved by the append_now's commit
        return before, after

    writer = PredictionLogWriter(root, features=FEATURES, fsync=False)
    try:
        before, after = asyncio.run(main(writer))
        assert (before.rows, before.commits, before.pending_rows) == (0, 0, 4)
        assert (after.rows, after.commits, after.pending_rows) == (6, 1, 0)
        assert writer.stats().commits == 1  # the scheduled loop commit found nothing left
        assert _wal_frames(root) == [6]
        # readable in this process before any flush or close, from the live WAL
        assert sorted(_ids(root)) == ["a-0", "a-1", "a-2", "a-3", "now", "now"]
    finally:
        writer.close()
    assert sorted(_ids(root)) == ["a-0", "a-1", "a-2", "a-3", "now", "now"]  # sealed, same rows


@pytest.mark.parametrize("fsync", [False, True], ids=["no-fsync", "fsync"])
def test_append_now_is_readable_as_soon_as_it_returns(
    root: Path, make_batch: Callable[..., Any], fsync: bool
) -> None:
    seen: list[list[str]] = []
    errors: list[BaseException] = []
    with PredictionLogWriter(root, features=FEATURES, fsync=fsync) as writer:

        def call() -> None:  # a plain thread, no event loop: append_now needs none
            try:
                for i in range(3):
                    writer.append_now(make_batch(f"n-{i}", rows=i + 1))
                    seen.append(sorted(set(_ids(root))))  # at once: no flush, no close
            except BaseException as exc:  # reported below
                errors.append(exc)

        caller = threading.Thread(target=call, name="the-caller")
        caller.start()
        caller.join(30)
        assert not caller.is_alive() and not errors, errors
        stats = writer.stats()
        assert (stats.rows, stats.commits, stats.pending_rows) == (6, 3, 0)
    assert seen == [["n-0"], ["n-0", "n-1"], ["n-0", "n-1", "n-2"]]
    table = PredictionLog(root).scan(columns=["request_id", "row", "seq"])
    assert table.column("request_id").to_pylist() == ["n-0", "n-1", "n-1", "n-2", "n-2", "n-2"]
    assert table.column("row").to_pylist() == [0, 0, 1, 0, 1, 2]
    assert table.column("seq").to_pylist() == list(range(6))


def test_append_now_on_a_closed_writer_raises(root: Path, make_batch: Callable[..., Any]) -> None:
    writer = PredictionLogWriter(root, features=FEATURES, fsync=False)
    writer.append_now(make_batch("kept"))
    writer.close()
    with pytest.raises(StoreError, match=r"the log writer of .*predictions is closed"):
        writer.append_now(make_batch("late"))
    assert _ids(root) == ["kept"]


def test_append_now_raises_when_the_write_fails_and_logs_nothing_of_it(root: Path) -> None:
    done = _run("refused", str(root))
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert len(report["errors"]) == 1 and "cannot write the log file" in report["errors"][0]
    assert report["size_after"] == report["size"]  # the partial batch was cut off again
    assert report["stats"]["rows"] == 2 and report["stats"]["pending_rows"] == 0
    assert "is closed" in report["closed"]
    table = PredictionLog(root).scan(columns=["request_id", "seq"])
    assert table.column("request_id").to_pylist() == ["before", "after"]
    assert table.column("seq").to_pylist() == [0, 1]  # the refused rows took no numbers


def test_a_long_run_of_row_frames_decodes_in_bounded_batches(root: Path) -> None:
    """A WAL of many one-row frames (what a lone-request server writes) becomes record batches
    of at most ``_RUN_ROWS`` rows, each of them a short hold of the GIL for a sealer thread,
    and the rows come back whole and in order."""
    from kyklos.data.predlog_frames import _RUN_ROWS, decode_frames, read_header

    count = 2 * _RUN_ROWS + 17
    writer = PredictionLogWriter(root, features=FEATURES, fsync=False)
    try:
        for i in range(count):
            writer.append_now(batch(f"r{i}", seed=i))
        wal = writer._wal
        assert wal is not None
        data = wal.path.read_bytes()
    finally:
        writer.close()
    header = read_header(data)
    assert header is not None
    schema, at = header
    batches, end = decode_frames(schema, data, at)
    assert end == len(data)
    assert [b.num_rows for b in batches] == [_RUN_ROWS, _RUN_ROWS, 17]
    ids = [i for b in batches for i in b.column("request_id").to_pylist()]
    assert ids == [f"r{i}" for i in range(count)]
    seqs = [s for b in batches for s in b.column("seq").to_pylist()]
    assert seqs == list(range(count))
    # and the sealed segment holds them all
    assert sorted(_ids(root), key=lambda r: int(r[1:])) == ids
