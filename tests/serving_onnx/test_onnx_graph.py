"""build_onnx on small pipelines made by kyklos's own build_model: edge cases and refusals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from kyklos.config.project import PreprocessingConfig
from kyklos.errors import ServingError
from kyklos.pipeline.train import build_model, fit_model
from kyklos.serving.model import FeatureSpec
from kyklos.serving.onnx_graph import build_onnx


def _frame(rows: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    return pd.DataFrame(
        {
            "x": np.where(rng.random(rows) < 0.1, np.nan, x),
            "empty": np.full(rows, np.nan),  # all missing in training: the imputer drops it
            "colour": rng.choice(["red", "green", "blue", None], size=rows),
            "y": (x + rng.normal(scale=0.5, size=rows) > 0).astype(int),
        }
    )


FEATURES = (
    FeatureSpec("x", "numeric", True),
    FeatureSpec("empty", "numeric", True),
    FeatureSpec("colour", "categorical", True),
)


def _fitted(frame: pd.DataFrame, **preprocessing: Any) -> Any:
    model = build_model(
        estimator="sklearn.linear_model.LogisticRegression",
        params={},
        preprocessing=PreprocessingConfig(**preprocessing),
        numeric=["x", "empty"],
        categorical=["colour"],
        seed=0,
    )
    with pytest.warns(UserWarning, match="Skipping features without any observed values"):
        return fit_model(model, frame[["x", "empty", "colour"]], frame["y"], seed=0)


def test_dropped_empty_column_and_missing_values_match_sklearn() -> None:
    import onnxruntime as ort

    frame = _frame()
    model = _fitted(frame)
    graph = build_onnx(model, FEATURES, task="classification", where="tiny v1")
    session = ort.InferenceSession(graph.model, providers=["CPUExecutionProvider"])
    probe = frame.iloc[:50].copy()
    probe.loc[probe.index[0], "colour"] = "purple"  # unseen
    probe.loc[probe.index[1], "empty"] = 5.0  # ignored: the column was dropped in training
    feeds = {
        "x": probe["x"].to_numpy(np.float64).reshape(-1, 1),
        "empty": probe["empty"].to_numpy(np.float64).reshape(-1, 1),
        "colour": probe["colour"].fillna("").to_numpy(object).reshape(-1, 1),
    }
    with pytest.warns(UserWarning):  # scikit-learn: "Found unknown categories ... all zeros"
        expected = model.predict_proba(probe[["x", "empty", "colour"]])
    (proba,) = session.run(["probabilities"], feeds)
    np.testing.assert_allclose(proba, expected, atol=1e-6)
    assert graph.width == 1 + 4  # x, and one-hot colour (blue, green, red, __missing__)


def test_encoder_that_refuses_unknown_categories_is_not_exported() -> None:
    model = _fitted(_frame(), unknown="error")
    with pytest.raises(ServingError, match="refuses categories unseen in training") as info:
        build_onnx(model, FEATURES, task="classification", where="tiny v1")
    assert "model.preprocessing.unknown: ignore" in str(info.value)


def test_empty_string_category_is_refused() -> None:
    frame = _frame()
    frame["colour"] = frame["colour"].replace("red", "")
    model = _fitted(frame)
    with pytest.raises(ServingError, match="empty string as a category"):
        build_onnx(model, FEATURES, task="classification", where="tiny v1")


def test_a_model_that_is_not_a_kyklos_pipeline_is_refused() -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(np.array([[0.0], [1.0]]), [0, 1])
    with pytest.raises(ServingError, match="the model is a LogisticRegression"):
        build_onnx(
            model, (FeatureSpec("x", "numeric", False),), task="classification", where="m v1"
        )


def test_multiclass_probabilities_match_sklearn() -> None:
    import onnxruntime as ort

    frame = _frame(rows=600, seed=5).drop(columns=["empty"])
    frame["y"] = np.digitize(frame["x"].fillna(0.0), [-0.5, 0.5])  # three classes
    model = build_model(
        estimator="sklearn.ensemble.HistGradientBoostingClassifier",
        params={"max_iter": 20},
        preprocessing=PreprocessingConfig(encode="ordinal"),
        numeric=["x"],
        categorical=["colour"],
        seed=0,
    )
    fit_model(model, frame[["x", "colour"]], frame["y"], seed=0)
    features = (FEATURES[0], FEATURES[2])
    graph = build_onnx(model, features, task="classification", where="tiny v1")
    session = ort.InferenceSession(graph.model, providers=["CPUExecutionProvider"])
    feeds = {
        "x": frame["x"].to_numpy(np.float64).reshape(-1, 1),
        "colour": frame["colour"].fillna("").to_numpy(object).reshape(-1, 1),
    }
    label, proba = session.run(["label", "probabilities"], feeds)
    expected = model.predict_proba(frame[["x", "colour"]])
    assert proba.shape == (600, 3)
    np.testing.assert_allclose(proba, expected, atol=1e-5)
    np.testing.assert_array_equal(label, model.predict(frame[["x", "colour"]]))
