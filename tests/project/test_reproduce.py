"""`kyklos reproduce`: rerun a recorded run from its dataset version, params, seed and commit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd

import kyklos

from .conftest import cli, edit_yaml

# a change that really moves the predictions: the step now blanks a weather feature
CHANGED_STEP = ("    return df.assign(\n", "    df = df.assign(temp=0.0)\n    return df.assign(\n")


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=ci@kyklos.dev", "-c", "user.name=ci", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def test_reproduce_is_identical_even_after_the_data_file_changed(project: Path) -> None:
    first = kyklos.run(project)
    # the source file moves on; reproduce must use the recorded dataset version
    frame = pd.read_parquet(project / "data" / "flights.parquet")
    frame.head(3000).to_parquet(project / "data" / "flights.parquet")
    kyklos.run(project)
    report = kyklos.reproduce(first.run_id, project)
    assert report.identical, report.to_dict()
    assert report.dataset_version == first.dataset_version
    assert report.rows_compared > 0 and report.rows_differing == 0
    assert report.code_differences == []


def test_reproduce_reports_changed_step_code_outside_git(project: Path) -> None:
    first = kyklos.run(project)
    steps = project / "steps.py"
    steps.write_text(steps.read_text().replace(*CHANGED_STEP))
    done = cli(project, "reproduce", first.run_id, "--json")
    assert done.returncode == 1  # not identical
    report = json.loads(done.stdout)
    assert report["identical"] is False
    assert report["predictions_identical"] is False
    assert report["rows_differing"] > 0
    assert any("add_features" in line for line in report["code_differences"])


def test_reproduce_checks_out_the_recorded_commit(project: Path) -> None:
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first")
    first = kyklos.run(project)
    steps = project / "steps.py"
    steps.write_text(steps.read_text().replace(*CHANGED_STEP))
    git(project, "commit", "-qam", "coarser departure hour")
    kyklos.run(project)

    report = kyklos.reproduce(first.run_id, project)

    assert report.identical, report.to_dict()
    assert report.checked_out_commit is not None
    assert any("git commit" in line for line in report.code_differences)


def test_reproduce_unknown_run_exits_1(project: Path) -> None:
    kyklos.run(project)
    done = cli(project, "reproduce", "0123456789abcdef")
    assert done.returncode == 1
    assert done.stderr.startswith("error: run '0123456789abcdef' is not recorded")
    assert len(done.stderr.strip().splitlines()) == 1


def test_reproduce_names_parameter_sources(project: Path) -> None:
    """The recorded configuration is used, not today's kyklos.yaml."""
    first = kyklos.run(project)
    edit_yaml(project, "max_iter: 100", "max_iter: 10")
    report = kyklos.reproduce(first.run_id, project)
    assert report.identical
