"""Model versions: registered in MLflow and in the metadata DB, found by reference."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from kyklos.errors import NotFoundError
from kyklos.registry import ModelRegistry, directory_digest, evaluate_gates, promote
from kyklos.store.schema import events, model_versions

from .conftest import MLFLOW_IMPORT_WARNINGS, RegisterFn

pytestmark = list(MLFLOW_IMPORT_WARNINGS)


def test_register_records_version_in_mlflow_and_db(
    registry: ModelRegistry, register: RegisterFn, logged_model: tuple[str, str]
) -> None:
    _, model_uri = logged_model
    profile = {"features": {"x1": {"mean": 0.0}}}
    version = register(
        roc_auc=0.85, dataset_version_id=None, profile=profile, signature={"inputs": []}
    )
    assert version.version == 1
    assert version.gates_passed is True
    assert version.model_uri == model_uri
    with registry.tracker.model_files(model_uri) as folder:
        assert version.model_hash == directory_digest(folder)

    mlflow_version = registry.tracker.client.get_model_version("flights", "1")
    assert mlflow_version.tags["kyklos.gates_passed"] == "true"
    assert mlflow_version.tags["kyklos.model_hash"] == version.model_hash
    assert mlflow_version.tags["kyklos.gate.0"].startswith("roc_auc >= 0.80 → passed")
    assert mlflow_version.run_id == version.run_id

    stored = registry.get(1)
    assert stored.profile == profile
    assert stored.signature == {"inputs": []}
    assert stored.metrics == version.metrics
    assert stored.gate_results == version.gate_results
    assert stored.created_at.tzinfo is not None
    with registry.db.read() as conn:
        kinds = [r.kind for r in conn.execute(select(events.c.kind))]
    assert kinds == ["model.registered"]


def test_failed_gates_are_stored(registry: ModelRegistry, register: RegisterFn) -> None:
    version = register(roc_auc=0.7)
    stored = registry.get(version.version)
    assert stored.gates_passed is False
    assert stored.gate_results[0].passed is False
    assert (
        registry.tracker.client.get_model_version("flights", "1").tags["kyklos.gates_passed"]
        == "false"
    )


@pytest.mark.parametrize(
    "ref", [2, "2", "v2", "V2", "latest"], ids=["int", "str", "v", "V", "latest"]
)
def test_get_by_reference(registry: ModelRegistry, register: RegisterFn, ref: Any) -> None:
    register()
    register()
    assert registry.get(ref).version == 2


def test_get_by_alias(registry: ModelRegistry, register: RegisterFn) -> None:
    register()
    register()
    assert registry.champion() is None
    assert registry.champion_metrics() is None
    promote(registry, 2, reason="best", actor="alice")
    assert registry.get("champion").version == 2
    assert registry.get("Champion").aliases == ("champion",)
    assert registry.champion_metrics() == {"roc_auc": 0.85, "accuracy": 0.8}
    assert registry.aliases() == {"champion": 2}


def test_unknown_version_lists_existing_ones(registry: ModelRegistry, register: RegisterFn) -> None:
    register()
    register()
    with pytest.raises(
        NotFoundError, match=r"no version 7; existing versions: v1, v2; aliases: none set"
    ):
        registry.get(7)
    with pytest.raises(
        NotFoundError, match=r"no 'challenger' alias set; existing versions: v1, v2"
    ):
        registry.get("challenger")


def test_no_versions_yet(registry: ModelRegistry) -> None:
    with pytest.raises(NotFoundError, match=r"has no versions yet.*kyklos run"):
        registry.get("champion")
    assert registry.list() == []


def test_list_is_ordered_and_light(registry: ModelRegistry, register: RegisterFn) -> None:
    register(profile={"big": list(range(100))})
    register(roc_auc=0.7)
    promote(registry, 1, reason="first")
    listed = registry.list()
    assert [(v.version, v.aliases, v.gates_passed) for v in listed] == [
        (1, ("champion",), True),
        (2, (), False),
    ]
    assert listed[0].profile is None
    assert registry.list(full=True)[0].profile == {"big": list(range(100))}
    assert "profile" not in listed[0].to_dict(include_profile=False)


def test_register_needs_the_run_row_and_leaves_nothing_behind(
    registry: ModelRegistry, logged_model: tuple[str, str]
) -> None:
    run_id, model_uri = logged_model  # logged in MLflow, but no `runs` row in the metadata DB
    report = evaluate_gates([], {"roc_auc": 0.9}, None)
    with pytest.raises(NotFoundError, match="not recorded in the metadata DB"):
        registry.register(
            run_id=run_id, model_uri=model_uri, metrics={"roc_auc": 0.9}, gate_report=report
        )
    versions = registry.tracker.client.search_model_versions("name='flights'")
    assert versions == []  # the MLflow version was deleted again
    with registry.db.read() as conn:
        assert conn.execute(select(model_versions)).first() is None


def test_for_project_uses_the_project_stores(tmp_path: Any, mlflow_db: Any) -> None:
    from kyklos.config import load_project

    (tmp_path / "kyklos.yaml").write_text(
        "name: churn\ndata: {source: data.csv, target: y}\ntracking: {registered_model: churn-model}\n"
    )
    project = load_project(tmp_path, env={})
    registry = ModelRegistry.for_project(project)
    assert registry.model_name == "churn-model"
    assert registry.project == "churn"
    assert registry.db.url == project.db_url
    assert registry.tracker.tracking_uri == project.tracking_uri
    assert registry.tracker.artifact_location == project.mlflow_artifacts_uri
