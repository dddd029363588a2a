"""``kyklos models ...`` on a real project folder (its own MLflow store and metadata DB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kyklos.cli.app import app
from kyklos.errors import GateFailed
from kyklos.registry import ModelRegistry

from .conftest import MLFLOW_IMPORT_WARNINGS, RegisterFn

pytestmark = list(MLFLOW_IMPORT_WARNINGS)
KYKLOS = Path(sys.executable).with_name("kyklos")
PROJECT = """\
name: flights
data: {source: data/flights.parquet, target: late}
evaluate: {metrics: [roc_auc, accuracy]}
gates: ["roc_auc >= 0.80"]
"""


@pytest.fixture
def project(tmp_path: Path, registry: ModelRegistry, register: RegisterFn) -> Path:
    """A project whose default stores are the ones ``registry`` uses, with v1 (passed its gates,
    champion), v2 (passed) and v3 (failed)."""
    (tmp_path / "kyklos.yaml").write_text(PROJECT)
    register(roc_auc=0.85)
    register(roc_auc=0.9)
    register(roc_auc=0.7)
    from kyklos.registry import promote

    promote(registry, 1, reason="first", actor="alice")
    return tmp_path


def cli(project: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--project", str(project), "models", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_list_json(project: Path) -> None:
    code, out = cli(project, "list", "--json")
    assert code == 0
    data = json.loads(out)
    assert [(v["version"], v["aliases"], v["gates_passed"]) for v in data] == [
        (1, ["champion"], True),
        (2, [], True),
        (3, [], False),
    ]
    assert data[0]["metrics"] == {"roc_auc": 0.85, "accuracy": 0.8}
    assert "profile" not in data[0]


def test_list_and_show_for_people(project: Path) -> None:
    code, out = cli(project, "list")
    assert code == 0 and "v3" in out and "champion" in out
    code, out = cli(project, "show", "champion")
    assert code == 0
    assert "flights v1" in out and "roc_auc >= 0.80" in out and "alice" in out


def test_show_json_has_gates_and_history(project: Path) -> None:
    code, out = cli(project, "show", "v3", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["version"]["gate_results"][0]["passed"] is False
    assert data["alias_history"] == []
    data = json.loads(cli(project, "show", "1", "--json")[1])
    assert [(c["action"], c["to_version"], c["actor"]) for c in data["alias_history"]] == [
        ("promote", 1, "alice")
    ]


def test_promote_rollback_history(project: Path) -> None:
    code, out = cli(project, "promote", "2", "--reason", "better auc", "--json")
    assert code == 0
    change = json.loads(out)
    assert (change["from_version"], change["to_version"], change["reason"]) == (1, 2, "better auc")
    code, out = cli(project, "promote", "2")
    assert code == 0 and "nothing changed" in out
    code, out = cli(project, "rollback", "--reason", "latency regression")
    assert code == 0 and "v2 → v1" in out
    history = json.loads(cli(project, "history", "--json")[1])
    assert [(c["action"], c["from_version"], c["to_version"]) for c in history] == [
        ("promote", None, 1),
        ("promote", 1, 2),
        ("rollback", 2, 1),
    ]
    code, out = cli(project, "history")
    assert code == 0 and "rollback" in out and "latency" in out


def test_refused_promotion_then_forced(project: Path) -> None:
    with pytest.raises(GateFailed):
        cli(project, "promote", "3")
    code, out = cli(project, "promote", "3", "--force", "--reason", "known-good offline", "--json")
    assert code == 0 and json.loads(out)["forced"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["promote", "3"], "error: v3 of 'flights' failed its gates: roc_auc >= 0.80"),
        (["promote", "3", "--force"], "needs a reason"),
        (["show", "9"], "no version 9; existing versions: v1, v2, v3"),
    ],
    ids=["failed-gates", "force-without-reason", "unknown-version"],
)
def test_bad_input_exits_1_with_one_line(project: Path, args: list[str], message: str) -> None:
    # Rich wraps stderr at 80 columns when it is not a terminal; a wide one shows the one line.
    env = {**os.environ, "COLUMNS": "1000"}
    done = subprocess.run(
        [str(KYKLOS), "--project", str(project), "models", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]
