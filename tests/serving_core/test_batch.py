"""kyklos predict: chunked CSV/Parquet scoring equals one-shot prediction; bad input exits 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kyklos.cli.app import app
from kyklos.serving.model import LoadedModel
from kyklos.serving.validation import validate_columns

KYKLOS = str(Path(sys.executable).with_name("kyklos"))


def one_shot(loaded: LoadedModel, feature_frame: Any) -> tuple[np.ndarray, np.ndarray]:
    columns = {}
    for f in loaded.features:
        s = feature_frame[f.name]
        columns[f.name] = (
            s.to_numpy(dtype=np.float64, na_value=np.nan)
            if f.kind == "numeric"
            else s.astype(object).where(s.notna(), None).to_numpy(dtype=object)
        )
    validated, _ = validate_columns(loaded.features, columns)
    prediction, score = loaded.predict(validated)
    assert score is not None
    return prediction, score


@pytest.mark.parametrize("suffix", ["parquet", "csv"], ids=["parquet", "csv"])
def test_chunked_scoring_equals_one_shot(
    served_project: Path, loaded: LoadedModel, feature_frame: Any, tmp_path: Path, suffix: str
) -> None:
    source = served_project / "data" / "flights.parquet"
    if suffix == "csv":
        csv_source = tmp_path / "flights.csv"
        pacsv.write_csv(pq.read_table(source), csv_source)
        source = csv_source
    target = tmp_path / f"scored.{suffix}"
    result = CliRunner().invoke(
        app,
        ["--project", str(served_project), "predict", "--input", str(source), "--output",
         str(target), "--chunk-rows", "701", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '"chunks": 9' in result.output and '"rows": 6000' in result.output
    out = pq.read_table(target) if suffix == "parquet" else pacsv.read_csv(target)
    raw = pq.read_table(served_project / "data" / "flights.parquet")
    assert out.column_names == [*raw.column_names, "prediction", "score"]
    prediction, score = one_shot(loaded, feature_frame)
    np.testing.assert_array_equal(out.column("prediction").to_numpy(), prediction.astype(np.int64))
    np.testing.assert_allclose(out.column("score").to_numpy(), score, rtol=1e-12)
    assert out.column("distance").equals(
        raw.column("distance").cast(out.schema.field("distance").type)
    )
    assert not list(tmp_path.glob(".scored*"))  # no temporary file left behind


def test_missing_feature_column_exits_1_with_one_line(served_project: Path, tmp_path: Path) -> None:
    source = tmp_path / "no-distance.parquet"
    pq.write_table(
        pq.read_table(served_project / "data" / "flights.parquet").drop(["distance"]), source
    )
    target = tmp_path / "out.csv"
    done = subprocess.run(
        [KYKLOS, "predict", "--input", str(source), "--output", str(target)],
        cwd=served_project, capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no column(s) 'distance'" in lines[0], done.stderr
    assert not target.exists()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda t: t.replace_schema_metadata(None).set_column(t.schema.get_field_index("carrier"), "carrier", pa.array([7] * t.num_rows)), "'carrier': got a number 7"),
        (lambda t: t.append_column("prediction", pa.array([0.0] * t.num_rows)), "already has a column 'prediction'"),
    ],
    ids=["wrong-type", "output-column-exists"],
)  # fmt: skip
def test_bad_input_names_the_problem_and_writes_nothing(
    served_project: Path, tmp_path: Path, change: Any, words: str
) -> None:
    source = tmp_path / "bad.parquet"
    pq.write_table(change(pq.read_table(served_project / "data" / "flights.parquet")), source)
    target = tmp_path / "out.parquet"
    result = CliRunner().invoke(
        app, ["--project", str(served_project), "predict", "-i", str(source), "-o", str(target)]
    )
    assert result.exit_code == 1
    assert words in str(result.exception)
    assert not target.exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--input", "missing.parquet", "--output", "o.csv"], "does not exist"),
        (["--input", "kyklos.yaml", "--output", "o.csv"], "unknown format '.yaml'"),
        (["--input", "data/flights.parquet", "--output", "o.json"], "unknown format '.json'"),
        (
            ["--input", "data/flights.parquet", "--output", "o.csv", "--version", "9"],
            "no version 9",
        ),
    ],
    ids=["no-such-file", "bad-input-format", "bad-output-format", "unknown-version"],
)
def test_bad_arguments(
    served_project: Path, args: list[str], words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(served_project)  # relative paths are relative to the working directory
    result = CliRunner().invoke(app, ["predict", *args])
    assert result.exit_code == 1
    assert words in str(result.exception)
