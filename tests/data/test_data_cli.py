"""``kyklos data add/list/show/diff`` and ``kyklos lineage``: JSON for scripts, one line for errors."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kyklos.cli.app import app
from kyklos.config import Project
from kyklos.data import DatasetStore, record_run_input
from kyklos.store.schema import runs

KYKLOS = Path(sys.executable).with_name("kyklos")


def kyklos(project: Project, *args: str) -> str:
    """Run a command in-process; assert success; return stdout."""
    result = CliRunner().invoke(app, ["--project", str(project.root), *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_add_list_show_diff_lineage_as_json(
    project: Project, tmp_path: Path, january: pa.Table, july: pa.Table
) -> None:
    pq.write_table(january, tmp_path / "jan.parquet")
    pq.write_table(july, tmp_path / "jul.parquet")
    added = json.loads(kyklos(project, "data", "add", str(tmp_path / "jan.parquet"), "--json"))
    assert added["created"] is True
    jan = added["version"]["id"]
    assert added["version"]["name"] == "flights"  # the project's dataset name
    again = json.loads(kyklos(project, "data", "add", str(tmp_path / "jan.parquet"), "--json"))
    assert (again["created"], again["version"]["id"]) == (False, jan)
    jul_args = ["data", "add", str(tmp_path / "jul.parquet"), "--parent", jan]
    jul_args += ["--note", "summer", "--name", "flights", "--json"]
    jul = json.loads(kyklos(project, *jul_args))["version"]
    assert (jul["parents"], jul["note"]) == ([jan], "summer")

    listed = json.loads(kyklos(project, "data", "list", "--json"))
    assert [v["id"] for v in listed] == [jul["id"], jan]
    assert "profile" not in listed[0]  # the list is a summary

    shown = json.loads(kyklos(project, "data", "show", jan[:8], "--json"))
    assert shown["id"] == jan and shown["n_rows"] == 5000
    assert {c["name"] for c in shown["schema"]["columns"]} >= {"temp", "carrier", "late"}
    assert shown["profile"]["n_rows"] == 5000

    diff = json.loads(kyklos(project, "data", "diff", jan, "flights@latest", "--json"))
    assert (diff["a"], diff["b"]) == (jan, jul["id"])
    assert "temp" in diff["drifted"]
    assert diff["columns"][0]["psi"] >= diff["columns"][1]["psi"]

    # a run read the July version
    store = DatasetStore.for_project(project)
    with store.db.write() as conn:
        conn.execute(
            runs.insert().values(
                run_id="r" * 32,
                project="flights",
                started_at=dt.datetime.now(dt.UTC),
                status="FINISHED",
                params={},
                metrics={},
                config={},
                environment={},
                step_hashes={},
            )
        )
        record_run_input(conn, "r" * 32, jul["id"])
    graph = json.loads(kyklos(project, "lineage", jul["id"], "--json"))
    assert graph["root"] == f"dataset:{jul['id']}"
    edges = {(e["source"], e["target"], e["relation"]) for e in graph["edges"]}
    assert edges == {
        (f"dataset:{jan}", f"dataset:{jul['id']}", "derived"),
        (f"dataset:{jul['id']}", f"run:{'r' * 32}", "training"),
    }


def test_human_output(project: Project, tmp_path: Path, january: pa.Table, july: pa.Table) -> None:
    pq.write_table(january, tmp_path / "jan.parquet")
    pq.write_table(july, tmp_path / "jul.parquet")
    out = kyklos(project, "data", "add", str(tmp_path / "jan.parquet"))
    assert "added ds-" in out and "5,000 rows" in out and "next: kyklos data show" in out
    assert "unchanged" in kyklos(project, "data", "add", str(tmp_path / "jan.parquet"))
    kyklos(project, "data", "add", str(tmp_path / "jul.parquet"), "--parent", "latest")
    assert "flights" in kyklos(project, "data", "list")
    shown = kyklos(project, "data", "show")
    assert "wind_gust" in shown and "categorical" in shown
    diff = kyklos(project, "data", "diff", "flights@previous", "flights@latest")
    assert "shifted" in diff and "temp" in diff
    tree = kyklos(project, "lineage", "flights@latest")
    assert "made from" in tree and "derived" in tree


def test_add_without_a_path_adds_the_project_source(project: Project, january: pa.Table) -> None:
    pq.write_table(january, project.root / "data" / "flights.parquet")
    added = json.loads(kyklos(project, "data", "add", "--json"))
    assert added["version"]["source"] == str(project.root / "data" / "flights.parquet")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["data", "add", "{bad}"], "malformed CSV {bad} at line 3: Expected 2 columns, got 1"),
        (["data", "add", "{missing}"], "{missing} does not exist"),
        (["data", "show", "ds-abc"], "no dataset version 'ds-abc'"),
        (["data", "diff", "latest", "nope"], "no dataset version"),
        (["lineage", "flights:7"], "no model version flights:7"),
    ],
    ids=["malformed-csv", "missing-file", "unknown-version", "unknown-diff-side", "unknown-model"],
)
def test_bad_input_exits_1_with_one_line(
    project: Project, tmp_path: Path, args: list[str], expected: str
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3\n")
    values = {"bad": str(bad), "missing": str(tmp_path / "missing.csv")}
    args = [a.format(**values) for a in args]
    if args[:2] == ["data", "diff"]:
        DatasetStore.for_project(project).add("t", name="flights", table=pa.table({"a": [1]}))
    env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1"}
    result = subprocess.run(
        [str(KYKLOS), "--project", str(project.root), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert expected.format(**values) in lines[0]
    assert result.stdout == ""
