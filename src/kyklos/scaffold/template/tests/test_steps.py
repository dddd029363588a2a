"""Tests of the custom steps in steps.py: plain pytest on a tiny hand-made table."""

from __future__ import annotations

import pandas as pd
from steps import add_features


def tiny_flights() -> pd.DataFrame:
    return pd.DataFrame(
        {
            # Saturday 09:00 in New York; Sunday 23:00 in New York (already Monday in UTC)
            "time_hour": pd.to_datetime(["2013-01-05 14:00", "2013-01-07 04:00"], utc=True),
            "sched_dep_time": [905, 2359],
            "late": [1, 0],
        }
    )


def test_add_features_uses_new_york_local_time() -> None:
    out = add_features(tiny_flights())
    assert out["day_of_week"].tolist() == [5, 6]
    assert out["is_weekend"].tolist() == [1, 1]
    assert out["dep_hour_local"].tolist() == [9, 23]


def test_add_features_keeps_rows_and_target_and_leaves_the_input_alone() -> None:
    flights = tiny_flights()
    out = add_features(flights)
    pd.testing.assert_series_equal(out["late"], flights["late"])
    assert list(flights.columns) == ["time_hour", "sched_dep_time", "late"]
    added = [c for c in out.columns if c not in flights.columns]
    assert added == ["day_of_week", "is_weekend", "dep_hour_local"]
