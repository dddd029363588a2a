"""Seal one WAL into a Parquet segment in a process of its own (``python -m``).

A serving process's log writer runs this for the WALs it rotates while it serves
(``LogWriter(seal_in_child=True)``, what ``kyklos serve`` uses): decoding a WAL's row frames is
Python work that holds the GIL, and in the server's own process it held back the event loop
(p99 at 64 connections 80 ms for a 10 s run that sealed, 18 ms with the seal in a child: see
BENCHMARKS.md). The parent keeps the WAL's lock (its open file) until this returns.

    python -m kyklos.data.predlog_seal WAL_PATH     # prints the segment's path, or nothing
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["seal_in_child"]


def seal_in_child(path: Path, *, timeout: float = 600.0) -> Path | None:
    """``seal_wal(path)`` in a child Python process; raises ``RuntimeError`` with the child's
    last line of error when it fails (the WAL is then left as it was: sealing is idempotent)."""
    done = subprocess.run(
        [sys.executable, "-m", __name__, str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        lines = (done.stderr or "").strip().splitlines() or [f"exit status {done.returncode}"]
        raise RuntimeError(f"sealing {path.name} in a child process failed: {lines[-1]}")
    printed = done.stdout.strip()
    return Path(printed) if printed else None


def main(argv: list[str]) -> int:
    from kyklos.data.predlog_files import seal_wal

    if len(argv) != 1:
        sys.stderr.write("usage: python -m kyklos.data.predlog_seal WAL_PATH\n")
        return 2
    segment = seal_wal(Path(argv[0]))
    if segment is not None:
        sys.stdout.write(f"{segment}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
