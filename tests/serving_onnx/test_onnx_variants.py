"""Other preprocessing and estimators kyklos trains: ordinal encoding, no scaling, a linear model,
a random forest, a regressor. Each exports with parity and serves through onnxruntime."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kyklos
from kyklos.config import load_project
from kyklos.serving.batch import frame_columns
from kyklos.serving.model import load_version
from kyklos.serving.onnx_export import export_onnx


def _regressor(root: Path) -> None:
    path = root / "kyklos.yaml"
    text = path.read_text()
    for old, new in [
        ("target: late", "target: arr_delay"),
        ("drop: [arr_delay]", "drop: [late]"),
        ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"),
        ("[roc_auc, average_precision, accuracy, f1, log_loss]", "[rmse, mae]"),
        ("  - roc_auc >= 0.60\n  - roc_auc >= champion.roc_auc - 0.01\n", ""),
        ("gates:\n", "gates: []\n"),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text)


VARIANTS: dict[str, tuple[dict[str, Any], Callable[[Path], None] | None]] = {
    "ordinal-logistic": (
        {
            "model.preprocessing.encode": "ordinal",
            "model.estimator": "sklearn.linear_model.LogisticRegression",
            "model.params": {"max_iter": 2000},
        },
        None,
    ),
    "unscaled-random-forest": (
        {
            "model.preprocessing.scale": False,
            "model.preprocessing.numeric_impute": "mean",
            "model.estimator": "sklearn.ensemble.RandomForestClassifier",
            "model.params": {"n_estimators": 20, "max_depth": 8},
        },
        None,
    ),
    "hgb-regressor": ({}, _regressor),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS), ids=sorted(VARIANTS))
def variant(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    _mlflow_template: Path,
) -> Path:
    overrides, edit = VARIANTS[request.param]
    root = tmp_path_factory.mktemp("variant") / "p"
    kyklos.init_project(root, rows=2000)
    (root / ".kyklos").mkdir(exist_ok=True)
    shutil.copyfile(_mlflow_template, root / ".kyklos" / "mlflow.db")
    if edit is not None:
        edit(root)
    assert kyklos.run(root, overrides=overrides).model_version == 1
    return root


def test_variant_exports_and_serves_like_sklearn(variant: Path) -> None:
    import pandas as pd

    from kyklos.serving.batch import user_steps

    project = load_project(variant)
    exported = export_onnx(project, 1, sample_rows=1000)
    assert exported.parity.rows == 1000 and exported.parity.passed
    assert exported.parity.agreement == 1.0 and exported.parity.max_diff < 1e-4

    fast = load_version(project, 1)
    slow = load_version(project, 1, runtime="sklearn")
    assert fast.runtime == "onnx", fast.runtime_reason
    frame = pd.read_parquet(variant / "data" / "flights.parquet").iloc[:300].copy()
    for fn in user_steps(project):
        frame = fn(frame)
    frame.loc[frame.index[0], "dest"] = "NOWHERE"
    frame.loc[frame.index[1], "carrier"] = None
    columns = frame_columns(frame, fast.features)
    label, score = fast.predict(columns)
    expected_label, expected_score = slow.predict(columns)
    if fast.task == "classification":
        np.testing.assert_array_equal(label, expected_label)
        assert score is not None and expected_score is not None
        np.testing.assert_allclose(score, expected_score, atol=1e-5)
    else:
        assert score is None and expected_score is None
        np.testing.assert_allclose(label, expected_label, rtol=1e-4, atol=1e-3)
