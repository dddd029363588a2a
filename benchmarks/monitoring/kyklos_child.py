"""kyklos side of the monitoring benchmark; one mode per child process (run by ``run.py``).

* ``profile``: reference Parquet → canonical table → ``profile_table`` → profile JSON (the
  one-off cost at training time, timed apart).
* ``check``: profile JSON + current Parquet → ``check_drift`` (timed, repeated; the window's
  load is timed apart, and the peak RSS of the check is measured after the load).
* ``stream``: profile JSON + a large current Parquet → ``DriftAccumulator`` fed one row group
  (the chunk size the file was written with) at a time.
* ``values``: ``check_drift`` with each statistic set explicitly (for the value comparison).
* ``flights``: the example data, reference months against current months.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import _proc
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# a monitor is a long-running process: scipy, which the statistics import lazily, is loaded
# before a window arrives
import scipy.spatial.distance
import scipy.stats  # noqa: F401

from kyklos.config.project import DriftConfig
from kyklos.data.profile import TableProfile, profile_table
from kyklos.data.schema import infer_schema
from kyklos.data.table import canonicalize
from kyklos.monitoring.drift import DriftAccumulator, check_drift

VALUE_CONFIGS = {
    "wasserstein": {"numeric": "wasserstein", "categorical": "jensenshannon"},
    "jensenshannon": {"numeric": "jensenshannon", "categorical": "jensenshannon"},
    "psi": {"numeric": "psi", "categorical": "psi"},
    "ks": {"numeric": "ks", "categorical": "chi2"},
}
FLIGHTS_NOT_FEATURES = ("time_hour", "arr_delay", "late")


def _features(drifts: list[Any]) -> dict[str, dict[str, Any]]:
    return {
        d.feature: {
            "method": d.method,
            "statistic": d.statistic,
            "p_value": d.p_value,
            "threshold": d.threshold,
            "drifted": d.drifted,
        }
        for d in drifts
    }


def profile(args: argparse.Namespace) -> dict[str, Any]:
    record: dict[str, Any] = {}
    with _proc.Phase("load", record):
        table = pq.read_table(args.reference)
    with _proc.Phase("canonicalize", record):
        table = canonicalize(table)
    with _proc.Phase("profile", record):
        ref = profile_table(table, infer_schema(table))
    Path(args.out).write_text(json.dumps(ref.to_dict()))
    return {"rows": table.num_rows, "columns": table.num_columns, "phases": record}


def _load_profile(path: str) -> TableProfile:
    return TableProfile.from_dict(json.loads(Path(path).read_text()))


def _histogram_floor(reference: TableProfile, window: pa.Table, repeat: int) -> float:
    """Median time of the floor the issue names: one ``np.histogram`` pass per numeric column
    (on the reference's edges) plus ``pyarrow.compute.value_counts`` per categorical one."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for column in reference:
            if column.kind == "numeric":
                values = window.column(column.name).to_numpy()
                np.histogram(values, bins=np.asarray(column.edges))
            else:
                pc.value_counts(window.column(column.name))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def check(args: argparse.Namespace) -> dict[str, Any]:
    record: dict[str, Any] = {}
    reference = _load_profile(args.profile)
    config = DriftConfig()
    with _proc.Phase("load", record):
        window = pq.read_table(args.current)
    times = []
    with _proc.Phase("check", record):
        for _ in range(args.repeat):
            start = time.perf_counter()
            drifts, share, dataset_drift = check_drift(reference, window, config=config)
            times.append(time.perf_counter() - start)
    return {
        "rows": window.num_rows,
        "columns": window.num_columns,
        "window_bytes": window.nbytes,
        "numpy_histogram_seconds": _histogram_floor(reference, window, args.repeat),
        "phases": record,
        "check_seconds": times,
        "check_median": statistics.median(times),
        "flagged": sorted(d.feature for d in drifts if d.drifted),
        "share": share,
        "dataset_drift": dataset_drift,
        "features": _features(drifts),
    }


def stream(args: argparse.Namespace) -> dict[str, Any]:
    reference = _load_profile(args.profile)
    config = DriftConfig()
    base = _proc.rss()
    _proc.reset_peak()
    # one row group at a time: ``iter_batches`` pre-buffers the file by default and its cache
    # keeps growing until the end (pyarrow 25), which would measure the reader, not kyklos
    source = pq.ParquetFile(args.current)
    accumulator = DriftAccumulator(reference)
    read_s = update_s = 0.0
    start = time.perf_counter()
    for group in range(source.num_row_groups):
        t0 = time.perf_counter()
        chunk = source.read_row_group(group)
        t1 = time.perf_counter()
        accumulator.update(chunk)
        update_s += time.perf_counter() - t1
        read_s += t1 - t0
        del chunk
    t0 = time.perf_counter()
    drifts, share, dataset_drift = accumulator.result(config)
    result_s = time.perf_counter() - t0
    total = time.perf_counter() - start
    meta = source.metadata
    return {
        "rows": accumulator.n_rows,
        "columns": meta.num_columns,
        "row_groups": meta.num_row_groups,
        "chunks": meta.num_row_groups,
        "batch_rows": meta.row_group(0).num_rows,
        "file_bytes": Path(args.current).stat().st_size,
        "uncompressed_bytes": sum(
            meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)
        ),
        "seconds": total,
        "read_seconds": read_s,
        "update_seconds": update_s,
        "result_seconds": result_s,
        "rss_before_mib": base / _proc.MIB,
        "peak_mib": _proc.peak() / _proc.MIB,
        "flagged": sorted(d.feature for d in drifts if d.drifted),
        "share": share,
        "dataset_drift": dataset_drift,
    }


