"""`kyklos monitor check` on a raw file: the project's user steps add the model's features."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from .conftest import add_step_features, months

KYKLOS = str(Path(sys.executable).with_name("kyklos"))
STEP_FEATURES = {"day_of_week", "is_weekend", "dep_hour_local"}


def _check(project: Path, current: Path) -> dict[str, Any]:
    done = subprocess.run(
        [KYKLOS, "monitor", "check", "--reference", "1", "--current", str(current), "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_raw_file_is_checked_on_the_features_the_user_steps_add(
    project: Path, flights_path: Path, tmp_path: Path
) -> None:
    """The raw summer flights (the training data's columns, as a CSV) are checked on the same
    features, with the same statistics, as the same rows with the step features already added."""
    summer = months(pq.read_table(flights_path), 6, 7).slice(0, 20_000)
    raw = tmp_path / "summer-raw.csv"
    pcsv.write_csv(summer, raw)
    stepped = tmp_path / "summer-features.parquet"
    pq.write_table(add_step_features(summer), stepped)
    assert not STEP_FEATURES & set(pcsv.read_csv(raw).column_names)

    from_raw, from_features = _check(project, raw), _check(project, stepped)

    drifts = {f["feature"]: f for f in from_raw["features"]}
    expected = {f["feature"]: f for f in from_features["features"]}
    assert set(drifts) >= STEP_FEATURES
    assert set(drifts) == set(expected)
    for name, drift in drifts.items():
        assert drift["method"] == expected[name]["method"], name
        assert drift["statistic"] == pytest.approx(expected[name]["statistic"]), name
    # no step feature is missing (a type_violation error); other findings on them are real
    # (the 6,000 January training rows hold no Monday: day_of_week 0 is out of range)
    assert not [
        q for q in from_raw["quality"] if q["feature"] in STEP_FEATURES and q["severity"] == "error"
    ]
    assert sorted((q["feature"], q["kind"], q["count"]) for q in from_raw["quality"]) == sorted(
        (q["feature"], q["kind"], q["count"]) for q in from_features["quality"]
    )


def test_a_file_with_the_model_features_skips_the_steps(
    project: Path, flights: pa.Table, tmp_path: Path
) -> None:
    """A file that already holds the model's features (e.g. exported from the prediction log
    without the raw columns) is checked as it is: the steps, which need ``time_hour``, do not
    run."""
    from kyklos.config import load_project
    from kyklos.registry import ModelRegistry

    profile = ModelRegistry.for_project(load_project(project)).get(1).profile
    assert profile is not None
    names = [c["name"] for c in profile["features"]["columns"]]
    assert "time_hour" not in names and set(names) >= STEP_FEATURES
    only_features = months(flights, 1).slice(6_000, 3_000).select(names)
    path = tmp_path / "features.parquet"
    pq.write_table(only_features, path)
    result = _check(project, path)
    assert {f["feature"] for f in result["features"]} >= STEP_FEATURES
    assert [q for q in result["quality"] if q["severity"] == "error"] == []
