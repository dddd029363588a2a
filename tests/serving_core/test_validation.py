"""Request validation: every client mistake is a 4xx naming the field, the value, the expectation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from kyklos.errors import ServingError
from kyklos.serving.model import FeatureSpec
from kyklos.serving.validation import InvalidInput, validate_columns, validate_records

FEATURES = (
    FeatureSpec("distance", "numeric", nullable=False),
    FeatureSpec("wind_gust", "numeric", nullable=True),
    FeatureSpec("carrier", "categorical", nullable=False, categories=("AA", "UA")),
    FeatureSpec("origin", "categorical", nullable=True, categories=("EWR", "JFK")),
)
GOOD = {"distance": 1400, "wind_gust": 21.5, "carrier": "UA", "origin": "EWR"}


def rec(**changes: Any) -> dict[str, Any]:
    row = {**GOOD, **changes}
    return {k: v for k, v in row.items() if v is not _DROP}


_DROP = object()

# (payload records, policy kwargs, status, field, words in the message)
RECORD_CASES = [
    ([], {}, 422, "payload", "no rows"),
    ({"distance": 1}, {}, 422, "payload", "expected a list of records"),
    ([GOOD, 5], {}, 422, "payload", "record 1 is a number 5"),
    ([rec(distance=_DROP)], {}, 422, "distance", "'distance' is missing from every record"),
    ([GOOD, rec(carrier=_DROP)], {}, 422, "carrier", "missing from record(s) 1"),
    ([rec(distanse=3)], {}, 422, "distanse", "did you mean 'distance'"),
    ([rec(distance="far")], {}, 422, "distance", "got a string 'far' in row 0, expected a number"),
    ([GOOD, rec(distance="12")], {}, 422, "distance", "got a string '12' in row 1"),
    ([rec(distance=[1, 2])], {}, 422, "distance", "expected one number per row"),
    ([rec(distance={"a": 1})], {}, 422, "distance", "got an object"),
    ([rec(distance=None)], {}, 422, "distance", "training data had no missing values"),
    ([rec(distance=math.nan)], {}, 422, "distance", "missing value (null/NaN) in row 0"),
    ([rec(wind_gust=math.inf)], {}, 422, "wind_gust", "got inf in row 0, expected a finite"),
    ([rec(wind_gust=None)], {"allow_missing": False}, 422, "wind_gust", "allow_missing is off"),
    ([rec(carrier=None)], {}, 422, "carrier", "training data had no missing values"),
    ([rec(carrier=7)], {}, 422, "carrier", "send numbers-as-categories as strings"),
    ([rec(origin="XXX")], {"unknown_categories": "reject"}, 422, "origin", "'XXX' in row 0"),
    ([GOOD] * 3, {"max_rows": 2}, 413, "payload", "3 rows, more than the limit of 2"),
]


@pytest.mark.parametrize(
    ("records", "policy", "status", "field", "words"),
    RECORD_CASES,
    ids=[
        "empty",
        "not-a-list",
        "record-not-object",
        "missing-feature",
        "missing-in-one-record",
        "extra-feature",
        "string-for-number",
        "numeric-string",
        "nested-list",
        "object-for-number",
        "null-not-nullable",
        "nan-not-nullable",
        "infinite",
        "null-with-allow-missing-off",
        "null-category-not-nullable",
        "number-for-category",
        "unknown-category-rejected",
        "too-many-rows",
    ],
)
def test_bad_records(
    records: Any, policy: dict[str, Any], status: int, field: str, words: str
) -> None:
    with pytest.raises(ServingError) as info:
        validate_records(FEATURES, records, **policy)
    assert (info.value.status, info.value.field) == (status, field)
    assert words in str(info.value)


COLUMN_CASES = [
    ({}, {}, 422, "distance", "'distance' is missing"),
    ({**{k: [v] for k, v in GOOD.items()}, "distance": [1, 2]}, {}, 422, "distance", "2 value(s)"),
    ({k: [v] for k, v in GOOD.items()}, {"n_rows": 2}, 422, "distance", "expected 2"),
    ({**{k: [v] for k, v in GOOD.items()}, "carrier": "UA"}, {}, 422, "carrier", "a list with"),
    (
        {**{k: [v, v] for k, v in GOOD.items()}, "distance": [[1], [2, 3]]},
        {"n_rows": 2},
        422,
        "distance",
        "one number per row",
    ),
    ({k: [] for k in GOOD}, {}, 422, "payload", "no rows"),
    (
        {**{k: [v] for k, v in GOOD.items()}, "temp": [1.0]},
        {},
        422,
        "temp",
        "not a feature of this model",
    ),
]


@pytest.mark.parametrize(
    ("columns", "policy", "status", "field", "words"),
    COLUMN_CASES,
    ids=[
        "no-columns",
        "ragged",
        "wrong-n-rows",
        "scalar-not-list",
        "ragged-nested",
        "zero-rows",
        "extra-column",
    ],
)
def test_bad_columns(
    columns: Any, policy: dict[str, Any], status: int, field: str, words: str
) -> None:
    with pytest.raises(ServingError) as info:
        validate_columns(FEATURES, columns, **policy)
    assert (info.value.status, info.value.field) == (status, field)
    assert words in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidInput) as info:
        validate_records(FEATURES, [rec(distance="x", carrier=1, speed=3)])
    assert {p.field for p in info.value.problems} == {"distance", "carrier", "speed"}


def test_good_records_become_numpy_columns() -> None:
    records = [GOOD, rec(wind_gust=None, origin=None), rec(distance=True, origin="LGA")]
    columns, n = validate_records(FEATURES, records)
    assert n == 3
    assert columns["distance"].dtype == np.float64
    np.testing.assert_array_equal(columns["distance"], [1400.0, 1400.0, 1.0])
    assert math.isnan(columns["wind_gust"][1])
    assert columns["carrier"].dtype == object and list(columns["carrier"]) == ["UA"] * 3
    assert list(columns["origin"]) == ["EWR", None, "LGA"]  # unknown category allowed


def test_good_columns_and_ignored_extras() -> None:
    columns, n = validate_columns(
        FEATURES,
        {
            "distance": np.array([1, 2], dtype=np.int64),
            "wind_gust": [np.nan, 3.0],
            "carrier": np.array(["AA", "UA"]),
            "origin": ["JFK", float("nan")],
            "late": [0, 1],
        },
        extra="ignore",
    )
    assert n == 2 and set(columns) == {f.name for f in FEATURES}
    assert columns["distance"].dtype == np.float64
    assert list(columns["carrier"]) == ["AA", "UA"] and columns["carrier"].dtype == object
    assert list(columns["origin"]) == ["JFK", None]


def test_unknown_policy_is_a_config_error() -> None:
    from kyklos.errors import ConfigError

    with pytest.raises(ConfigError, match="extra='drop'"):
        validate_records(FEATURES, [GOOD], extra="drop")  # type: ignore[arg-type]
