"""Sealing WALs in a child process (``LogWriter(seal_in_child=True)``, what a server uses)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kyklos.data.predlog import PredictionLog, PredictionLogWriter
from kyklos.data.predlog_seal import main, seal_in_child

from .conftest import FEATURES, batch
from .test_predlog_writer import _wait_for


def _segments(root: Path) -> list[Path]:
    return sorted((root / "predictions").glob("seg-*.parquet"))


def test_rotated_wals_are_sealed_by_a_child_process(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kyklos.data.predlog_files as files

    def not_here(path: Path) -> Path | None:  # the parent must not seal while it serves
        raise AssertionError(f"{path.name} was sealed in the serving process")

    monkeypatch.setattr("kyklos.data.predlog_writer.seal_wal", not_here)
    writer = PredictionLogWriter(root, features=FEATURES, segment_rows=40, seal_in_child=True)
    try:
        for i in range(100):
            writer.append_now(batch(f"r{i}", seed=i))
        _wait_for(lambda: writer.stats().segments == 2, "two segments sealed by children")
        assert len(_segments(root)) == 2
        assert writer.stats().last_error is None
        # what the children wrote is the data: every row, readable with the live WAL's rest
        ids = PredictionLog(root).scan(columns=["request_id"]).column("request_id").to_pylist()
        assert sorted(ids, key=lambda r: int(r[1:])) == [f"r{i}" for i in range(100)]
    finally:
        monkeypatch.setattr("kyklos.data.predlog_writer.seal_wal", files.seal_wal)
        writer.close()  # the last WAL is sealed here, in this process (closing)
    assert len(_segments(root)) == 3
    assert not list((root / "predictions").glob("wal-*"))


def test_a_failing_child_leaves_the_seal_to_the_writer(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")  # the child exits 1 at once
    writer = PredictionLogWriter(root, features=FEATURES, segment_rows=10, seal_in_child=True)
    try:
        for i in range(15):
            writer.append_now(batch(f"r{i}", seed=i))
        _wait_for(lambda: writer.stats().segments == 1, "the WAL sealed in the writer instead")
        error = writer.stats().last_error
        assert error is not None and "in a child process failed" in error
    finally:
        writer.close()
    ids = PredictionLog(root).scan(columns=["request_id"]).column("request_id").to_pylist()
    assert len(ids) == 15


def test_the_seal_module_as_a_command(root: Path) -> None:
    writer = PredictionLogWriter(root, features=FEATURES, fsync=False)
    for i in range(5):
        writer.append_now(batch(f"r{i}", seed=i))
    wal = writer._wal
    assert wal is not None
    segment = seal_in_child(wal.path)  # the writer holds the lock: as its sealer would
    assert segment is not None and segment.exists() and not wal.path.exists()
    writer.close()
    assert main([]) == 2
    done = subprocess.run(
        [sys.executable, "-m", "kyklos.data.predlog_seal", str(root / "nope.kwal")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    with pytest.raises(RuntimeError, match="in a child process failed"):
        seal_in_child(root / "nope.kwal")


def test_a_seal_asked_by_a_process_that_is_gone_does_nothing(root: Path) -> None:
    writer = PredictionLogWriter(root, features=FEATURES, fsync=False)
    try:
        writer.append_now(batch("r0"))
        wal = writer._wal
        assert wal is not None
        done = subprocess.run(  # "asked by" pid 1, which is not this child's parent
            [sys.executable, "-m", "kyklos.data.predlog_seal", str(wal.path), "1"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 1 and "is gone" in done.stderr
        assert wal.path.exists() and not _segments(root)
    finally:
        writer.close()
    assert main(["a", "b"]) == 2
