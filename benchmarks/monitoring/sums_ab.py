"""What the per-bin sums cost: ``check_drift`` on the narrow 1M × 25 window with the stored
profile and with the same profile stripped of its sums (the edge-based path), interleaved in
one process so that both see the same machine load, plus the ``np.histogram`` floor.

    .venv/bin/python benchmarks/monitoring/sums_ab.py [--rounds 21] [--data DIR]

Needs the data and profile that ``run.py --cases narrow --rows 1000000`` writes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

# loaded before timing, as in a long-running monitor
import scipy.spatial.distance
import scipy.stats  # noqa: F401

from kyklos.config.project import DriftConfig
from kyklos.data.profile import TableProfile
from kyklos.monitoring.drift import check_drift


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument(
        "--data", type=Path, default=Path("/tmp/kyklos-bench-monitoring/narrow-1000000-1000000")
    )
    args = parser.parse_args()
    stored = json.loads((args.data / "profile.json").read_text())
    with_sums = TableProfile.from_dict(stored)
    for column in stored["columns"]:
        column.pop("sums", None)
    without_sums = TableProfile.from_dict(stored)
    window = pq.read_table(args.data / "current.parquet")
    config = DriftConfig()

    def floor() -> None:
        for column in with_sums:
            if column.kind == "numeric":
                values = window.column(column.name).to_numpy()
                np.histogram(values, bins=np.asarray(column.edges))
            else:
                pc.value_counts(window.column(column.name))

    runs: dict[str, Callable[[], object]] = {
        "check_drift, profile with per-bin sums": lambda: check_drift(
            with_sums, window, config=config
        ),
        "check_drift, the same profile without sums": lambda: check_drift(
            without_sums, window, config=config
        ),
        "floor: np.histogram / value_counts": floor,
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()
    for _ in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(
            f"{name:45s} median {statistics.median(values) * 1e3:7.1f} ms"
            f"  min {min(values) * 1e3:7.1f} ms"
        )
    load = os.getloadavg()
    print(f"load average: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")


if __name__ == "__main__":
    main()
