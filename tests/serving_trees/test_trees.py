"""The numpy trees (kyklos.serving.trees) give scikit-learn's labels and probabilities, and step
aside for what they do not replay."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression

from kyklos.config.project import PreprocessingConfig
from kyklos.pipeline.train import build_model, fit_model
from kyklos.serving import trees as trees_module
from kyklos.serving.batch import frame_columns
from kyklos.serving.model import FeatureSpec, LoadedModel
from kyklos.serving.trees import MAX_ROWS, CompiledTrees, compile_trees

RTOL = 1e-12


def assert_parity(estimator: Any, trees: CompiledTrees, X: np.ndarray) -> None:
    """Labels identical, probabilities (or values) within 1e-12 relative, in serving-size
    chunks."""
    for start in range(0, len(X), MAX_ROWS):
        rows = X[start : start + MAX_ROWS]
        labels = trees.predict(rows)
        assert labels is not None
        expected = estimator.predict(rows)
        if trees.classes is None:
            np.testing.assert_allclose(labels, expected, rtol=RTOL, atol=0)
            continue
        np.testing.assert_array_equal(labels, expected)
        proba = trees.predict_proba(rows)
        assert proba is not None
        np.testing.assert_allclose(proba, estimator.predict_proba(rows), rtol=RTOL, atol=0)


def split_nodes(estimator: Any) -> np.ndarray:
    nodes = np.concatenate([p.nodes for trees in estimator._predictors for p in trees])
    return nodes[nodes["is_leaf"] == 0]


# -- the flights champion, loaded as the server loads it -------------------------------------------
def test_the_flights_champion_is_served_by_the_numpy_trees(champion: LoadedModel) -> None:
    assert champion._compiled is not None
    assert champion._trees is not None, champion.trees_reason
    assert champion.trees_reason is None
    assert champion._trees.max_rows == MAX_ROWS


def test_flights_parity_on_real_rows_and_on_missing_values(
    champion: LoadedModel, feature_frame: Any
) -> None:
    X = champion._compiled.transform(frame_columns(feature_frame.iloc[:3000], champion.features))  # type: ignore[union-attr]
    assert X is not None and champion._trees is not None
    estimator = champion._estimator
    assert_parity(estimator, champion._trees, X)
    # the imputer keeps NaN from the trees; put some back to follow missing_go_to_left
    holes = X.copy()
    holes[np.random.default_rng(0).random(X.shape) < 0.2] = np.nan
    assert_parity(estimator, champion._trees, holes)


def test_flights_parity_on_rows_exactly_at_the_thresholds(
    champion: LoadedModel, feature_frame: Any
) -> None:
    X = champion._compiled.transform(frame_columns(feature_frame.iloc[:4], champion.features))  # type: ignore[union-attr]
    assert X is not None and champion._trees is not None
    split = split_nodes(champion._estimator)
    split = split[np.isfinite(split["num_threshold"])]
    rows = np.repeat(X, len(split), axis=0).reshape(len(X), len(split), -1)
    at = np.arange(len(split))
    features = split["feature_idx"].astype(np.intp)
    rows[:, at, features] = split["num_threshold"]  # exactly on the threshold: goes left
    above = rows.copy()
    above[:, at, features] = np.nextafter(split["num_threshold"], np.inf)  # goes right
    probe = np.concatenate((rows, above)).reshape(-1, X.shape[1])
    assert_parity(champion._estimator, champion._trees, probe)


@pytest.mark.parametrize(
    "n", [1, 8, MAX_ROWS, MAX_ROWS + 1, 500], ids=["1", "8", "max-rows", "above-max", "500"]
)
def test_served_answers_match_the_pipeline(
    champion: LoadedModel, feature_frame: Any, n: int
) -> None:
    rows = feature_frame.iloc[100 : 100 + n]
    prediction, score = champion.predict(frame_columns(rows, champion.features))
    pipeline = champion._model
    expected = pipeline.predict_proba(rows[list(pipeline.feature_names_in_)])[:, 1]
    assert score is not None and score.dtype == np.float64 and prediction.dtype == np.float64
    np.testing.assert_allclose(score, expected, rtol=RTOL, atol=0)
    np.testing.assert_array_equal(prediction, (expected >= champion.threshold).astype(np.float64))


# -- synthetic estimators ----------------------------------------------------------------------------
def synthetic(rows: int = 3000, seed: int = 0) -> np.ndarray:
    """Six columns, the first four 20 % missing, the fifth with few distinct values."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 6))
    X[:, :4][rng.random((rows, 4)) < 0.2] = np.nan
    X[:, 4] = np.round(X[:, 4] * 2) / 2
    return X


