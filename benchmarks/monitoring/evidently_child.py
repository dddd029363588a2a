"""Evidently side of the monitoring benchmark; runs in its own venv (Evidently 0.7.23 needs
pandas < 3), so it imports neither kyklos nor anything of the project venv.

* ``preset``: both Parquet files → pandas (``to_pandas(split_blocks=True, self_destruct=True)``,
  the least memory pyarrow needs) → ``Dataset`` (explicit ``DataDefinition``: strings
  categorical, numbers numerical) → ``Report([DataDriftPreset()]).run(current, reference)``;
  only the run is timed as the check (the loads and the ``Dataset`` wrapping apart).
* ``values``: the same report with each method set explicitly (100k case).
* ``flights``: the example data, reference months against current months.

A feature's verdict comes from its ``ValueDrift`` value, method and threshold: p-value tests
drift when ``value < threshold``, distances when ``value >= threshold`` (as Evidently decides).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import _proc
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

P_VALUE_TESTS = {
    "ks",
    "chisquare",
    "z",
    "fisher_exact",
    "g_test",
    "anderson",
    "cramer_von_mises",
    "mannw",
    "t_test",
    "es",
    "empirical_mmd",
}
VALUE_RUNS = {
    "wasserstein": {"num_method": "wasserstein", "cat_method": "jensenshannon"},
    "jensenshannon": {"num_method": "jensenshannon", "cat_method": "jensenshannon"},
    "psi": {"num_method": "psi", "cat_method": "psi"},
    "ks": {"num_method": "ks", "cat_method": "chisquare"},
}
FLIGHTS_NOT_FEATURES = ("time_hour", "arr_delay", "late")


def _read(path: str, categories: bool = False, lean: bool = False) -> pd.DataFrame:
    """A Parquet file as pandas; strings as Python objects (what ``pd.read_parquet`` gives),
    or as pandas ``category`` with ``categories``.

    The whole table is read, then converted column block by column block
    (``split_blocks``, ``self_destruct``). ``lean`` reads one column at a time instead and
    builds the frame without consolidating its blocks (about 1.25× the Arrow size at the
    peak, where the whole-table read needs about twice): the smallest footprint we found for
    a frame Evidently accepts.
    """
    if not lean:
        table = pq.read_table(path)
        return table.to_pandas(
            split_blocks=True, self_destruct=True, strings_to_categorical=categories
        )
    columns = {}
    for name in pq.ParquetFile(path).schema_arrow.names:
        column = pq.read_table(path, columns=[name]).column(0)
        columns[name] = column.to_pandas(strings_to_categorical=categories)
        del column
    return pd.DataFrame(columns, copy=False)


def _definition(frame: pd.DataFrame) -> DataDefinition:  # strings and categories: categorical
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    categorical = [c for c in frame.columns if c not in numeric]
    return DataDefinition(numerical_columns=numeric, categorical_columns=categorical)


def _features(snapshot: Any) -> dict[str, dict[str, Any]]:
    out = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if not config["type"].endswith(":ValueDrift"):
            continue
        method = str(config["method"])
        value, threshold = float(metric["value"]), float(config["threshold"])
        is_test = method in P_VALUE_TESTS
        out[config["column"]] = {
            "method": method,
            "statistic": value,
            "threshold": threshold,
            "drifted": value < threshold if is_test else value >= threshold,
        }
    return out


def _run(
    reference: pd.DataFrame, current: pd.DataFrame, record: dict[str, Any], **options: Any
) -> dict[str, dict[str, Any]]:
    with _proc.Phase("wrap", record):
        definition = _definition(reference)
        ref = Dataset.from_pandas(reference, data_definition=definition)
        cur = Dataset.from_pandas(current, data_definition=definition)
    with _proc.Phase("check", record):
        snapshot = Report([DataDriftPreset(**options)]).run(cur, ref)
    return _features(snapshot)


def preset(args: argparse.Namespace) -> dict[str, Any]:
    record: dict[str, Any] = {}
    with _proc.Phase("load", record):
        reference = _read(args.reference, args.categories, args.lean)
        current = _read(args.current, args.categories, args.lean)
    features = _run(reference, current, record)
    return {
        "rows": len(current),
        "phases": record,
        "check_seconds": [record["check"]["seconds"]],
        "check_median": record["check"]["seconds"],
        "flagged": sorted(n for n, f in features.items() if f["drifted"]),
        "features": features,
    }


def values(args: argparse.Namespace) -> dict[str, Any]:
    reference = _read(args.reference)
    current = _read(args.current)
    out = {}
    for name, options in VALUE_RUNS.items():
        out[name] = _run(reference, current, {}, **options)
    return {"values": out}


def flights(args: argparse.Namespace) -> dict[str, Any]:
    table = pq.read_table(args.data)
    features = [n for n in table.column_names if n not in FLIGHTS_NOT_FEATURES]

    def months(spec: str) -> pd.DataFrame:
        wanted = [int(m) for m in spec.split(",")]
        return table.filter(pc.is_in(table.column("month"), value_set=pc.cast(wanted, "int32")))

    ref = months(args.reference_months)
    reference = ref.select(features).to_pandas()
    out: dict[str, Any] = {"reference_rows": ref.num_rows, "current": {}}
    for spec in args.current_months:
        cur = months(spec)
        start = time.perf_counter()
        found = _run(reference, cur.select(features).to_pandas(), {})
        out["current"][spec] = {
            "rows": cur.num_rows,
            "seconds": time.perf_counter() - start,
            "flagged": [n for n, f in found.items() if f["drifted"]],
            "features": found,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode in ("preset", "values"):
        p = sub.add_parser(mode)
        p.add_argument("--reference", required=True)
        p.add_argument("--current", required=True)
        p.add_argument("--categories", action="store_true", help="strings as pandas category")
        p.add_argument("--lean", action="store_true", help="load one column at a time")
    p = sub.add_parser("flights")
    p.add_argument("--data", required=True)
    p.add_argument("--reference-months", default="1,2")
    p.add_argument("--current-months", nargs="+", default=["6,7", "9"])
    args = parser.parse_args()
    modes = {"preset": preset, "values": values, "flights": flights}
    result = modes[args.mode](args)
    result["tool"], result["mode"] = "evidently", args.mode
    _proc.emit(result)


if __name__ == "__main__":
    main()
