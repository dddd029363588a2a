"""A process that writes the prediction log, for the durability and crash tests.

python log_worker.py ack ROOT THREADS SEGMENT_ROWS
    THREADS threads append single-row requests as fast as they can; each request id is
    written to stdout (one line, one write) only after its commit is durable. Runs until
    killed.
python log_worker.py ack-async ROOT TASKS SEGMENT_ROWS
    the server's default path: TASKS coroutines on one event loop append with
    ``append_async`` to a writer without fsync (committed on the loop, written to the OS), each
    printing its request id only after the await returns. Runs until killed.
python log_worker.py crash ROOT N
    appends N single-row requests and one 3-row request, waits for them, then kills
    itself with SIGKILL (no close(): the WAL is left behind).
python log_worker.py fsize ROOT
    appends under a file-size limit that makes the WAL write fail half-way, then lifts
    the limit and appends again; prints a JSON report.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import threading
from pathlib import Path

from kyklos.data.predlog import PredictionLogWriter

FEATURES = [("distance", "numeric"), ("carrier", "categorical")]


def record(request_id: str, rows: int = 1) -> dict[str, object]:
    """One request (a many-row one has the distances 0.0, 1.0, ... to tell its rows apart)."""
    return {
        "request_id": request_id,
        "model": "flights",
        "version": 1,
        "prediction": [1.0] * rows if rows > 1 else 1.0,
        "score": [0.75] * rows if rows > 1 else 0.75,
        "f.distance": [float(i) for i in range(rows)] if rows > 1 else 123.0,
        "f.carrier": ["UA"] * rows if rows > 1 else "UA",
    }


def ack(root: Path, threads: int, segment_rows: int) -> None:
    writer = PredictionLogWriter(root, features=FEATURES, segment_rows=segment_rows)
    os.write(1, b"ready\n")

    def work(t: int) -> None:
        i = 0
        while True:
            request_id = f"{os.getpid()}-{t}-{i}"
            writer.append(record(request_id)).wait()
            os.write(1, (request_id + "\n").encode())  # acknowledged only now
            i += 1

    for t in range(threads):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()


def ack_async(root: Path, tasks: int, segment_rows: int) -> None:
    import asyncio

    writer = PredictionLogWriter(root, features=FEATURES, segment_rows=segment_rows, fsync=False)

    async def work(t: int) -> None:
        i = 0
        while True:
            request_id = f"{os.getpid()}-{t}-{i}"
            await writer.append_async(record(request_id))
            os.write(1, (request_id + "\n").encode())  # acknowledged only now
            i += 1

    async def main() -> None:
        os.write(1, b"ready\n")
        await asyncio.gather(*(work(t) for t in range(tasks)))

    asyncio.run(main())


def crash(root: Path, n: int) -> None:
    writer = PredictionLogWriter(root, features=FEATURES)
    commits = [writer.append(record(f"c-{i}")) for i in range(n)]
    commits.append(writer.append(record("c-multi", rows=3)))
    for commit in commits:
        commit.wait()
    os.kill(os.getpid(), signal.SIGKILL)


def fsize(root: Path) -> None:
    from kyklos.errors import StoreError

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of a signal
    writer = PredictionLogWriter(root, features=FEATURES)
    writer.append(record("before-0")).wait()
    writer.append(record("before-1", rows=2)).wait()
    wal = next(root.glob("predictions/wal-*.kwal"))
    size = wal.stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, hard))  # the next batch is larger
    errors = []
    for i in range(3):
        try:
            writer.append(record(f"refused-{i}", rows=20)).wait()
        except StoreError as exc:
            errors.append(str(exc))
    size_after = wal.stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    writer.append(record("after-0")).wait()
    stats = writer.stats().to_dict()
    writer.close()
    report = {"errors": errors, "size": size, "size_after": size_after, "stats": stats}
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    mode, folder, *rest = sys.argv[1:]
    if mode == "ack":
        ack(Path(folder), int(rest[0]), int(rest[1]))
    elif mode == "ack-async":
        ack_async(Path(folder), int(rest[0]), int(rest[1]))
    elif mode == "crash":
        crash(Path(folder), int(rest[0]))
    elif mode == "fsize":
        fsize(Path(folder))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
