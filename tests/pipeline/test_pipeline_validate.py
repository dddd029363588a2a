"""Training-data validation: every problem at once, with clear messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kyklos.errors import DataError
from kyklos.pipeline.validate import (
    TrainingDataInvalid,
    column_kinds_of,
    validate_training_frame,
)


def test_the_flights_table_passes(flights_small_frame: pd.DataFrame) -> None:
    kinds = column_kinds_of(flights_small_frame)
    warnings = validate_training_frame(
        flights_small_frame,
        target="late",
        features=None,
        column_kinds=kinds,
        previous_kinds=kinds,
        task="classification",
    )
    assert warnings == []


def test_column_kinds(flights_small_frame: pd.DataFrame) -> None:
    kinds = column_kinds_of(flights_small_frame)
    assert kinds["time_hour"] == "datetime"
    assert kinds["carrier"] == "categorical"
    assert kinds["late"] == "numeric"
    assert kinds["wind_gust"] == "numeric"
    mixed = pd.DataFrame(
        {
            "flag": [True, False],
            "flag_with_null": pd.Series([True, None], dtype=object),
            "nullable": pd.array([1, None], dtype="Int64"),
            "cat": pd.Categorical(["a", "b"]),
            "obj_numbers": pd.Series([1, 2.5], dtype=object),
            "when": pd.to_datetime(["2024-01-01", "2024-01-02"]),
        }
    )
    assert column_kinds_of(mixed) == {
        "flag": "boolean",
        "flag_with_null": "boolean",
        "nullable": "numeric",
        "cat": "categorical",
        "obj_numbers": "numeric",
        "when": "datetime",
    }


def test_every_problem_is_reported_at_once() -> None:
    df = pd.DataFrame(
        {
            "lates": [0, 1, 0],
            "empty": [np.nan, np.nan, np.nan],
            "carrier": ["AA", "UA", "AA"],
            "distance": [100, 200, 300],
        }
    )
    previous = {"lates": "numeric", "carrier": "numeric", "distance": "numeric", "empty": "numeric"}
    with pytest.raises(TrainingDataInvalid) as info:
        validate_training_frame(
            df,
            target="late",
            features=["carrier", "empty", "distnce"],
            column_kinds=None,
            previous_kinds=previous,
            task="classification",
        )
    problems = info.value.problems
    assert isinstance(info.value, DataError)
    assert len(problems) == 4, problems
    assert problems[0].startswith("target column 'late' is missing; did you mean 'lates'?")
    assert "(columns: lates, empty, carrier, distance)" in problems[0]
    assert problems[1].startswith("feature column 'distnce' is missing; did you mean 'distance'?")
    assert problems[2].startswith("feature column 'empty' has only missing values")
    assert problems[3].startswith(
        "column 'carrier' changed type against the previous version: numeric → categorical"
    )
    message = str(info.value)
    assert message.startswith("training data failed validation with 4 problems: (1) target")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("target", "task", "expected"),
    [
        ("all_null", "classification", "target column 'all_null' has only missing values"),
        ("single", "classification", "target column 'single' has a single class (1)"),
        ("label", "regression", "target column 'label' is categorical; regression needs a numeric"),
    ],
    ids=["all-null", "single-class", "regression-text"],
)
def test_target_problems(target: str, task: str, expected: str) -> None:
    df = pd.DataFrame(
        {
            "x": [1.0, 2.0, 3.0],
            "all_null": [None, None, None],
            "single": [1, 1, 1],
            "label": ["a", "b", "a"],
        }
    )
    with pytest.raises(TrainingDataInvalid, match="failed validation") as info:
        validate_training_frame(
            df[["x", target]],
            target=target,
            features=None,
            column_kinds=None,
            previous_kinds=None,
            task=task,
        )
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(expected)


def test_int_to_float_is_not_a_type_change_but_numeric_to_text_is() -> None:
    df = pd.DataFrame({"y": [0, 1, 1], "n": [1.5, 2.0, np.nan], "code": ["1", "2", "3"]})
    previous = {"y": "numeric", "n": "numeric", "code": "numeric"}
    with pytest.raises(TrainingDataInvalid) as info:
        validate_training_frame(
            df,
            target="y",
            features=None,
            column_kinds=None,
            previous_kinds=previous,
            task="classification",
        )
    assert len(info.value.problems) == 1
    assert "'code' changed type against the previous version: numeric → categorical" in str(
        info.value
    )
    del previous["code"]
    warnings = validate_training_frame(
        df[["y", "n"]],
        target="y",
        features=None,
        column_kinds=None,
        previous_kinds=previous,
        task="classification",
    )
    assert warnings == []


def test_warnings_for_missing_targets_and_changed_columns() -> None:
    df = pd.DataFrame({"y": [0, 1, None, 1], "new": [1, 2, 3, 4]})
    warnings = validate_training_frame(
        df,
        target="y",
        features=None,
        column_kinds=None,
        previous_kinds={"y": "numeric", "old": "categorical"},
        task="classification",
    )
    assert warnings == [
        "target column 'y' is missing in 1 of 4 rows (25.0%); those rows are dropped for training",
        "column(s) 'old' of the previous version are gone",
        "new column(s) since the previous version: 'new'",
    ]


def test_given_column_kinds_are_used() -> None:
    df = pd.DataFrame({"y": [0, 1], "x": [1, 2]})
    with pytest.raises(TrainingDataInvalid, match=r"'x' changed type .*: categorical → numeric"):
        validate_training_frame(
            df,
            target="y",
            features=["x"],
            column_kinds={"x": "numeric"},
            previous_kinds={"x": "categorical"},
            task=None,
        )


def test_an_empty_table_is_rejected() -> None:
    with pytest.raises(TrainingDataInvalid, match="the table has no rows"):
        validate_training_frame(
            pd.DataFrame({"y": pd.Series([], dtype=float)}),
            target="y",
            features=None,
            column_kinds=None,
            previous_kinds=None,
            task=None,
        )