def values(args: argparse.Namespace) -> dict[str, Any]:
    reference = _load_profile(args.profile)
    window = pq.read_table(args.current)
    out = {}
    for name, methods in VALUE_CONFIGS.items():
        drifts, _, _ = check_drift(reference, window, config=DriftConfig(**methods))
        out[name] = _features(drifts)
    return {"values": out}


def flights(args: argparse.Namespace) -> dict[str, Any]:
    table = canonicalize(pq.read_table(args.data))
    features = [n for n in table.column_names if n not in FLIGHTS_NOT_FEATURES]

    def months(spec: str) -> pa.Table:
        wanted = pa.array([int(m) for m in spec.split(",")], table.column("month").type)
        return table.filter(pc.is_in(table.column("month"), value_set=wanted))

    ref_table = months(args.reference_months)
    start = time.perf_counter()
    reference = profile_table(ref_table.select(features))
    profile_s = time.perf_counter() - start
    out: dict[str, Any] = {
        "features": features,
        "reference_rows": ref_table.num_rows,
        "reference_late_rate": pc.mean(ref_table.column("late")).as_py(),
        "profile_seconds": profile_s,
        "current": {},
    }
    for spec in args.current_months:
        cur = months(spec)
        start = time.perf_counter()
        drifts, share, dataset_drift = check_drift(
            reference, cur.select(features), config=DriftConfig()
        )
        out["current"][spec] = {
            "rows": cur.num_rows,
            "late_rate": pc.mean(cur.column("late")).as_py(),
            "seconds": time.perf_counter() - start,
            "flagged": [d.feature for d in drifts if d.drifted],
            "share": share,
            "dataset_drift": dataset_drift,
            "features": _features(drifts),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("profile")
    p.add_argument("--reference", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("check")
    p.add_argument("--profile", required=True)
    p.add_argument("--current", required=True)
    p.add_argument("--repeat", type=int, default=5)
    p = sub.add_parser("stream")
    p.add_argument("--profile", required=True)
    p.add_argument("--current", required=True)
    p = sub.add_parser("values")
    p.add_argument("--profile", required=True)
    p.add_argument("--current", required=True)
    p = sub.add_parser("flights")
    p.add_argument("--data", required=True)
    p.add_argument("--reference-months", default="1,2")
    p.add_argument("--current-months", nargs="+", default=["6,7", "9"])
    args = parser.parse_args()
    modes = {"profile": profile, "check": check, "stream": stream, "values": values}
    result = modes.get(args.mode, flights)(args)
    result["tool"], result["mode"] = "kyklos", args.mode
    _proc.emit(result)


if __name__ == "__main__":
    main()