def target(kind: str, X: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    signal = (
        np.nan_to_num(X[:, 0])
        + 1.5 * np.isnan(X[:, 1])
        - np.isnan(X[:, 2])
        + X[:, 4]
        + 0.5 * rng.normal(size=len(X))
    )
    if kind == "binary":
        return (signal > 0.3).astype(int)
    if kind == "strings":
        return np.array(["low", "mid", "high"])[np.digitize(signal, [-0.5, 0.8])]
    if kind == "counts":
        return rng.poisson(np.exp(signal / 3)).astype(np.float64)
    return 3 * signal


CASES = {
    "binary": (HistGradientBoostingClassifier(max_iter=60, random_state=0), "binary"),
    "multiclass-strings": (HistGradientBoostingClassifier(max_iter=30, random_state=0), "strings"),
    "regressor": (HistGradientBoostingRegressor(max_iter=60, random_state=0), "values"),
    "poisson": (HistGradientBoostingRegressor(loss="poisson", max_iter=40), "counts"),
    "trees-over-64-leaves": (
        HistGradientBoostingClassifier(max_iter=15, max_leaf_nodes=100, random_state=0),
        "binary",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_synthetic_parity_with_missing_values_and_thresholds(case: str) -> None:
    from sklearn.base import clone

    template, kind = CASES[case]
    X = synthetic()
    estimator = clone(template).fit(X, target(kind, X))
    trees, reason = compile_trees(estimator)
    assert trees is not None, reason
    assert reason is None
    split = split_nodes(estimator)
    assert (split["missing_go_to_left"] == 1).any() and (split["missing_go_to_left"] == 0).any()
    leaves = max(int(p.nodes["is_leaf"].sum()) for it in estimator._predictors for p in it)
    walk = "_LevelForest" if leaves > 64 else "_BitmaskForest"
    assert type(trees.forest).__name__ == walk
    assert_parity(estimator, trees, synthetic(rows=2000, seed=1))
    assert_parity(estimator, trees, trees_module._probe(estimator, trees.width))


def test_splits_on_missing_values_alone_are_replayed() -> None:
    """A split that sends only the missing values right has an infinite threshold."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(2000, 2))
    X[rng.random(2000) < 0.3, 0] = np.nan
    y = np.isnan(X[:, 0]).astype(int) ^ (rng.random(2000) < 0.1)
    estimator = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y)
    assert np.isinf(split_nodes(estimator)["num_threshold"]).any()
    trees, reason = compile_trees(estimator)
    assert trees is not None, reason
    assert_parity(estimator, trees, synthetic(rows=500, seed=3)[:, :2])


def test_trees_of_a_single_leaf() -> None:
    X = np.ones((200, 3))  # nothing to split on
    y = np.random.default_rng(0).normal(size=200)
    estimator = HistGradientBoostingRegressor(max_iter=5).fit(X, y)
    assert all(len(p.nodes) == 1 for it in estimator._predictors for p in it)
    trees, reason = compile_trees(estimator)
    assert trees is not None, reason
    assert_parity(estimator, trees, np.array([[1.0, np.nan, -3.0], [np.nan] * 3]))


def test_infinities_are_compared_as_scikit_learn_compares_them() -> None:
    X = synthetic()
    estimator = HistGradientBoostingClassifier(max_iter=20).fit(X, target("binary", X))
    trees, _ = compile_trees(estimator)
    assert trees is not None
    infinite = synthetic(rows=200, seed=4)
    spots = np.random.default_rng(4).random(infinite.shape)
    infinite[spots < 0.1] = np.inf
    infinite[spots > 0.9] = -np.inf
    assert_parity(estimator, trees, infinite)


def test_matrices_of_another_shape_or_dtype_are_left_to_scikit_learn() -> None:
    X = synthetic()
    estimator = HistGradientBoostingClassifier(max_iter=5).fit(X, target("binary", X))
    trees, _ = compile_trees(estimator)
    assert trees is not None
    assert trees.predict(X[:2, :5]) is None  # another width
    assert trees.predict(X[:0]) is None  # no rows
    assert trees.predict(X[:2].astype(np.float32)) is None  # another dtype


# -- what falls back, and why ------------------------------------------------------------------------
def test_native_categorical_features_fall_back_with_a_reason() -> None:
    X = synthetic()
    X[:, 5] = np.random.default_rng(0).integers(0, 4, size=len(X))
    estimator = HistGradientBoostingClassifier(max_iter=10, categorical_features=[5])
    estimator.fit(X, target("binary", X))
    trees, reason = compile_trees(estimator)
    assert trees is None
    assert reason is not None and "categorical" in reason


def test_other_estimators_fall_back_with_a_reason() -> None:
    class Tweaked(HistGradientBoostingClassifier):
        pass

    X = np.nan_to_num(synthetic(rows=300))
    y = target("binary", X)
    for estimator, why in [
        (LogisticRegression().fit(X, y), "LogisticRegression is not a HistGradientBoosting"),
        (Tweaked(max_iter=3).fit(X, y), "Tweaked is not a HistGradientBoosting"),
        (HistGradientBoostingClassifier(), "not fitted"),
    ]:
        trees, reason = compile_trees(estimator)
        assert trees is None and reason is not None and why in reason


def test_a_disagreement_with_scikit_learn_is_refused() -> None:
    X = synthetic()
    y = target("binary", X)
    one = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y)
    other = HistGradientBoostingClassifier(max_iter=10, learning_rate=0.3).fit(X, y)
    compiled = trees_module._compile(other)
    assert isinstance(compiled, CompiledTrees)
    assert trees_module._disagreement(other, compiled) is None
    found = trees_module._disagreement(one, compiled)
    assert found is not None and "differ" in found


# -- LoadedModel, on kyklos pipelines fitted on real flights -----------------------------------------
NUMERIC = ["distance", "hour", "temp", "wind_gust"]  # wind_gust has gaps in January


def served(
    frame: pd.DataFrame,
    estimator: str,
    params: dict[str, Any],
    *,
    task: str,
    y: str,
    categorical: list[str],
    encode: str = "onehot",
) -> LoadedModel:
    """A LoadedModel of kyklos's own pipeline around ``estimator``, fitted on ``frame``."""
    model = build_model(
        estimator=estimator,
        params=params,
        preprocessing=PreprocessingConfig(encode=encode),  # type: ignore[arg-type]
        numeric=NUMERIC,
        categorical=categorical,
        seed=0,
    )
    fit_model(model, frame[NUMERIC + categorical], frame[y], seed=0)
    features = [FeatureSpec(n, "numeric", True) for n in NUMERIC]
    features += [FeatureSpec(n, "categorical", True) for n in categorical]
    return LoadedModel(
        name="t", version=1, task=task, features=features, model=model, model_hash="-"
    )


@pytest.mark.parametrize("n", [1, MAX_ROWS, 300], ids=["1", "max-rows", "300"])
def test_a_served_regressor_matches_the_pipeline(flights_small_frame: Any, n: int) -> None:
    frame = flights_small_frame[flights_small_frame["arr_delay"].notna()]
    loaded = served(
        frame,
        "sklearn.ensemble.HistGradientBoostingRegressor",
        {"max_iter": 40},
        task="regression",
        y="arr_delay",
        categorical=["carrier", "origin"],
    )
    assert loaded._trees is not None, loaded.trees_reason
    rows = frame.iloc[:n]
    prediction, score = loaded.predict(frame_columns(rows, loaded.features))
    assert score is None
    expected = loaded._model.predict(rows[[*NUMERIC, "carrier", "origin"]])
    np.testing.assert_allclose(prediction, expected, rtol=RTOL, atol=0)


def test_a_served_multiclass_classifier_matches_the_pipeline(flights_small_frame: Any) -> None:
    loaded = served(
        flights_small_frame,
        "sklearn.ensemble.HistGradientBoostingClassifier",
        {"max_iter": 20},
        task="classification",
        y="origin",
        categorical=["carrier"],
    )
    assert loaded._trees is not None, loaded.trees_reason
    assert loaded.classes == ("EWR", "JFK", "LGA")
    rows = flights_small_frame.iloc[:40]
    prediction, score = loaded.predict(frame_columns(rows, loaded.features))
    proba = loaded._model.predict_proba(rows[[*NUMERIC, "carrier"]])
    np.testing.assert_array_equal(prediction, proba.argmax(axis=1).astype(np.float64))
    assert score is not None
    np.testing.assert_allclose(score, proba.max(axis=1), rtol=RTOL, atol=0)


def test_a_served_model_with_a_native_categorical_feature_keeps_scikit_learn(
    flights_small_frame: Any,
) -> None:
    loaded = served(
        flights_small_frame,
        "sklearn.ensemble.HistGradientBoostingClassifier",
        {"max_iter": 20, "categorical_features": [len(NUMERIC)]},  # the ordinal carrier
        task="classification",
        y="late",
        categorical=["carrier"],
        encode="ordinal",
    )
    assert loaded._compiled is not None and loaded._trees is None
    assert loaded.trees_reason is not None and "categorical" in loaded.trees_reason
    rows = flights_small_frame.iloc[:10]
    _, score = loaded.predict(frame_columns(rows, loaded.features))
    expected = loaded._model.predict_proba(rows[[*NUMERIC, "carrier"]])[:, 1]
    assert score is not None
    np.testing.assert_allclose(score, expected, rtol=RTOL, atol=0)
