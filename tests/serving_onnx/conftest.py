"""One trained flights project for the ONNX tests: v1 (champion, exported) and v2 (challenger,
not exported). Trained and exported once per session; a test that changes it restores it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import kyklos
from kyklos.config import Project, load_project
from kyklos.serving.onnx_runtime import export_keys


@pytest.fixture(scope="session")
def onnx_project(tmp_path_factory: pytest.TempPathFactory, _mlflow_template: Path) -> Path:
    from kyklos.api.models import export_model

    root = tmp_path_factory.mktemp("onnx") / "flights"
    kyklos.init_project(root, rows=6000)
    (root / ".kyklos").mkdir(exist_ok=True)
    shutil.copyfile(_mlflow_template, root / ".kyklos" / "mlflow.db")
    assert kyklos.run(root).model_version == 1
    assert kyklos.run(root, overrides={"model.params.max_iter": 30}).model_version == 2
    export_model("v1", project=root)
    return root


@pytest.fixture
def project(onnx_project: Path) -> Project:
    return load_project(onnx_project)


def export_path(project: Project, version: int, part: str) -> Path:
    """The local file of one part (model, sample, record) of a version's export."""
    return Path(project.artifacts_uri) / export_keys(project.registered_model, version)[part]


@pytest.fixture(scope="session")
def feature_frame(onnx_project: Path) -> Any:
    """The project's data after its user steps (the model's input features and more)."""
    import pandas as pd

    from kyklos.serving.batch import run_user_steps, user_steps

    frame = pd.read_parquet(onnx_project / "data" / "flights.parquet")
    return run_user_steps(user_steps(load_project(onnx_project)), frame)
