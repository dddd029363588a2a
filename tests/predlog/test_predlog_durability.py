"""Nothing acknowledged is lost: writers killed with SIGKILL under load, then counted.

Each worker process (``log_worker.py ack``) appends single-row requests from several threads and
prints a request id only after the commit covering it is durable (fsynced); ``ack-async`` is
the server's default path instead: coroutines on one event loop, the writer without fsync, the
loop committing (a write to the operating system, which SIGKILL cannot undo). The test reads the
acknowledgements for a while, kills every worker with SIGKILL, and checks that every
acknowledged id is in the log: first as left behind (complete WAL batches, torn tails ignored),
then after a new writer has recovered (sealed) the orphaned WAL files.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest

from kyklos.data.predlog import PredictionLog, PredictionLogWriter

WORKER = Path(__file__).with_name("log_worker.py")


def _start(
    root: Path, threads: int, segment_rows: int, log: Path, mode: str = "ack"
) -> subprocess.Popen[bytes]:
    with log.open("ab") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), mode, str(root), str(threads), str(segment_rows)],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n", log.read_text()
    return proc


def _collect(proc: subprocess.Popen[bytes], acks: list[str]) -> threading.Thread:
    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:  # until EOF: everything printed before the kill
            if line.endswith(b"\n"):
                acks.append(line.decode().strip())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("processes", "threads", "segment_rows", "load_seconds", "mode"),
    [
        pytest.param(1, 16, 100_000, 1.0, "ack", id="one-process-16-threads"),
        pytest.param(1, 64, 2_000, 1.0, "ack", id="one-process-64-threads-sealing-under-load"),
        pytest.param(2, 8, 1_500, 0.8, "ack", id="two-processes-one-folder"),
        pytest.param(1, 4, 100_000, 0.3, "ack", id="early-kill"),
        pytest.param(1, 64, 2_000, 1.0, "ack-async", id="event-loop-no-fsync-sealing-under-load"),
        pytest.param(2, 16, 100_000, 0.8, "ack-async", id="event-loop-no-fsync-two-processes"),
    ],
)
def test_acknowledged_predictions_survive_sigkill(
    root: Path,
    tmp_path: Path,
    processes: int,
    threads: int,
    segment_rows: int,
    load_seconds: float,
    mode: str,
) -> None:
    stderr = tmp_path / "worker-stderr.txt"
    procs = [_start(root, threads, segment_rows, stderr, mode) for _ in range(processes)]
    acks: list[str] = []
    readers = [_collect(proc, acks) for proc in procs]
    time.sleep(load_seconds)
    for proc in procs:
        os.kill(proc.pid, signal.SIGKILL)
    for proc, reader in zip(procs, readers, strict=True):
        proc.wait(timeout=30)
        reader.join(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL, stderr.read_text()
    acked = set(acks)
    assert len(acked) == len(acks) > 0

    log = PredictionLog(root)
    left = log.scan(columns=["request_id", "writer", "seq"])
    logged = collections.Counter(left.column("request_id").to_pylist())
    missing = acked - set(logged)
    print(
        f"\n{len(acked)} acknowledged, {left.num_rows} logged "
        f"({left.num_rows - len(acked)} written but not yet acknowledged at the kill)"
    )
    assert not missing, f"{len(missing)} acknowledged predictions lost, e.g. {sorted(missing)[:5]}"
    assert max(logged.values()) == 1  # nothing twice (a WAL and its segment are not both read)

    # a new writer seals the orphaned WAL files; the records stay exactly the same
    writer = PredictionLogWriter(root)
    writer.close()
    assert writer.recovered, "the killed writers' WAL files were not recovered"
    assert not list((root / "predictions").glob("wal-*"))
    after = log.scan(columns=["request_id", "writer", "seq"])
    assert after.sort_by([("writer", "ascending"), ("seq", "ascending")]).equals(
        left.sort_by([("writer", "ascending"), ("seq", "ascending")])
    )
    # every writer's records are numbered 0..n-1 without gaps
    for writer_id in set(after.column("writer").to_pylist()):
        seqs = after.filter(pc.field("writer") == writer_id).column("seq").to_pylist()
        assert sorted(seqs) == list(range(len(seqs)))
