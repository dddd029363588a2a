"""A separate process that promotes and rolls back at random (for the concurrency tests).

Usage: python promote_worker.py DB_URL TRACKING_URI ACTOR START_FILE N VERSION [VERSION ...]
Waits until START_FILE exists (so that every worker starts at once), then makes N changes.
"""

from __future__ import annotations

import random
import sys
import time
import zlib
from pathlib import Path

from kyklos.errors import RegistryError
from kyklos.registry import ModelRegistry, Tracker, promote, rollback
from kyklos.store import open_db


def main() -> None:
    db_url, tracking_uri, actor, start_file, n, *versions = sys.argv[1:]
    registry = ModelRegistry(open_db(db_url), Tracker(tracking_uri), "flights")
    _ = registry.tracker.client  # connect before the start signal
    deadline = time.monotonic() + 60
    while not Path(start_file).exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    changed = run(
        registry, actor, int(n), [int(v) for v in versions], seed=zlib.crc32(actor.encode())
    )
    print(f"changed {changed}")


def run(registry: ModelRegistry, actor: str, n: int, versions: list[int], seed: int) -> int:
    """Make ``n`` attempts; return how many changed the alias (the others found the version
    already there, or nothing to roll back to, after the other workers' moves)."""
    rng = random.Random(seed)
    changed = 0
    for i in range(n):
        if rng.random() < 0.3:
            try:
                change = rollback(registry, actor=actor, reason=f"{actor} rollback {i}")
            except RegistryError as exc:
                if "roll back" not in str(exc):
                    raise
                continue
        else:
            change = promote(
                registry, rng.choice(versions), actor=actor, reason=f"{actor} promote {i}"
            )
        changed += change.action != "unchanged"
    return changed


if __name__ == "__main__":
    main()
