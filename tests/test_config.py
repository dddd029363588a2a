"""kyklos.yaml validation: every problem at once, with path, value, expectation and a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from kyklos.config import load_project, parse_gate
from kyklos.config.gates import GateSyntaxError
from kyklos.errors import ValidationFailed

VALID = """\
name: flights
data:
  source: data/flights.parquet
  target: late
  time_column: time_hour
evaluate:
  metrics: [roc_auc, accuracy]
  split: {method: time, test_size: 0.2}
gates:
  - roc_auc >= 0.6
  - roc_auc >= champion.roc_auc - 0.005
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "kyklos.yaml").write_text(text)
    return tmp_path


def test_valid_file_loads_with_defaults(tmp_path: Path) -> None:
    project = load_project(write(tmp_path, VALID), env={})
    assert project.config.model.seed == 42
    assert project.tracking_uri == f"sqlite:///{tmp_path / '.kyklos' / 'mlflow.db'}"
    assert project.registered_model == "flights"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = VALID.replace("time_column", "tme_column").replace(
        "- roc_auc >= 0.6", "- roc_acu >= 0.6\n  - roc_auc = 1"
    )
    text += "model:\n  seed: x\n"
    with pytest.raises(ValidationFailed) as info:
        load_project(write(tmp_path, text), env={})
    issues = {i.path: i for i in info.value.issues}
    assert "did you mean 'time_column'" in issues["data.tme_column"].hint
    assert issues["model.seed"].value == "x"
    assert "roc_auc" in issues["gates[0]"].hint  # did you mean
    assert "gates[1]" in issues
    # time split without a time column (the key was misspelled) is reported too
    assert "evaluate.split.method" in issues


def test_metric_that_does_not_fit_the_task(tmp_path: Path) -> None:
    text = VALID.replace("[roc_auc, accuracy]", "[roc_auc, rmse]")
    with pytest.raises(ValidationFailed) as info:
        load_project(write(tmp_path, text), env={})
    assert [i.path for i in info.value.issues] == ["evaluate.metrics[1]"]


def test_environment_overrides(tmp_path: Path) -> None:
    env = {
        "KYKLOS_TRACKING_URI": "http://127.0.0.1:5000",
        "KYKLOS_MODEL__SEED": "7",
        "KYKLOS_EVALUATE__SPLIT__TEST_SIZE": "0.3",
        "KYKLOS_TOKEN": "ignored-not-a-setting",
    }
    project = load_project(write(tmp_path, VALID), env=env)
    assert project.tracking_uri == "http://127.0.0.1:5000"
    assert project.config.model.seed == 7
    assert project.config.evaluate.split.test_size == 0.3


def test_bad_environment_override_is_a_validation_issue(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as info:
        load_project(write(tmp_path, VALID), env={"KYKLOS_MODEL__SEED": "seven"})
    assert info.value.issues[0].path == "model.seed"


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as info:
        load_project(write(tmp_path, "name: [unclosed\n"), env={})
    assert "line" in str(info.value.issues[0].value)


@pytest.mark.parametrize(
    ("text", "metric", "relative"),
    [
        ("roc_auc >= 0.8", "roc_auc", False),
        ("rmse <= champion.rmse * 1.02", "rmse", True),
        ("f1 > -0.5 + 1", "f1", False),
    ],
    ids=["absolute", "relative", "arithmetic"],
)
def test_gate_parsing(text: str, metric: str, relative: bool) -> None:
    gate = parse_gate(text)
    assert gate.metric == metric
    assert gate.relative is relative


@pytest.mark.parametrize(
    "text",
    [
        "roc_auc == 1",
        "0.8 <= roc_auc",
        "roc_auc >= __import__('os')",
        "roc_auc >= other.x",
        "a >= 1 >= 0",
    ],
    ids=["equality", "reversed", "call", "foreign-attr", "chained"],
)
def test_gate_rejects(text: str) -> None:
    with pytest.raises(GateSyntaxError):
        parse_gate(text)


def test_relative_gate_without_champion_is_undecided() -> None:
    gate = parse_gate("roc_auc >= champion.roc_auc - 0.01")
    assert gate.evaluate({"roc_auc": 0.7}, None) is None
    assert gate.evaluate({"roc_auc": 0.7}, {"roc_auc": 0.705}) is True
    assert gate.evaluate({"roc_auc": 0.7}, {"roc_auc": 0.72}) is False


def test_yaml_on_is_a_key_not_a_boolean(tmp_path: Path) -> None:
    project = load_project(
        write(tmp_path, VALID + "retrain:\n  on: [drift, schedule]\n  schedule: '0 3 * * *'\n"),
        env={},
    )
    assert project.config.retrain.on == ["drift", "schedule"]


def test_serve_log_fsync_is_off_by_default_and_checked(tmp_path: Path) -> None:
    assert load_project(write(tmp_path, VALID), env={}).config.serve.log.fsync is False
    on = load_project(write(tmp_path, VALID + "serve:\n  log: {fsync: true}\n"), env={})
    assert on.config.serve.log.fsync is True
    with pytest.raises(ValidationFailed) as info:
        load_project(write(tmp_path, VALID + "serve:\n  log: {fsync: sometimes}\n"), env={})
    issue = info.value.issues[0]
    assert issue.path == "serve.log.fsync" and issue.value == "sometimes"
