"""scipy side of the monitoring benchmark: per-column tests on the raw arrays, written by hand.

* ``check``: ``scipy.stats.ks_2samp`` on every numeric column (NaN dropped) and
  ``scipy.stats.chi2_contingency`` on every categorical column's category counts (counted with
  ``pyarrow.compute.value_counts``, aligned on the union of categories). A feature drifts when
  ``p < 0.05``. Both tables' loads are timed apart from the tests.
* ``values``: exact raw-data statistics for the value comparison — the normalised Wasserstein
  distance (as Evidently computes it: ``wasserstein_distance / std(reference)``), the KS
  statistic and p-value, and the Jensen–Shannon distance and PSI of categorical counts.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import _proc
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy import stats
from scipy.spatial import distance


def _numeric(column: pa.ChunkedArray) -> np.ndarray:
    values = np.asarray(column.to_numpy(), dtype=np.float64)
    return values[~np.isnan(values)]


def _counts(ref: pa.ChunkedArray, cur: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    found = [pc.value_counts(side.drop_null()) for side in (ref, cur)]
    maps = [
        dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))
        for vc in found
    ]
    keys = sorted(set(maps[0]) | set(maps[1]))
    return (
        np.array([maps[0].get(k, 0) for k in keys], dtype=np.float64),
        np.array([maps[1].get(k, 0) for k in keys], dtype=np.float64),
    )


def _is_numeric(column: pa.ChunkedArray) -> bool:
    return pa.types.is_integer(column.type) or pa.types.is_floating(column.type)


def check(args: argparse.Namespace) -> dict[str, Any]:
    record: dict[str, Any] = {}
    with _proc.Phase("load", record):
        reference = pq.read_table(args.reference)
        current = pq.read_table(args.current)
    features: dict[str, Any] = {}
    with _proc.Phase("check", record):
        for name in current.column_names:
            ref, cur = reference.column(name), current.column(name)
            if _is_numeric(cur):
                result = stats.ks_2samp(_numeric(ref), _numeric(cur))
                method = "ks"
            else:
                result = stats.chi2_contingency(np.vstack(_counts(ref, cur)), correction=False)
                method = "chi2"
            features[name] = {
                "method": method,
                "statistic": float(result.statistic),
                "p_value": float(result.pvalue),
                "drifted": bool(result.pvalue < 0.05),
            }
    return {
        "rows": current.num_rows,
        "phases": record,
        "check_seconds": [record["check"]["seconds"]],
        "check_median": record["check"]["seconds"],
        "flagged": sorted(n for n, f in features.items() if f["drifted"]),
        "features": features,
    }


def _psi(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p / p.sum(), q / q.sum()
    p, q = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
    return float(np.sum((q - p) * np.log(q / p)))


def values(args: argparse.Namespace) -> dict[str, Any]:
    reference = pq.read_table(args.reference)
    current = pq.read_table(args.current)
    out: dict[str, Any] = {}
    for name in current.column_names:
        ref, cur = reference.column(name), current.column(name)
        if _is_numeric(cur):
            x, y = _numeric(ref), _numeric(cur)
            ks = stats.ks_2samp(x, y)
            out[name] = {
                "wasserstein": float(stats.wasserstein_distance(x, y) / max(np.std(x), 0.001)),
                "ks_statistic": float(ks.statistic),
                "ks_p_value": float(ks.pvalue),
            }
        else:
            p, q = _counts(ref, cur)
            js = float(distance.jensenshannon(p, q, base=2))
            chi = stats.chi2_contingency(np.vstack([p, q]), correction=False)
            out[name] = {
                "jensenshannon": 0.0 if math.isnan(js) else js,
                "psi": _psi(p, q),
                "chi2_statistic": float(chi.statistic),
                "chi2_p_value": float(chi.pvalue),
            }
    return {"values": out}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["check", "values"])
    parser.add_argument("--reference", required=True)
    parser.add_argument("--current", required=True)
    args = parser.parse_args()
    result = check(args) if args.mode == "check" else values(args)
    result["tool"], result["mode"] = "scipy", args.mode
    _proc.emit(result)


if __name__ == "__main__":
    main()
