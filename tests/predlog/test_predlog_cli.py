"""``kyklos logs``: DuckDB filters and the table, CSV, JSON Lines and Parquet outputs."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kyklos.api.logs import logs_query, parse_time
from kyklos.cli.app import app
from kyklos.config import Project
from kyklos.data.predlog import LabelLogWriter, PredictionLogWriter
from kyklos.errors import ConfigError

from .conftest import FEATURES, T0

KYKLOS = Path(sys.executable).with_name("kyklos")


def _minute(i: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=i)


@pytest.fixture
def logged(project: Project, make_batch: Callable[..., Any]) -> Project:
    """40 two-row requests a minute apart (versions 1/2, every 4th a challenger), a live WAL
    on top of sealed segments, and labels for r0 and r1."""
    root = project.state_dir / "logs"
    writer = PredictionLogWriter(root, features=FEATURES, segment_rows=30)
    for i in range(40):
        arm = "challenger" if i % 4 == 3 else "champion"
        writer.append(make_batch(f"r{i}", rows=2, version=1 + i % 2, arm=arm, ts=_minute(i))).wait()
    with LabelLogWriter(root) as labels:
        labels.append({"request_id": ["r0", "r1"], "row": [1, 0], "label": [1.0, 0.0]}).wait()
    assert list((root / "predictions").glob("wal-*"))  # part of it is still a WAL
    yield project  # type: ignore[misc]
    writer.close()


def kyklos(project: Project, *args: str) -> str:
    result = CliRunner().invoke(app, ["--project", str(project.root), "logs", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_with_time_version_and_arm_filters(logged: Project) -> None:
    args = ["--since", "2026-01-01T00:10", "--until", "2026-01-01T00:20", "--format", "csv"]
    rows = _csv(kyklos(logged, *args))
    assert [r["request_id"] for r in rows[::2]] == [f"r{i}" for i in range(10, 20)]
    assert {r["row"] for r in rows} == {"0", "1"}
    rows = _csv(kyklos(logged, *args, "--version", "2", "--arm", "challenger"))
    assert [r["request_id"] for r in rows] == ["r11", "r11", "r15", "r15", "r19", "r19"]
    assert rows[0]["f.carrier"] in {"UA", "AA", "B6"} and float(rows[0]["f.distance"]) > -1e9


def test_limit_keeps_the_latest_records_in_time_order(logged: Project) -> None:
    rows = _csv(kyklos(logged, "--limit", "3", "--format", "csv", "--columns", "request_id,row"))
    assert [(r["request_id"], r["row"]) for r in rows] == [("r38", "1"), ("r39", "0"), ("r39", "1")]


def test_json_lines_with_labels(logged: Project) -> None:
    out = kyklos(logged, "--labels", "--json", "--until", "2026-01-01T00:02")
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["request_id"], r["row"], r["label"]) for r in records] == [
        ("r0", 0, None),
        ("r0", 1, 1.0),
        ("r1", 0, 0.0),
        ("r1", 1, None),
    ]
    assert records[0]["ts"] == "2026-01-01T00:00:00+00:00"


def test_parquet_output_file(logged: Project, tmp_path: Path) -> None:
    target = tmp_path / "out" / "preds.parquet"
    target.parent.mkdir()
    out = kyklos(logged, "--format", "parquet", "--output", str(target), "--version", "1")
    assert "wrote 40 records" in out
    table = pq.read_table(target)
    assert table.num_rows == 40 and set(table.column("version").to_pylist()) == {1}
    assert str(table.schema.field("ts").type) == "timestamp[us, tz=UTC]"
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_table_output_for_people(logged: Project) -> None:
    result = CliRunner().invoke(
        app,
        ["--project", str(logged.root), "logs", "--labels", "--limit", "2"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "r39" in result.stdout and "label" in result.stdout
    assert "r38" not in result.stdout
    empty = CliRunner().invoke(
        app, ["--project", str(logged.root), "logs", "--since", "2030-01-01"]
    )
    assert "no predictions match" in empty.stdout


def test_relative_times(project: Project, make_batch: Callable[..., Any]) -> None:
    now = dt.datetime.now(dt.UTC)
    with PredictionLogWriter(project.state_dir / "logs", features=FEATURES) as writer:
        writer.append(make_batch("old", ts=now - dt.timedelta(hours=2))).wait()
        writer.append(make_batch("new", ts=now - dt.timedelta(minutes=30))).wait()
    rows = _csv(kyklos(project, "--since", "-1h", "--format", "csv"))
    assert [r["request_id"] for r in rows] == ["new"]
    assert [r["request_id"] for r in _csv(kyklos(project, "--until", "1h", "-f", "csv"))] == ["old"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--since", "last tuesday"], "since: 'last tuesday' is not a time", id="time"),
        pytest.param(["--format", "xml"], "--format: 'xml' is unknown", id="format"),
        pytest.param(["--format", "parquet"], "add --output FILE", id="parquet-to-terminal"),
        pytest.param(["--arm", "blue"], "arm: 'blue' is not a rollout arm", id="arm"),
        pytest.param(["-f", "csv", "--columns", "ts,nope"], "'nope' not in the log", id="column"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(logged: Project, args: list[str], message: str) -> None:
    done = subprocess.run(
        [str(KYKLOS), "--project", str(logged.root), "logs", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_python_twin_and_time_parsing(logged: Project) -> None:
    table = logs_query(logged.root, version=2, since=_minute(30), labels=True)
    assert table.num_rows == 5 * 2 and table.column_names[-2:] == ["label", "label_ts"]
    assert parse_time("2026-01-01") == T0
    assert parse_time("now", now=T0) == T0
    assert parse_time("-1.5h", now=_minute(90)) == T0
    with pytest.raises(ConfigError, match="not a time"):
        parse_time("soon")
