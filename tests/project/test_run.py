"""`kyklos run` end to end on a scaffolded flights project: real data, real MLflow store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

import kyklos
from kyklos.config import load_project
from kyklos.pipeline.step import load_step
from kyklos.store import open_db
from kyklos.store.schema import run_inputs, runs

from .conftest import cli, edit_yaml


def _client(root: Path):  # type: ignore[no-untyped-def]
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / '.kyklos' / 'mlflow.db'}")


def test_first_run_is_tracked_registered_and_becomes_champion(project: Path) -> None:
    outcome = kyklos.run(project)

    assert outcome.model_version == 1
    assert outcome.aliases == ["champion"]
    assert [s["name"] for s in outcome.steps] == [
        "load",
        "validate",
        "add_features",
        "split",
        "train",
        "evaluate",
        "profile",
    ]
    assert not any(s["cached"] for s in outcome.steps)
    run = _client(project).get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["estimator"] == "sklearn.ensemble.HistGradientBoostingClassifier"
    assert run.data.params["seed"] == "42"
    assert run.data.params["model.max_iter"] == "100"
    assert run.data.metrics == pytest.approx(outcome.metrics)
    assert set(outcome.metrics) == {"roc_auc", "average_precision", "accuracy", "f1", "log_loss"}
    version = kyklos.data_show(outcome.dataset_version, project=project)
    assert run.data.tags["kyklos.dataset_digest"] == version.digest
    assert run.data.tags["kyklos.seed"] == "42"
    (dataset_input,) = run.inputs.dataset_inputs
    assert version.digest.startswith(dataset_input.dataset.digest)
    artifacts = {a.path for a in _client(project).list_artifacts(outcome.run_id, "plots")}
    assert artifacts == {"plots/roc_curve.png", "plots/pr_curve.png", "plots/confusion_matrix.png"}
    env = json.loads(
        Path(
            _client(project).download_artifacts(
                outcome.run_id, "kyklos/environment.json", str(project)
            )
        ).read_text()
    )
    assert "scikit-learn" in env


def test_logged_model_has_a_signature_and_predicts_like_the_pipeline(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import pandas as pd

    outcome = kyklos.run(project)
    # `models:/...` URIs resolve through MLflow's global tracking URI, as for any MLflow user
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / '.kyklos' / 'mlflow.db'}")
    shown = kyklos.models_show(outcome.model_version, project=project)
    info = mlflow.models.get_model_info(shown.model_uri)
    names = [c.name for c in info.signature.inputs]
    assert "temp" in names and "carrier" in names and "late" not in names
    model = mlflow.sklearn.load_model(shown.model_uri)
    add_features = load_step("steps.py:add_features", project).func
    frame = add_features(pd.read_parquet(project / "data" / "flights.parquet").tail(50))
    proba = model.predict_proba(frame[names])
    assert proba.shape == (50, 2)


def test_run_writes_lineage_and_metadata(project: Path) -> None:
    outcome = kyklos.run(project)
    loaded = load_project(project)
    db = open_db(loaded.db_url)
    with db.read() as conn:
        row = conn.execute(select(runs).where(runs.c.run_id == outcome.run_id)).one()
        used = conn.execute(
            select(run_inputs.c.dataset_version_id).where(run_inputs.c.run_id == outcome.run_id)
        ).scalar_one()
    assert row.status == "FINISHED"
    assert row.seed == 42
    assert used == outcome.dataset_version
    graph = kyklos.lineage_of(outcome.dataset_version, project=project).to_dict()
    text = json.dumps(graph)
    assert outcome.run_id in text
    assert f"{loaded.registered_model}:1" in text or '"version": 1' in text


def test_cached_rerun_reuses_the_run_and_imports_nothing_heavy(project: Path) -> None:
    first = kyklos.run(project)
    code = (
        "import sys, json, kyklos\n"
        f"o = kyklos.run({str(project)!r})\n"
        "heavy = sorted(m for m in ('mlflow', 'sklearn', 'matplotlib') if m in sys.modules)\n"
        "print(json.dumps({'run_id': o.run_id, 'reused': o.reused, 'heavy': heavy,"
        " 'cached': [s['cached'] for s in o.steps]}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=project
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "run_id": first.run_id,
        "reused": True,
        "heavy": [],
        "cached": [True] * 7,
    }


def test_no_cache_recomputes_bitwise_identically_and_registers_a_challenger(project: Path) -> None:
    first = kyklos.run(project)
    second = kyklos.run(project, no_cache=True)
    assert second.run_id != first.run_id
    assert not any(s["cached"] for s in second.steps)
    assert second.metrics == first.metrics
    assert second.predictions_digest == first.predictions_digest
    assert second.model_version == 2
    assert second.aliases == ["challenger"]
    assert second.gates_passed is True


def test_changing_a_parameter_reruns_train_but_not_the_data_steps(project: Path) -> None:
    kyklos.run(project)
    outcome = kyklos.run(project, overrides={"model.params.max_iter": 20})
    cached = {s["name"]: s["cached"] for s in outcome.steps}
    assert cached == {
        "load": True,
        "validate": True,
        "add_features": True,
        "split": True,
        "train": False,
        "evaluate": False,
        "profile": False,
    }
    assert outcome.run_id is not None and not outcome.reused


def test_failing_user_step_is_named_and_finished_steps_stay_cached(project: Path) -> None:
    steps = project / "steps.py"
    good = steps.read_text()
    steps.write_text(
        good.replace('    when = df["time_hour"]', '    raise ValueError("no weather today")')
    )
    done = cli(project, "run")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: step 'add_features' failed: ValueError: no weather today")
    steps.write_text(good)
    outcome = kyklos.run(project)
    cached = {s["name"]: s["cached"] for s in outcome.steps}
    assert cached["load"] and cached["validate"]
    assert not cached["add_features"] and not cached["train"]


def test_flaky_step_is_retried(project: Path) -> None:
    (project / "flaky.py").write_text(
        "from pathlib import Path\n"
        "from kyklos import step\n\n"
        "@step(retries=2)\n"
        "def sometimes(df):\n"
        "    marker = Path(__file__).with_name('attempts.txt')\n"
        "    n = int(marker.read_text()) if marker.exists() else 0\n"
        "    marker.write_text(str(n + 1))\n"
        "    if n < 2:\n"
        "        raise ConnectionError(f'attempt {n + 1} failed')\n"
        "    return df\n"
    )
    edit_yaml(
        project,
        '    - function: "steps.py:add_features"',
        '    - function: "steps.py:add_features"\n    - function: "flaky.py:sometimes"',
    )
    kyklos_run = kyklos.run
    from kyklos.pipeline import runner as runner_module

    original = runner_module.Runner.__init__

    def fast_retries(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("retry_delay", 0.0)
        original(self, *args, **kwargs)

    runner_module.Runner.__init__ = fast_retries  # type: ignore[method-assign]
    try:
        outcome = kyklos_run(project)
    finally:
        runner_module.Runner.__init__ = original  # type: ignore[method-assign]
    attempts = {s["name"]: s["attempts"] for s in outcome.steps}
    assert attempts["sometimes"] == 3
    assert (project / "attempts.txt").read_text() == "3"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("target: late ", "target: lateness ", "lateness"),
        (
            "estimator: sklearn.ensemble.HistGradientBoostingClassifier",
            "estimator: sklearn.ensemble.NoSuchClassifier",
            "sklearn.ensemble.NoSuchClassifier",
        ),
        (
            "estimator: sklearn.ensemble.HistGradientBoostingClassifier",
            "estimator: lightgbn.LGBMClassifier",
            "lightgbn.LGBMClassifier",
        ),
        ("- roc_auc >= 0.60", "- roc_auk >= 0.60", "roc_auk"),
    ],
    ids=[
        "missing-target",
        "estimator-not-in-module",
        "estimator-module-missing",
        "gate-unknown-metric",
    ],
)
def test_bad_project_exits_1_with_one_line(
    project: Path, old: str, new: str, expected: str
) -> None:
    edit_yaml(project, old, new)
    done = cli(project, "run")
    assert done.returncode == 1, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert "Traceback" not in done.stderr


def test_malformed_csv_source_exits_1(project: Path) -> None:
    (project / "data" / "broken.csv").write_text('a,b,late\n1,2,0\n3,"4,1\n5\n')
    edit_yaml(project, "source: data/flights.parquet", "source: data/broken.csv")
    done = cli(project, "run")
    assert done.returncode == 1
    assert "broken.csv" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_all_null_column_and_type_change_are_rejected(project: Path) -> None:
    import pandas as pd

    kyklos.run(project)
    frame = pd.read_parquet(project / "data" / "flights.parquet")
    changed = frame.assign(distance=frame["distance"].astype(str) + " mi", temp=float("nan"))
    changed.to_parquet(project / "data" / "flights.parquet")
    done = cli(project, "run")
    assert done.returncode == 1
    message = done.stderr.strip()
    assert "distance" in message and "numeric" in message and "categorical" in message
    assert "temp" in message


def test_gates_fail_on_a_bad_model_and_promotion_is_refused_unless_forced(project: Path) -> None:
    kyklos.run(project)
    done = cli(
        project,
        "run",
        "--set",
        "model.estimator=sklearn.dummy.DummyClassifier",
        "--set",
        "model.params={}",
        "--fail-on-gates",
        "--json",
    )
    assert done.returncode == 1
    outcome = json.loads(done.stdout)
    assert outcome["gates_passed"] is False
    assert outcome["aliases"] == []
    refused = cli(project, "models", "promote", str(outcome["model_version"]), "--reason", "try")
    assert refused.returncode == 1
    assert "failed its gates" in refused.stderr
    no_reason = cli(project, "models", "promote", str(outcome["model_version"]), "--force")
    assert no_reason.returncode == 1
    forced = cli(
        project,
        "models",
        "promote",
        str(outcome["model_version"]),
        "--force",
        "--reason",
        "baseline needed for an A/B test",
        "--json",
    )
    assert forced.returncode == 0, forced.stderr
    history = kyklos.alias_history(project=project, alias="champion")
    assert history[-1].forced is True
    assert history[-1].reason == "baseline needed for an A/B test"
    assert history[-1].to_version == outcome["model_version"]


def test_regression_project(project: Path) -> None:
    edit_yaml(project, "target: late ", "target: arr_delay ")
    edit_yaml(project, "drop: [arr_delay]", "drop: [late]")
    edit_yaml(
        project,
        "estimator: sklearn.ensemble.HistGradientBoostingClassifier",
        "estimator: sklearn.ensemble.HistGradientBoostingRegressor",
    )
    edit_yaml(
        project,
        "metrics: [roc_auc, average_precision, accuracy, f1, log_loss]",
        "metrics: [rmse, mae, r2]",
    )
    text = (project / "kyklos.yaml").read_text()
    text = text.replace(
        "  - roc_auc >= 0.60\n  - roc_auc >= champion.roc_auc - 0.01\n", "  - rmse <= 1000\n"
    )
    (project / "kyklos.yaml").write_text(text)
    outcome = kyklos.run(project)
    assert set(outcome.metrics) == {"rmse", "mae", "r2"}
    assert outcome.aliases == ["champion"]
    plots = {a.path for a in _client(project).list_artifacts(outcome.run_id, "plots")}
    assert "plots/residuals.png" in plots


def test_lightgbm_estimator_by_import_path(project: Path) -> None:
    pytest.importorskip("lightgbm", reason="lightgbm is in the [dev] extra; CI installs it")
    edit_yaml(
        project,
        "estimator: sklearn.ensemble.HistGradientBoostingClassifier",
        "estimator: lightgbm.LGBMClassifier",
    )
    edit_yaml(project, "max_iter: 100", "n_estimators: 50")
    edit_yaml(project, "learning_rate: 0.1", "verbose: -1")
    first = kyklos.run(project)
    again = kyklos.run(project, no_cache=True)
    assert first.aliases == ["champion"]
    assert first.metrics["roc_auc"] > 0.5
    assert again.predictions_digest == first.predictions_digest  # seeded: bitwise identical
