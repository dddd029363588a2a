"""A process that logs with ``LogWriter.append_now``, for test_predlog_append_now.

python append_now_worker.py kill ROOT FSYNC PENDING
    on an event loop: PENDING single-row ``append_async`` calls left pending (their loop commit
    is scheduled, not run), then one 3-row ``append_now`` ("now"), then SIGKILL before the loop
    turns again (no flush, no close). FSYNC is 0 or 1. PENDING is 0 with FSYNC 1 (there
    ``append_async`` goes through the committer thread).
python append_now_worker.py control ROOT PENDING
    the same without the ``append_now``: what the kill leaves when nobody commits.
python append_now_worker.py refused ROOT
    ``append_now`` under a file-size limit that makes the WAL write fail, then without it;
    prints a JSON report.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sys
from pathlib import Path

from log_worker import FEATURES, record  # this folder is sys.path[0] when run as a script

from kyklos.data.predlog import PredictionLogWriter


def kill(root: Path, fsync: bool, pending: int, *, now: bool = True) -> None:
    writer = PredictionLogWriter(root, features=FEATURES, fsync=fsync)

    async def main() -> None:
        tasks = [
            asyncio.create_task(writer.append_async(record(f"pending-{i}"))) for i in range(pending)
        ]
        await asyncio.sleep(0)  # each task appended and awaits its commit, not yet run
        if writer.stats().pending_rows != pending:
            raise SystemExit(f"expected {pending} pending rows, got {writer.stats()}")
        if now:
            writer.append_now(record("now", rows=3))
        os.kill(os.getpid(), signal.SIGKILL)  # before the loop turns again
        await asyncio.gather(*tasks)  # never reached

    asyncio.run(main())


def refused(root: Path) -> None:
    from kyklos.errors import StoreError

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of a signal
    writer = PredictionLogWriter(root, features=FEATURES, fsync=False)
    writer.append_now(record("before"))
    wal = next(root.glob("predictions/wal-*.kwal"))
    size = wal.stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, hard))  # the next batch is larger
    errors = []
    try:
        writer.append_now(record("refused", rows=40))
    except StoreError as exc:
        errors.append(str(exc))
    size_after = wal.stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    writer.append_now(record("after"))
    stats = writer.stats().to_dict()
    writer.close()
    closed = ""
    try:
        writer.append_now(record("closed"))
    except StoreError as exc:
        closed = str(exc)
    report = {
        "errors": errors,
        "size": size,
        "size_after": size_after,
        "stats": stats,
        "closed": closed,
    }
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    mode, folder, *rest = sys.argv[1:]
    if mode == "kill":
        kill(Path(folder), rest[0] == "1", int(rest[1]))
    elif mode == "control":
        kill(Path(folder), False, int(rest[0]), now=False)
    elif mode == "refused":
        refused(Path(folder))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
