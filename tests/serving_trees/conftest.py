"""One scaffolded, trained flights project for the numpy-trees tests (trained once per session)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import kyklos
from kyklos.serving.model import LoadedModel


@pytest.fixture(scope="session")
def trees_project(tmp_path_factory: pytest.TempPathFactory, _mlflow_template: Path) -> Path:
    """A project with one registered champion (v1, HistGradientBoosting), trained on 6,000
    flights. Do not change it."""
    root = tmp_path_factory.mktemp("trees") / "flights"
    kyklos.init_project(root, rows=6000)
    (root / ".kyklos").mkdir(exist_ok=True)
    shutil.copyfile(_mlflow_template, root / ".kyklos" / "mlflow.db")
    kyklos.run(root)
    return root


@pytest.fixture(scope="session")
def champion(trees_project: Path) -> LoadedModel:
    from kyklos.config import load_project
    from kyklos.serving.model import load_version

    return load_version(load_project(trees_project), "champion", runtime="sklearn")


@pytest.fixture(scope="session")
def feature_frame(trees_project: Path) -> Any:
    """The project's data after its user steps (the model's input features and more)."""
    import pandas as pd

    from kyklos.config import load_project
    from kyklos.serving.batch import run_user_steps, user_steps

    frame = pd.read_parquet(trees_project / "data" / "flights.parquet")
    return run_user_steps(user_steps(load_project(trees_project)), frame)
