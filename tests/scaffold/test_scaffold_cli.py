"""``kyklos init DIR``: through Typer's runner, and end to end as a subprocess with exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kyklos.cli.app import app
from kyklos.config import load_project

KYKLOS = Path(sys.executable).with_name("kyklos")


def kyklos(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KYKLOS), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_init_json_lists_the_files_and_next_steps(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["init", str(tmp_path / "demo"), "--name", "demo2", "--json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == "demo2"
    assert data["root"] == str(tmp_path / "demo")
    assert "kyklos.yaml" in data["files"]
    assert data["next_steps"][-1] == "kyklos run"
    assert load_project(tmp_path / "demo", env={}).name == "demo2"


def test_init_prints_the_files_and_what_to_do_next(tmp_path: Path) -> None:
    done = kyklos("init", "late-flights", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "created project late-flights" in done.stdout
    assert ".github/workflows/kyklos.yml" in done.stdout
    assert done.stdout.rstrip().endswith("cd late-flights && kyklos run")
    assert (tmp_path / "late-flights" / "kyklos.yaml").is_file()
    validated = kyklos("validate", cwd=tmp_path / "late-flights")
    assert validated.returncode == 0, validated.stdout + validated.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["init", "busy"], "busy is not empty"),
        (["init", "fresh", "--name", "9lives"], "--name: got '9lives'"),
    ],
    ids=["non-empty-folder", "bad-name"],
)
def test_init_refusals_exit_1_with_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")

    done = kyklos(*args, cwd=tmp_path)

    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]


def test_init_force_writes_into_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")

    done = kyklos("init", "busy", "--force", "--json", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["overwritten"] == []
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "busy" / "steps.py").is_file()


def test_init_without_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    done = kyklos("init", cwd=tmp_path)

    assert done.returncode == 2
    assert "Missing argument 'DIR'" in done.stderr


@pytest.mark.slow
@pytest.mark.filterwarnings(  # MLflow's SQLAlchemy store, while making the template store
    "ignore:The ``noload`` loader strategy is deprecated:sqlalchemy.exc.SADeprecationWarning"
)
def test_the_generated_workflow_commands_run_and_pass_the_gates(
    tmp_path: Path, mlflow_db: Path
) -> None:
    """Every `run:` of the workflow after `pip install`, in order, on a fresh project."""
    import os

    import yaml

    assert kyklos("init", "demo", cwd=tmp_path).returncode == 0
    project = tmp_path / "demo"
    (project / ".kyklos").mkdir()
    mlflow_db.rename(project / ".kyklos" / "mlflow.db")  # a migrated store saves ~1 s
    workflow = yaml.safe_load((project / ".github/workflows/kyklos.yml").read_text())
    commands = [s["run"] for s in workflow["jobs"]["train"]["steps"] if "run" in s][1:]
    env = {**os.environ, "PATH": f"{KYKLOS.parent}{os.pathsep}{os.environ['PATH']}"}
    env = {k: v for k, v in env.items() if not k.startswith("KYKLOS_")}

    for command in commands:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"

    report = json.loads((project / "run.json").read_text())
    assert report["gates_passed"] is True
    assert report["metrics"]["roc_auc"] >= 0.60
    assert "add_features" in json.dumps(report["steps"])
