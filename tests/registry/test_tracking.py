"""Tracking round trips on a real MLflow SQLite store with local artifacts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from kyklos.errors import NotFoundError, RegistryError
from kyklos.registry import Tracker, directory_digest, environment, git_state, run_context_tags
from kyklos.registry.signature import column_type, pip_requirements

from .conftest import MLFLOW_IMPORT_WARNINGS

pytestmark = list(MLFLOW_IMPORT_WARNINGS)


def _model_dir(tracker: Tracker, model_uri: str) -> Path:
    with tracker.model_files(model_uri) as folder:
        return folder


def test_run_round_trip(tracker: Tracker, tmp_path: Path) -> None:
    run_id = tracker.start_run(run_name="round-trip", tags={"kyklos.project": "flights"})
    tracker.log(
        run_id,
        params={"max_iter": 200, "features": ["a", "b"], "long": "x" * 7000, "none": None},
        metrics={"roc_auc": 0.81, "accuracy": np.float64(0.75)},
        tags={"kyklos.seed": 42},
    )
    tracker.log_dataset(
        run_id,
        name="flights",
        digest="ab" * 32,
        source=str(tmp_path / "flights.parquet"),
        n_rows=6000,
        schema={"dep_delay": "double", "carrier": "string", "time_hour": "timestamp[us, tz=UTC]"},
    )
    tracker.log_bytes(run_id, "plots/roc.png", b"\x89PNG fake")
    tracker.log_json(run_id, "environment.json", {"python": "3.11"})
    tracker.end_run(run_id)

    run = tracker.get_run(run_id)
    assert run.status == "FINISHED"
    assert run.params["max_iter"] == "200"
    assert run.params["features"] == '["a", "b"]'
    assert run.params["none"] == "None"
    assert len(run.params["long"]) == 6000 and run.params["long"].endswith("...")
    assert run.metrics == {"roc_auc": 0.81, "accuracy": 0.75}
    assert run.tags["kyklos.seed"] == "42"
    assert run.tags["mlflow.runName"] == "round-trip"
    assert run.artifact_uri.startswith((tmp_path / ".kyklos" / "mlruns").as_uri())
    assert run.inputs[0]["digest"] == "ab" * 32
    assert run.inputs[0]["context"] == "training"
    assert run.inputs[0]["profile"] == {"num_rows": 6000}
    assert run.to_dict()["run_id"] == run_id

    # What the MLflow UI reads: the run's dataset inputs, with digest, schema and source.
    raw = tracker.client.get_run(run_id)
    (dataset_input,) = raw.inputs.dataset_inputs
    assert dataset_input.dataset.digest == ("ab" * 32)[:36]
    assert dataset_input.dataset.source_type == "local"
    assert json.loads(dataset_input.dataset.source) == {"uri": str(tmp_path / "flights.parquet")}
    schema = json.loads(dataset_input.dataset.schema)["mlflow_colspec"]
    assert [(c["name"], c["type"]) for c in schema] == [
        ("dep_delay", "double"),
        ("carrier", "string"),
        ("time_hour", "datetime"),
    ]
    artifacts = {a.path for a in tracker.client.list_artifacts(run_id)}
    assert artifacts == {"plots", "environment.json"}
    roc = Path(tracker.client.download_artifacts(run_id, "plots/roc.png", str(tmp_path)))
    assert roc.read_bytes() == b"\x89PNG fake"


def test_dataset_schema_from_kyklos_table_schema(tracker: Tracker) -> None:
    run_id = tracker.start_run()
    schema = {
        "format": "kyklos.schema/1",
        "columns": [
            {
                "name": "carrier",
                "kind": "categorical",
                "arrow_type": "dictionary<values=string, indices=int32, ordered=0>",
            },
            {"name": "distance", "kind": "numeric", "arrow_type": "int64"},
            {"name": "time_hour", "kind": "datetime", "arrow_type": "timestamp[us, tz=UTC]"},
        ],
    }
    tracker.log_dataset(
        run_id, name="d", digest="e" * 64, source="s3://bucket/d.parquet", schema=schema
    )
    (item,) = tracker.client.get_run(run_id).inputs.dataset_inputs
    assert item.dataset.source_type == "s3"
    assert [(c["name"], c["type"]) for c in json.loads(item.dataset.schema)["mlflow_colspec"]] == [
        ("carrier", "string"),
        ("distance", "long"),
        ("time_hour", "datetime"),
    ]


def test_log_splits_batches_at_mlflow_limits(tracker: Tracker) -> None:
    run_id = tracker.start_run()
    params = {f"p{i}": i for i in range(250)}
    metrics = {f"m{i}": float(i) for i in range(1500)}
    tags = {f"t{i}": "v" for i in range(150)}
    tracker.log(run_id, params=params, metrics=metrics, tags=tags)
    run = tracker.get_run(run_id)
    assert len(run.params) == 250
    assert len(run.metrics) == 1500
    assert run.metrics["m1499"] == 1499.0
    assert {k for k in run.tags if k.startswith("t")} == set(tags)


def _flights_pipeline(frame: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    columns = ["carrier", "origin", "distance", "sched_dep_time", "temp", "time_hour"]
    data = frame[columns].head(400)
    target = frame["late"].head(400)
    model = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        (
                            "cat",
                            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                            ["carrier", "origin"],
                        )
                    ],
                    remainder="passthrough",
                ),
            ),
            ("hgb", HistGradientBoostingClassifier(max_iter=15, random_state=0)),
        ]
    )
    model.fit(data.drop(columns=["time_hour"]), target)
    return model, data.drop(columns=["time_hour"])


@pytest.mark.parametrize("kind", ["logistic", "hgb_pipeline"], ids=["logistic", "hgb-pipeline"])
def test_logged_model_loads_back_and_predicts_the_same(
    kind: str,
    tracker: Tracker,
    toy_model: Any,
    toy_frame: tuple[pd.DataFrame, pd.Series],
    flights_small_frame: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow.pyfunc
    import mlflow.sklearn

    if kind == "logistic":
        model, data = toy_model, toy_frame[0]
    else:
        model, data = _flights_pipeline(flights_small_frame)
    run_id = tracker.start_run()
    tracker.log(run_id, metrics={"roc_auc": 0.7})
    uri = tracker.log_model(run_id, model, input_example=data.head(5))
    tracker.end_run(run_id)

    assert uri.startswith("models:/m-")
    # MLflow's loaders resolve models:/ URIs through the process-wide tracking URI
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.tracking_uri)
    sk = mlflow.sklearn.load_model(uri)
    np.testing.assert_array_equal(sk.predict(data), model.predict(data))
    pyfunc = mlflow.pyfunc.load_model(uri)
    np.testing.assert_array_equal(np.asarray(pyfunc.predict(data)), model.predict(data))

    folder = _model_dir(tracker, uri)
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "cloudpickle"
    assert mlmodel["run_id"] == run_id
    assert mlmodel["metadata"]["kyklos_version"]
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert [c["name"] for c in inputs] == list(data.columns)
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert any(r.startswith("scikit-learn==") for r in requirements)
    assert (folder / "input_example.json").exists()

    # The run lists the model as its output; the logged model carries the run's metrics.
    raw = tracker.client.get_run(run_id)
    assert [o.model_id for o in raw.outputs.model_outputs] == [uri.removeprefix("models:/")]
    logged = tracker.client.get_logged_model(uri.removeprefix("models:/"))
    assert str(logged.status) in {"READY", "LoggedModelStatus.READY"}
    assert {m.key for m in logged.metrics} == {"roc_auc"}


def test_signature_types_follow_pandas_dtypes(flights_small_frame: pd.DataFrame) -> None:
    frame = flights_small_frame
    assert column_type(frame["carrier"].dtype) == "string"
    assert column_type(frame["time_hour"].dtype) == "datetime"
    assert column_type(frame["late"].dtype) == "integer"
    assert column_type(frame["arr_delay"].dtype) == "double"
    assert column_type(pd.Series([True, False]).dtype) == "boolean"
    assert column_type(pd.Series([1, None], dtype="Int64").dtype) == "long"
    assert column_type(pd.Series(["a"], dtype="category").dtype) == "string"


def test_pip_requirements_are_pinned_and_follow_the_model(toy_model: Any) -> None:
    from sklearn import __version__ as sklearn_version

    requirements = pip_requirements(toy_model)
    assert f"scikit-learn=={sklearn_version}" in requirements
    assert all("==" in r for r in requirements)
    assert pip_requirements(toy_model, extra=["extra-pkg>=1"])[-1] == "extra-pkg>=1"


def test_experiment_is_created_once_with_its_artifact_location(
    tracking_uri: str, tmp_path: Path
) -> None:
    location = (tmp_path / "elsewhere").as_uri()
    first = Tracker(tracking_uri, artifact_location=location, experiment="shared")
    second = Tracker(tracking_uri, artifact_location=None, experiment="shared")
    assert first.experiment_id == second.experiment_id
    assert first.client.get_experiment(first.experiment_id).artifact_location == location


def test_deleted_experiment_is_a_clear_error(tracking_uri: str) -> None:
    tracker = Tracker(tracking_uri, experiment="gone")
    tracker.client.delete_experiment(tracker.experiment_id)
    with pytest.raises(RegistryError, match="deleted"):
        _ = Tracker(tracking_uri, experiment="gone").experiment_id


def test_unknown_run_is_not_found(tracker: Tracker) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        tracker.get_run("0" * 32)


@pytest.mark.parametrize(
    "path", ["../escape.txt", "/abs.txt", ""], ids=["parent", "absolute", "empty"]
)
def test_artifact_paths_stay_inside_the_run(tracker: Tracker, path: str) -> None:
    run_id = tracker.start_run()
    with pytest.raises(RegistryError, match="must be relative"):
        tracker.log_bytes(run_id, path, b"x")


def test_mlflow_errors_become_registry_errors(tracker: Tracker) -> None:
    run_id = tracker.start_run()
    tracker.log(run_id, params={"seed": 1})
    with pytest.raises(RegistryError, match=r"cannot log to run .* MLflow at sqlite"):
        tracker.log(run_id, params={"seed": 2})  # MLflow params are immutable


def test_directory_digest_sees_content_and_names(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    first = directory_digest(folder)
    assert directory_digest(folder) == first
    (folder / "a.txt").write_text("A")
    changed = directory_digest(folder)
    assert changed != first
    (folder / "a.txt").rename(folder / "c.txt")
    assert directory_digest(folder) not in {first, changed}


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def test_git_state(tmp_path: Path) -> None:
    assert git_state(tmp_path) is None
    _git(tmp_path, "init", "-q", "-b", "main")
    assert git_state(tmp_path) is not None
    assert git_state(tmp_path).commit is None  # type: ignore[union-attr]
    (tmp_path / "train.py").write_text("print(1)\n")
    _git(tmp_path, "add", "train.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    clean = git_state(tmp_path / "train.py")
    assert clean is not None and clean.dirty is False and clean.branch == "main"
    assert clean.commit is not None and len(clean.commit) == 40
    (tmp_path / "untracked.txt").write_text("not code\n")
    assert git_state(tmp_path).dirty is False  # type: ignore[union-attr]
    (tmp_path / "train.py").write_text("print(2)\n")
    dirty = git_state(tmp_path)
    assert dirty is not None and dirty.dirty is True and dirty.commit == clean.commit
    tags = run_context_tags(git=dirty, source="kyklos run", actor="alice")
    assert tags["mlflow.source.git.commit"] == clean.commit
    assert tags["kyklos.git.dirty"] == "true"
    assert tags["mlflow.user"] == "alice"


def test_environment_lists_the_model_packages() -> None:
    env = environment()
    for name in ("python", "platform", "kyklos", "numpy", "pandas", "scikit-learn", "mlflow"):
        assert env[name] and env[name] != "not installed", name
