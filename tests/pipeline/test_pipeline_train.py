"""Model building: estimators by import path, preprocessing inside the Pipeline, reproducibility."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pandas as pd
import pytest

from kyklos.config.project import PreprocessingConfig
from kyklos.errors import ConfigError, DataError
from kyklos.pipeline.split import split_frame
from kyklos.pipeline.train import (
    build_model,
    fit_model,
    import_estimator,
    infer_task,
    select_features,
    to_xy,
)

HGB_CLF = "sklearn.ensemble.HistGradientBoostingClassifier"


@pytest.fixture(scope="module")
def flights_split(flights_small_frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return split_frame(
        flights_small_frame,
        target="late",
        method="time",
        test_size=0.2,
        time_column="time_hour",
        seed=0,
    )


@pytest.fixture(scope="module")
def features(flights_small_frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    return select_features(flights_small_frame, "late", "time_hour", None, ["arr_delay"])


def test_select_features(features: tuple[list[str], list[str]]) -> None:
    numeric, categorical = features
    assert categorical == ["carrier", "origin", "dest"]
    assert "time_hour" not in numeric and "late" not in numeric and "arr_delay" not in numeric
    assert numeric[:3] == ["month", "day", "hour"]


def test_select_features_types_and_order() -> None:
    df = pd.DataFrame(
        {
            "y": [0, 1],
            "when": pd.to_datetime(["2024-01-01", "2024-01-02"]),
            "flag": [True, False],
            "name": ["a", "b"],
            "n": [1.0, 2.0],
        }
    )
    assert select_features(df, "y", None, None, ()) == (["flag", "n"], ["name"])
    assert select_features(df, "y", None, ["n", "name", "when"], ()) == (["n"], ["name"])
    with pytest.raises(DataError, match=r"\['nope'\] are not in the data"):
        select_features(df, "y", None, ["nope"], ())
    with pytest.raises(DataError, match="no feature columns left"):
        select_features(df[["y", "when"]], "y", None, None, ())


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("kykfakepkg.models.Model", r"the package 'kykfakepkg' is not installed"),
        ("sklearn.ensemblee.RandomForestClassifier", r"module 'sklearn.ensemblee' does not exist"),
        (
            "sklearn.ensemble.HistGradientBoostingClassifer",
            r"has no 'HistGradientBoostingClassifer'.*did you mean sklearn.ensemble.HistGradientBoostingClassifier",
        ),
        ("sklearn.metrics.accuracy_score", r"is a function, expected an estimator class"),
        (
            "sklearn.preprocessing.StandardScaler",
            r"not a scikit-learn-compatible estimator: it has no predict",
        ),
        ("LogisticRegression", r"expected an import path"),
    ],
    ids=["package", "module", "class", "function", "transformer", "no-module"],
)
def test_import_estimator_errors(path: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        import_estimator(path)
    assert repr(path) in str(info.value)


@pytest.mark.parametrize("package", ["lightgbm", "xgboost"])
def test_optional_boosters_import_or_name_the_install_line(package: str) -> None:
    path = {"lightgbm": "lightgbm.LGBMClassifier", "xgboost": "xgboost.XGBClassifier"}[package]
    if importlib.util.find_spec(package) is not None:
        assert infer_task(import_estimator(path)) == "classification"
    else:
        with pytest.raises(ConfigError, match=rf"pip install 'kyklos\[{package}\]'"):
            import_estimator(path)


def test_import_estimator() -> None:
    from sklearn.linear_model import Ridge

    assert import_estimator("sklearn.linear_model.Ridge") is Ridge


def _build(
    estimator: str,
    features: tuple[list[str], list[str]],
    *,
    params: dict[str, object] | None = None,
    seed: int = 42,
    **preprocessing: object,
):  # type: ignore[no-untyped-def]
    numeric, categorical = features
    return build_model(
        estimator=estimator,
        params=params or {},
        preprocessing=PreprocessingConfig(**preprocessing),  # type: ignore[arg-type]
        numeric=numeric,
        categorical=categorical,
        seed=seed,
    )


def test_build_model_structure_and_seeding(features: tuple[list[str], list[str]]) -> None:
    model = _build(HGB_CLF, features, seed=11)
    assert [name for name, _ in model.steps] == ["preprocess", "model"]
    assert model.named_steps["model"].random_state == 11
    kept = _build(HGB_CLF, features, params={"random_state": 5}, seed=11)
    assert kept.named_steps["model"].random_state == 5
    bagging = _build(
        "sklearn.ensemble.BaggingClassifier",
        features,
        params={"estimator": import_estimator("sklearn.tree.DecisionTreeClassifier")()},
        seed=3,
    )
    params = bagging.get_params()
    assert params["model__random_state"] == 3
    assert params["model__estimator__random_state"] == 3


def test_bad_params_name_the_valid_ones(features: tuple[list[str], list[str]]) -> None:
    with pytest.raises(
        ConfigError, match=r"model.params for .*max_iterations.*valid parameters: .*max_iter"
    ):
        _build(HGB_CLF, features, params={"max_iterations": 3})


@pytest.mark.parametrize(
    ("encode", "scale"),
    [("onehot", True), ("ordinal", False)],
    ids=["onehot-scaled", "ordinal"],
)
def test_unknown_and_missing_categories_at_predict_time(
    flights_split: tuple[pd.DataFrame, pd.DataFrame],
    features: tuple[list[str], list[str]],
    encode: str,
    scale: bool,
) -> None:
    train, test = flights_split
    numeric, categorical = features
    model = _build(HGB_CLF, features, params={"max_iter": 20}, encode=encode, scale=scale)
    X, y = to_xy(train, target="late", columns=numeric + categorical)
    fit_model(model, X, y, seed=42)
    odd = test[numeric + categorical].head(4).copy()
    odd["carrier"] = odd["carrier"].astype(object)
    odd.loc[odd.index[0], "carrier"] = "ZZ"  # never seen
    odd.loc[odd.index[1], "carrier"] = None  # missing
    odd.loc[odd.index[2], "temp"] = np.nan
    proba = model.predict_proba(odd)
    assert proba.shape == (4, 2)
    assert np.isfinite(proba).all()


def test_unknown_categories_can_be_an_error(
    flights_split: tuple[pd.DataFrame, pd.DataFrame], features: tuple[list[str], list[str]]
) -> None:
    train, test = flights_split
    numeric, categorical = features
    model = _build(
        "sklearn.linear_model.LogisticRegression", features, unknown="error", max_categories=None
    )
    fit_model(model, *to_xy(train, target="late", columns=numeric + categorical), seed=1)
    odd = test[numeric + categorical].head(2).copy()
    odd["dest"] = ["NOWHERE", "NOWHERE"]
    with pytest.raises(ValueError, match="unknown categor"):
        model.predict(odd)


def test_nullable_pandas_dtypes_are_handled() -> None:
    df = pd.DataFrame(
        {
            "y": [0, 1, 0, 1, 0, 1],
            "i": pd.array([1, None, 3, 4, 5, None], dtype="Int64"),
            "b": pd.array([True, None, False, True, False, True], dtype="boolean"),
            "s": pd.array(["a", None, "b", "a", "b", "c"], dtype="string"),
        }
    )
    numeric, categorical = select_features(df, "y")
    model = build_model(
        estimator="sklearn.linear_model.LogisticRegression",
        params={},
        preprocessing=PreprocessingConfig(),
        numeric=numeric,
        categorical=categorical,
        seed=0,
    )
    fit_model(model, *to_xy(df, target="y", columns=numeric + categorical), seed=0)
    assert model.predict(df[numeric + categorical]).shape == (6,)


@pytest.mark.parametrize(
    ("estimator", "target", "params"),
    [
        (HGB_CLF, "late", {"max_iter": 60}),
        ("sklearn.linear_model.LogisticRegression", "late", {"max_iter": 500}),
        ("sklearn.ensemble.RandomForestRegressor", "arr_delay", {"n_estimators": 15, "n_jobs": 2}),
    ],
    ids=["hgb-classifier", "logistic-regression", "random-forest-regressor"],
)
def test_fitting_twice_is_bitwise_identical(
    flights_split: tuple[pd.DataFrame, pd.DataFrame],
    features: tuple[list[str], list[str]],
    estimator: str,
    target: str,
    params: dict[str, object],
) -> None:
    train, test = flights_split
    numeric, categorical = features
    columns = numeric + categorical
    outputs = []
    blobs = []
    for _ in range(2):
        model = _build(estimator, features, params=params, seed=42)
        fit_model(model, *to_xy(train, target=target, columns=columns), seed=42)
        task = infer_task(model)
        outputs.append(
            model.predict_proba(test[columns])
            if task == "classification"
            else model.predict(test[columns])
        )
        blobs.append(pickle.dumps(model, protocol=5))
    assert outputs[0].tobytes() == outputs[1].tobytes()
    # The saved model carries its preprocessing and predicts the same after a round trip.
    restored = pickle.loads(blobs[0])
    again = (
        restored.predict_proba(test[columns])
        if task == "classification"
        else restored.predict(test[columns])
    )
    assert again.tobytes() == outputs[0].tobytes()
    # A different seed changes a randomised model.
    if estimator.endswith("RandomForestRegressor"):
        other = _build(estimator, features, params=params, seed=43)
        fit_model(other, *to_xy(train, target=target, columns=columns), seed=43)
        assert other.predict(test[columns]).tobytes() != outputs[0].tobytes()


@pytest.mark.parametrize(
    ("estimator", "task"),
    [
        (HGB_CLF, "classification"),
        ("sklearn.linear_model.LogisticRegression", "classification"),
        ("sklearn.linear_model.Ridge", "regression"),
        ("sklearn.ensemble.HistGradientBoostingRegressor", "regression"),
    ],
)
def test_infer_task(estimator: str, task: str, features: tuple[list[str], list[str]]) -> None:
    cls = import_estimator(estimator)
    assert infer_task(cls) == task
    assert infer_task(cls()) == task
    assert infer_task(_build(estimator, features)) == task


def test_infer_task_refuses_a_clusterer() -> None:
    with pytest.raises(ConfigError, match=r"KMeans is a classifier or a regressor.*model\.task"):
        infer_task(import_estimator("sklearn.cluster.KMeans"))


def test_to_xy_drops_rows_without_target() -> None:
    df = pd.DataFrame({"y": [1.0, None, 0.0], "x": [1, 2, 3]})
    X, y = to_xy(df, target="y", columns=["x"])
    assert list(X["x"]) == [1, 3]
    assert list(y) == [1.0, 0.0]
