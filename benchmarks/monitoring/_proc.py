"""Memory and result plumbing shared by the benchmark children (standard library only, so the
Evidently venv imports it too).

A child measures its phases with the kernel's resident-set high-water mark (``VmHWM`` in
``/proc/self/status``), which :func:`reset_peak` resets (``echo 5 > /proc/self/clear_refs``), so
the peak of one phase is not hidden by an earlier one. It prints one line ``RESULT {json}`` on
stdout, which the harness parses; anything else a library prints is ignored.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

MIB = 1024 * 1024


def _status(field: str) -> int:
    """A ``/proc/self/status`` field in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as fh:
            found = re.search(rf"^{field}:\s+(\d+) kB", fh.read(), re.MULTILINE)
    except OSError:
        return 0
    return int(found.group(1)) * 1024 if found else 0


def rss() -> int:
    """Resident set size now, in bytes."""
    return _status("VmRSS")


def peak() -> int:
    """Peak resident set size since the start or the last :func:`reset_peak`, in bytes."""
    return _status("VmHWM")


def reset_peak() -> bool:
    """Reset the high-water mark to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


class Phase:
    """``with Phase(name, record):`` stores wall time, RSS before/after and the phase's peak RSS
    (MiB) under ``record[name]``."""

    def __init__(self, name: str, record: dict[str, Any]) -> None:
        self.name, self.record = name, record

    def __enter__(self) -> Phase:
        self.rss_before = rss()
        reset_peak()
        self.start = time.perf_counter()
        progress(f"phase {self.name} started, RSS {self.rss_before / MIB:.0f} MiB")
        return self

    def __exit__(self, *exc: object) -> None:
        seconds = time.perf_counter() - self.start
        self.record[self.name] = {
            "seconds": seconds,
            "rss_before_mib": self.rss_before / MIB,
            "rss_after_mib": rss() / MIB,
            "peak_mib": peak() / MIB,
        }
        progress(f"phase {self.name} done in {seconds:.1f} s, peak RSS {peak() / MIB:.0f} MiB")


def progress(message: str) -> None:
    """One line on stderr (the harness shows the last ones when a child is killed)."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def emit(result: dict[str, Any]) -> None:
    """Print the child's result line for the harness."""
    sys.stdout.write("RESULT " + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
