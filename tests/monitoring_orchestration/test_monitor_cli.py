"""`kyklos monitor check / run / show` through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from typer.testing import CliRunner

from kyklos.cli.app import app

from .conftest import LogWriter, months

KYKLOS = str(Path(sys.executable).with_name("kyklos"))
COLUMNS = [
    "month",
    "day",
    "hour",
    "distance",
    "temp",
    "dewp",
    "humid",
    "pressure",
    "carrier",
    "origin",
]


@pytest.fixture
def csv_files(flights: pa.Table, tmp_path: Path) -> dict[str, Path]:
    winter = months(flights, 1, 2).select(COLUMNS)
    summer = months(flights, 6, 7).select(COLUMNS).slice(0, 8000)
    files = {
        "winter": tmp_path / "winter.csv",
        "winter_odd": tmp_path / "winter_odd.csv",
        "winter_even": tmp_path / "winter_even.csv",
        "summer": tmp_path / "summer.csv",
    }
    pcsv.write_csv(winter.slice(0, 16000), files["winter"])
    pcsv.write_csv(winter.take(pa.array(np.arange(0, 16000, 2))), files["winter_even"])
    pcsv.write_csv(winter.take(pa.array(np.arange(1, 16000, 2))), files["winter_odd"])
    pcsv.write_csv(summer, files["summer"])
    return files


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KYKLOS, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def test_check_plain_csv_files_json_and_html_report(
    csv_files: dict[str, Path], tmp_path: Path
) -> None:
    report = tmp_path / "out" / "report.html"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "monitor",
            "check",
            "--reference",
            str(csv_files["winter"]),
            "--current",
            str(csv_files["summer"]),
            "--report",
            str(report),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == "drift" and data["dataset_drift"] is True
    drifted = {f["feature"] for f in data["features"] if f["drifted"]}
    assert {"temp", "dewp"} <= drifted
    assert data["window"]["n_rows"] == 8000 and data["n_reference"] == 16000
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") or page.lstrip().lower().startswith("<!doctype")
    assert "temp" in page and "Drift detected" in page


def test_check_prints_the_verdict_first_and_exits_0_on_drift(
    csv_files: dict[str, Path], tmp_path: Path
) -> None:
    done = _cli(
        "monitor",
        "check",
        "-r",
        str(csv_files["winter"]),
        "-c",
        str(csv_files["summer"]),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("drift: ")
    assert "top drifted features" in done.stdout and "temp" in done.stdout
    runner = CliRunner()
    failing = runner.invoke(
        app,
        [
            "monitor",
            "check",
            "-r",
            str(csv_files["winter"]),
            "-c",
            str(csv_files["summer"]),
            "--fail-on-drift",
        ],
    )
    assert failing.exit_code == 1
    same = runner.invoke(
        app,
        [
            "monitor",
            "check",
            "-r",
            str(csv_files["winter_even"]),
            "-c",
            str(csv_files["winter_odd"]),
            "--fail-on-drift",
            "--json",
        ],
    )
    assert same.exit_code == 0, same.stdout
    assert json.loads(same.stdout)["verdict"] == "ok"


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("missing.csv", "missing.csv does not exist"),
        ("v99", "no version 99"),
        ("ds-ffffffffffff", "dataset version"),
    ],
    ids=["no-file", "no-model-version", "no-dataset-version"],
)
def test_bad_reference_is_one_line_and_exit_1(
    project: Path, csv_files: dict[str, Path], reference: str, message: str
) -> None:
    done = _cli("monitor", "check", "-r", reference, "-c", str(csv_files["summer"]), cwd=project)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_check_against_a_model_version(project: Path, csv_files: dict[str, Path]) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "--project",
            str(project),
            "monitor",
            "check",
            "--reference",
            "champion",
            "--current",
            str(csv_files["summer"]),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["window"]["model_version"] == 1
    # the model's step features are not in the file, nor the columns the user step reads to
    # add them: each is a quality error that says why
    missing = {q["feature"]: q["detail"] for q in data["quality"] if q["severity"] == "error"}
    assert {"day_of_week", "is_weekend", "dep_hour_local"} <= set(missing)
    assert "user step 'add_features' could not run on summer.csv (KeyError" in missing["is_weekend"]
    assert data["verdict"] == "drift"


def test_run_and_show(project: Path, flights: pa.Table, write_log: LogWriter) -> None:
    runner = CliRunner()
    empty = runner.invoke(app, ["--project", str(project), "monitor", "run"])
    assert empty.exit_code == 0 and "no new complete window" in empty.stdout
    nothing = runner.invoke(app, ["--project", str(project), "monitor", "show"])
    assert "no monitor results yet" in nothing.stdout
    write_log(months(flights, 6).slice(0, 2300), version=1)
    ran = runner.invoke(app, ["--project", str(project), "monitor", "run", "--json"])
    assert ran.exit_code == 0, ran.output
    data = json.loads(ran.stdout)
    assert [r["window"] for r in data["results"]] == ["rows 0–999", "rows 1000–1999"]
    assert data["pending"] == {"1": 300}
    assert all(Path(p).is_file() for p in data["reports"])
    again = runner.invoke(app, ["--project", str(project), "monitor", "run"])
    assert again.exit_code == 0
    assert "no new complete window" in again.stdout
    assert "300 rows wait" in again.stdout

    shown = runner.invoke(app, ["--project", str(project), "monitor", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    listed = json.loads(shown.stdout)
    assert [s["id"] for s in listed] == [2, 1]
    assert listed[0]["result"]["window"]["label"] == "rows 1000–1999"
    assert listed[0]["result"]["verdict"] in {"drift", "ok", "quality", "degraded"}
    one = runner.invoke(
        app, ["--project", str(project), "monitor", "show", "--limit", "1", "--version", "v1"]
    )
    assert one.exit_code == 0
    assert "rows 1000–1999" in one.stdout and "rows 0–999" not in one.stdout


def test_check_against_a_dataset_version_and_a_log_export(
    project: Path, csv_files: dict[str, Path], flights: pa.Table, write_log: LogWriter
) -> None:
    import pyarrow.parquet as pq

    import kyklos
    from kyklos.api.monitor import monitor_check
    from kyklos.data.predlog import PredictionLog

    dataset, _ = kyklos.data_add(project=project)
    against_data = monitor_check(dataset.id, str(csv_files["summer"]), project=project)
    assert against_data.verdict == "drift"
    assert {f.feature for f in against_data.features} == set(COLUMNS)
    assert against_data.window.model_version is None

    write_log(months(flights, 1).slice(6000, 500), version=1)
    export = project / "export.parquet"
    pq.write_table(PredictionLog(project / ".kyklos" / "logs").scan(), export)
    against_model = monitor_check("v1", str(export), project=project, report=project / "r.json")
    assert against_model.window.model_version == 1 and against_model.window.n_rows == 500
    assert against_model.prediction is not None  # the logged scores against v1's predictions
    assert not [q for q in against_model.quality if q.severity == "error"]
    assert json.loads((project / "r.json").read_text())["window"]["n_rows"] == 500
