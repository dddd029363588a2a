"""The fast paths of one prediction: numpy preprocessing and clean-record validation give
exactly what the general paths give, and step aside for everything else."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from kyklos.serving.compiled import compile_preprocess
from kyklos.serving.model import FeatureSpec, LoadedModel
from kyklos.serving.validation import InvalidInput, _clean_records, validate_records

FEATURES = (
    FeatureSpec("distance", "numeric", nullable=True),
    FeatureSpec("hour", "numeric", nullable=False),
    FeatureSpec("carrier", "categorical", nullable=True, categories=("AA", "UA")),
)


@pytest.fixture(scope="module")
def records(loaded: LoadedModel, feature_frame: Any) -> list[dict[str, Any]]:
    """400 real rows with their missing values, plus unseen categories on some rows."""
    names = [f.name for f in loaded.features]
    frame = feature_frame[names].iloc[:400].astype(object)
    rows = [{k: (None if v != v else v) for k, v in r.items()} for r in frame.to_dict("records")]
    categorical = [f.name for f in loaded.features if f.kind == "categorical"]
    nullable = [f.name for f in loaded.features if f.nullable]
    for i in range(0, len(rows), 7):
        rows[i][categorical[i % len(categorical)]] = "never-seen-in-training"
    for i in range(3, len(rows), 11):
        rows[i][nullable[i % len(nullable)]] = None
    return rows


def test_the_flights_pipeline_is_compiled(loaded: LoadedModel) -> None:
    assert loaded._compiled is not None


def test_compiled_predictions_equal_scikit_learn(
    loaded: LoadedModel, records: list[dict[str, Any]]
) -> None:
    columns, n = validate_records(loaded.features, records)
    assert any(np.isnan(c).any() for c in columns.values() if c.dtype == np.float64)
    compiled = loaded._compiled
    assert compiled is not None
    ours = compiled.transform(columns)
    frame = pd.DataFrame({f: columns[f] for f in loaded._order})
    theirs = loaded._model.steps[0][1].transform(frame)
    assert ours is not None and ours.shape == (n, theirs.shape[1])
    np.testing.assert_array_equal(ours, theirs)
    prediction, score = loaded.predict(columns)
    proba = loaded._model.predict_proba(frame)[:, 1]
    assert score is not None
    np.testing.assert_array_equal(score, proba)
    np.testing.assert_array_equal(prediction, (proba >= loaded.threshold).astype(float))


def test_compiled_rows_alone_equal_scikit_learn(
    loaded: LoadedModel, records: list[dict[str, Any]]
) -> None:
    """One request's row takes its own code path (no index arrays): same floats, row by row,
    missing values and categories never seen in training included."""
    compiled = loaded._compiled
    assert compiled is not None
    categorical = [f.name for f in loaded.features if f.kind == "categorical"]
    nullable = [f.name for f in loaded.features if f.nullable]
    odd = [
        {**records[0], **dict.fromkeys(nullable)},
        {**records[1], categorical[-1]: "never-seen-in-training"},
    ]
    for record in [*records[:20], *odd]:
        columns, _ = validate_records(loaded.features, [record])
        ours = compiled.transform(columns)
        frame = pd.DataFrame({f: columns[f] for f in loaded._order})
        theirs = loaded._model.steps[0][1].transform(frame)
        assert ours is not None
        np.testing.assert_array_equal(ours, theirs)


def test_pipelines_of_another_shape_are_not_compiled(feature_frame: Any) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import PolynomialFeatures

    x = feature_frame[["distance", "hour"]].fillna(0).to_numpy()[:200]
    y = np.arange(200) % 2
    bare = LogisticRegression().fit(x, y)
    other = Pipeline([("poly", PolynomialFeatures()), ("model", LogisticRegression())]).fit(x, y)
    assert compile_preprocess(bare, FEATURES[:2]) is None
    assert compile_preprocess(other, FEATURES[:2]) is None


def test_clean_records_match_the_general_path(
    loaded: LoadedModel, records: list[dict[str, Any]]
) -> None:
    clean = [r for r in records if all(v is not None for v in r.values())][:50]
    assert len(clean) > 10
    fast = _clean_records(loaded.features, clean, "reject", "allow")
    assert fast is not None
    slow = validate_records(loaded.features, [{**r, "_": 1} for r in clean], extra="ignore")[0]
    assert set(fast) == set(slow)
    for name, values in fast.items():
        assert values.dtype == slow[name].dtype, name
        np.testing.assert_array_equal(values, slow[name])


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"distance": True, "hour": 1, "carrier": "AA"}, None),
        ({"distance": "far", "hour": 1, "carrier": "AA"}, "distance"),
        ({"distance": 1.0, "hour": None, "carrier": "AA"}, "hour"),
        ({"distance": 1.0, "hour": 1, "carrier": 7}, "carrier"),
        ({"distance": 1.0, "hour": 1}, "carrier"),
        ({"distance": 1.0, "hour": 1, "carrier": "AA", "bogus": 2}, "bogus"),
        ({"distance": 10**400, "hour": 1, "carrier": "AA"}, "distance"),
    ],
    ids=["bool", "string", "null-not-nullable", "number-category", "missing", "extra", "huge"],
)
def test_anything_unclean_takes_the_full_checks(record: dict[str, Any], field: str | None) -> None:
    assert _clean_records(FEATURES, [record], "reject", "allow") is None
    if field is None:  # accepted by the full checks (booleans are numbers there)
        assert validate_records(FEATURES, [record])[0]["distance"].tolist() == [1.0]
        return
    with pytest.raises(InvalidInput) as caught:
        validate_records(FEATURES, [record])
    assert caught.value.field == field


def test_missing_values_and_unknown_categories_follow_the_policies() -> None:
    nullable = {"distance": None, "hour": 3, "carrier": None}
    columns, _ = validate_records(FEATURES, [nullable])
    assert np.isnan(columns["distance"][0]) and columns["carrier"][0] is None
    unknown = {"distance": 1.0, "hour": 3, "carrier": "ZZ"}
    assert validate_records(FEATURES, [unknown])[0]["carrier"].tolist() == ["ZZ"]
    with pytest.raises(InvalidInput) as caught:
        validate_records(FEATURES, [unknown], unknown_categories="reject")
    assert caught.value.field == "carrier"
