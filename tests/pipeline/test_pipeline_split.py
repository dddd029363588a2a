"""Train/test splits: by time, at random, stratified; deterministic."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from kyklos.errors import DataError
from kyklos.pipeline.split import split_frame


def test_time_split_puts_the_latest_rows_in_test(flights_small_frame: pd.DataFrame) -> None:
    df = flights_small_frame.sample(frac=1.0, random_state=3)  # shuffled copy
    train, test = split_frame(
        df, target="late", method="time", test_size=0.2, time_column="time_hour", seed=0
    )
    assert len(test) == math.ceil(len(df) * 0.2)
    assert len(train) + len(test) == len(df)
    assert train["time_hour"].max() <= test["time_hour"].min()
    assert test["time_hour"].is_monotonic_increasing
    assert set(train.index).isdisjoint(test.index)


def test_time_split_is_stable_for_equal_times() -> None:
    df = pd.DataFrame({"t": [1, 1, 1, 1, 0], "y": [0, 1, 0, 1, 1], "row": range(5)})
    train, test = split_frame(df, target="y", method="time", test_size=0.4, time_column="t", seed=0)
    assert list(train["row"]) == [4, 0, 1]
    assert list(test["row"]) == [2, 3]


@pytest.mark.parametrize("method", ["random", "stratified", "time"])
def test_splits_are_deterministic(flights_small_frame: pd.DataFrame, method: str) -> None:
    kwargs = dict(target="late", method=method, test_size=0.25, time_column="time_hour")
    a_train, a_test = split_frame(flights_small_frame, seed=7, **kwargs)  # type: ignore[arg-type]
    b_train, b_test = split_frame(flights_small_frame, seed=7, **kwargs)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(a_train, b_train)
    pd.testing.assert_frame_equal(a_test, b_test)
    assert len(a_test) == 1500


def test_random_split_depends_on_the_seed(flights_small_frame: pd.DataFrame) -> None:
    _, one = split_frame(flights_small_frame, target="late", method="random", test_size=0.2, seed=1)
    _, two = split_frame(flights_small_frame, target="late", method="random", test_size=0.2, seed=2)
    assert list(one.index) != list(two.index)
    assert one.index.is_monotonic_increasing  # original row order is kept


def test_stratified_split_keeps_class_shares(flights_small_frame: pd.DataFrame) -> None:
    train, test = split_frame(
        flights_small_frame, target="late", method="stratified", test_size=0.2, seed=0
    )
    overall = flights_small_frame["late"].mean()
    assert abs(train["late"].mean() - overall) < 0.002
    assert abs(test["late"].mean() - overall) < 0.002


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"method": "time"}, "needs a time column"),
        ({"method": "time", "time_column": "when"}, "time column 'when' is not in the data"),
        ({"method": "shuffle"}, "split method 'shuffle' is unknown"),
        ({"method": "random", "test_size": 1.5}, "between 0 and 1"),
        ({"method": "stratified", "target": "y_single"}, "cannot stratify on 'y_single'"),
        ({"method": "stratified", "target": "nope"}, "target column 'nope'"),
    ],
    ids=["no-time-column", "missing-time-column", "method", "test-size", "stratify", "no-target"],
)
def test_split_errors(kwargs: dict[str, object], expected: str) -> None:
    df = pd.DataFrame({"x": range(6), "y": [0, 1] * 3, "y_single": [0, 0, 0, 0, 0, 1]})
    args: dict[str, object] = {"target": "y", "test_size": 0.5, "seed": 0, **kwargs}
    with pytest.raises(DataError, match=expected):
        split_frame(df, **args)  # type: ignore[arg-type]


def test_too_few_rows() -> None:
    with pytest.raises(DataError, match="cannot split 1 rows"):
        split_frame(pd.DataFrame({"y": [1]}), target="y", method="random", test_size=0.2, seed=0)
