"""The team setup, end to end: a real ``mlflow server`` (proxied artifacts) plus PostgreSQL.

A scaffolded project is trained with ``KYKLOS_TRACKING_URI=http://...`` and
``KYKLOS_DB_URL=postgresql+psycopg://...`` and then read back through MLflow's REST API, the
metadata DB and the ``kyklos`` CLI: nothing may land in the project's embedded stores, nothing
may depend on MLflow's process-wide tracking URI, and ``--json`` output must stay pure JSON.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

import kyklos
from integration.servers import KYKLOS, MLFLOW_IMPORT_WARNINGS, MlflowServer, clean_env
from kyklos.registry.tracking import directory_digest

pytestmark = [pytest.mark.slow, pytest.mark.postgres, *MLFLOW_IMPORT_WARNINGS]

ROWS = 8000
PLOTS = {"plots/roc_curve.png", "plots/pr_curve.png", "plots/confusion_matrix.png"}
GIT = ["git", "-c", "user.name=kyklos-test", "-c", "user.email=test@kyklos.invalid"]


def test_team_setup_tracks_registers_reproduces_and_promotes(
    tmp_path: Path, mlflow_server: MlflowServer, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    project = tmp_path / "p"
    kyklos.init_project(project, rows=ROWS)
    commit = _git_commit_all(project)
    env = clean_env(KYKLOS_TRACKING_URI=mlflow_server.url, KYKLOS_DB_URL=pg_url)
    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)

    # -- kyklos run, through the CLI -----------------------------------------------------------
    outcome = _cli_json(["run", "--json"], cwd=project, env=env, server=mlflow_server)
    run_id = outcome["run_id"]
    assert outcome["model_version"] == 1
    assert outcome["aliases"] == ["champion"], outcome["alias_note"]
    assert outcome["tracking_uri"] == mlflow_server.url

    # -- the run, as the server stores it --------------------------------------------------------
    dataset_digest = _dataset_digest(pg_url, outcome["dataset_version"])
    run = client.get_run(run_id)
    _assert_run(run, outcome, dataset_digest=dataset_digest, commit=commit)
    _assert_plots(client, run_id, tmp_path / "plots")

    # -- the logged model: on the server, with a signature; kyklos's hash is of these files -----
    versions = _cli_json(["models", "list", "--json"], cwd=project, env=env, server=mlflow_server)
    assert [(v["version"], v["aliases"], v["run_id"]) for v in versions] == [
        (1, ["champion"], run_id)
    ]
    v1 = versions[0]
    model_id = v1["model_uri"].removeprefix("models:/")
    logged = client.get_logged_model(model_id)
    assert logged.source_run_id == run_id
    assert str(logged.status) in {"READY", "LoggedModelStatus.READY"}
    assert logged.artifact_location.startswith("mlflow-artifacts:/"), logged.artifact_location
    local_model = _download(logged.artifact_location, tmp_path / "model", mlflow_server)
    assert v1["model_hash"] == directory_digest(local_model)
    _assert_signature(local_model)

    # -- the registry: version 1 with the champion alias, pointing at the logged model ---------
    registered = client.get_registered_model("p")
    assert registered.aliases == {"champion": "1"}
    mv = client.get_model_version("p", "1")
    assert mv.run_id == run_id
    assert mv.source == logged.artifact_location
    assert mv.tags["kyklos.model_hash"] == v1["model_hash"]
    assert mv.tags["kyklos.dataset_version"] == outcome["dataset_version"]
    assert mv.tags["kyklos.gates_passed"] == "true"

    # -- reproduce, through the CLI, against the same stores -----------------------------------
    report = _cli_json(["reproduce", run_id, "--json"], cwd=project, env=env, server=mlflow_server)
    assert report["identical"] is True, report
    assert report["rows_compared"] == ROWS // 5  # the time split's test fifth
    assert report["code_differences"] == []

    # -- a challenger, promoted and rolled back through the Python API -------------------------
    monkeypatch.chdir(tmp_path)  # anything written to the cwd by accident stays out of the repo
    monkeypatch.setenv("KYKLOS_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("KYKLOS_DB_URL", pg_url)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    second = kyklos.run(project, overrides={"model.params.learning_rate": 0.05})
    assert (second.model_version, second.aliases) == (2, ["challenger"]), second.alias_note
    assert client.get_registered_model("p").aliases == {"champion": "1", "challenger": "2"}

    kyklos.promote(2, project=project, reason="better roc_auc", actor="alice")
    assert client.get_registered_model("p").aliases == {"champion": "2"}
    kyklos.rollback(project=project, reason="complaints from ops", actor="bob")
    assert client.get_registered_model("p").aliases == {"champion": "1"}
    assert client.get_model_version_by_alias("p", "champion").version == "1"

    assert _alias_history(pg_url) == [
        ("champion", "promote", None, 1, "first model to pass its gates"),
        ("challenger", "set", None, 2, "passed its gates"),
        ("champion", "promote", 1, 2, "better roc_auc"),
        ("challenger", "clear", 2, None, "v2 became the champion"),
        ("champion", "rollback", 2, 1, "complaints from ops"),
    ]
    assert [c.actor for c in kyklos.alias_history(project)][-3:] == ["alice", "alice", "bob"]

    # -- nothing went to the embedded stores or to MLflow's default store in the cwd -----------
    folders = (tmp_path, project, project / ".kyklos")
    leftovers = {child.name for folder in folders for child in folder.iterdir()}
    assert not leftovers & {"mlflow.db", "mlruns", "kyklos.db"}, sorted(leftovers)
    experiment = client.get_experiment_by_name("p")
    assert experiment is not None
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), (
        experiment.artifact_location
    )
    assert list(mlflow_server.artifacts.rglob("MLmodel")), "no model files on the server"


# -- assertions ---------------------------------------------------------------------------------
def _assert_run(run: Any, outcome: dict[str, Any], *, dataset_digest: str, commit: str) -> None:
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith(f"p-{outcome['dataset_version']}")
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
    params = run.data.params
    assert params["estimator"] == "sklearn.ensemble.HistGradientBoostingClassifier"
    assert params["seed"] == "42"
    assert params["target"] == "late"
    assert params["split.method"] == "time"
    assert params["model.max_iter"] == "100"
    assert run.data.metrics == outcome["metrics"]  # floats survive JSON exactly
    assert set(run.data.metrics) == {"roc_auc", "average_precision", "accuracy", "f1", "log_loss"}
    tags = run.data.tags
    assert tags["kyklos.seed"] == "42"
    assert tags["kyklos.dataset"] == outcome["dataset_version"]
    assert tags["kyklos.dataset_digest"] == dataset_digest
    assert tags["kyklos.predictions_digest"] == outcome["predictions_digest"]
    assert tags["mlflow.source.git.commit"] == commit
    assert tags["kyklos.git.dirty"] == "false"
    assert tags["mlflow.user"]
    assert {f"kyklos.step.{s['name']}" for s in outcome["steps"]} <= set(tags)

    (dataset_input,) = run.inputs.dataset_inputs
    input_tags = {t.key: t.value for t in dataset_input.tags}
    assert dataset_input.dataset.name == "p"
    assert dataset_input.dataset.digest == dataset_digest[:36]
    assert input_tags["kyklos.digest"] == dataset_digest
    assert input_tags["mlflow.data.context"] == "training"
    assert json.loads(dataset_input.dataset.profile) == {"num_rows": ROWS}
    columns = {c["name"] for c in json.loads(dataset_input.dataset.schema)["mlflow_colspec"]}
    assert {"late", "carrier", "time_hour"} <= columns


def _assert_plots(client: Any, run_id: str, folder: Path) -> None:
    listed = {f.path for f in client.list_artifacts(run_id, "plots")}
    assert listed == PLOTS
    assert {f.path for f in client.list_artifacts(run_id, "kyklos")} >= {"kyklos/config.json"}
    png = Path(client.download_artifacts(run_id, "plots/roc_curve.png", str(folder)))
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def _assert_signature(model_dir: Path) -> None:
    from mlflow.models import Model

    model = Model.load(str(model_dir / "MLmodel"))
    assert model.signature is not None
    inputs = set(model.signature.inputs.input_names())
    assert {"carrier", "origin", "dest"} <= inputs
    assert not inputs & {"late", "arr_delay"}  # neither the target nor the leaking column
    assert model.signature.outputs is not None
    assert "sklearn" in model.flavors
    assert (model_dir / "input_example.json").is_file()


# -- helpers ------------------------------------------------------------------------------------
def _cli_json(args: list[str], *, cwd: Path, env: dict[str, str], server: MlflowServer) -> Any:
    """Run ``kyklos ARGS`` and parse its stdout, which must be JSON and nothing else."""
    done = subprocess.run(
        [str(KYKLOS), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, (
        f"kyklos {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}\n"
        f"--- mlflow server log ---\n{server.log_tail(15)}"
    )
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        head = "\n".join(done.stdout.splitlines()[:4])
        pytest.fail(f"kyklos {' '.join(args)} printed more than JSON on stdout ({exc}):\n{head}")


def _download(artifact_uri: str, folder: Path, server: MlflowServer) -> Path:
    from mlflow.artifacts import download_artifacts

    return Path(
        download_artifacts(artifact_uri=artifact_uri, dst_path=str(folder), tracking_uri=server.url)
    )


def _git_commit_all(folder: Path) -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            [*GIT, "-C", str(folder), *args], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "scaffold")
    return git("rev-parse", "HEAD")


def _dataset_digest(pg_url: str, dataset_id: str) -> str:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            digest = conn.execute(
                text("SELECT digest FROM dataset_versions WHERE id = :id"), {"id": dataset_id}
            ).scalar_one()
    finally:
        engine.dispose()
    return str(digest)


def _alias_history(pg_url: str) -> list[tuple[Any, ...]]:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT alias, action, from_version, to_version, reason "
                    "FROM alias_history WHERE model_name = 'p' ORDER BY id"
                )
            ).all()
    finally:
        engine.dispose()
    return [tuple(row) for row in rows]
