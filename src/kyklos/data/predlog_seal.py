"""Seal one WAL into a Parquet segment in a process of its own (``python -m``).

A serving process's log writer runs this for the WALs it rotates while it serves
(``LogWriter(seal_in_child=True)``, what ``kyklos serve`` uses): decoding a WAL's row frames is
Python work that holds the GIL, and in the server's own process it held back the event loop
(p99 at 64 connections 80 ms for a 10 s run that sealed, 18 ms with the seal in a child: see
BENCHMARKS.md). The parent keeps the WAL's lock (its open file) until this returns.

    python -m kyklos.data.predlog_seal WAL_PATH [PARENT_PID]   # prints the segment's path

The child dies with its parent (Linux ``PR_SET_PDEATHSIG``) and does nothing if the parent is
already gone: a server killed mid-seal must not leave a child sealing a WAL that the next
writer to start seals too (both would write the same temporary segment file).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["seal_in_child"]


def seal_in_child(path: Path, *, timeout: float = 600.0) -> Path | None:
    """``seal_wal(path)`` in a child Python process; raises ``RuntimeError`` with the child's
    last line of error when it fails (the WAL is then left as it was: sealing is idempotent)."""
    done = subprocess.run(
        [sys.executable, "-m", __name__, str(path), str(os.getpid())],
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


def _die_with(parent: int) -> bool:
    """Ask to be killed when ``parent`` dies (Linux); False if it is already gone."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the check below still holds at start
        pass
    return os.getppid() == parent


def main(argv: list[str]) -> int:
    from kyklos.data.predlog_files import seal_wal

    if len(argv) not in (1, 2) or (len(argv) == 2 and not argv[1].isdigit()):
        sys.stderr.write("usage: python -m kyklos.data.predlog_seal WAL_PATH [PARENT_PID]\n")
        return 2
    if len(argv) == 2 and not _die_with(int(argv[1])):
        sys.stderr.write(f"the process {argv[1]} that asked for this seal is gone\n")
        return 1
    segment = seal_wal(Path(argv[0]))
    if segment is not None:
        sys.stdout.write(f"{segment}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
