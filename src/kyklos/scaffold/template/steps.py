"""Custom pipeline steps of this project.

A step is a plain function marked with ``@step``: it takes the table (a pandas DataFrame) and
returns the changed table. ``kyklos.yaml`` lists it under ``pipeline.steps``; kyklos runs it after
validating the raw data and before the train/test split, and caches its output by the function's
code and its input, so an unchanged step is not run twice.

Keep a step self-contained: the cache key covers the function's own code, not helpers it calls
(use ``@step(version="2")`` to invalidate the cache after changing such a helper).
"""

from __future__ import annotations

import pandas as pd

from kyklos import step


@step
def add_features(df: pd.DataFrame) -> pd.DataFrame:
    """Calendar features of the scheduled departure, in New York local time.

    Only what is known when the flight is scheduled is used, so nothing leaks the target:

    - ``day_of_week``: 0 = Monday ... 6 = Sunday
    - ``is_weekend``: 1 on Saturday and Sunday, else 0
    - ``dep_hour_local``: the scheduled departure hour (``sched_dep_time`` is HHMM, local time)
    """
    when = df["time_hour"]
    if when.dt.tz is None:  # a naive timestamp is taken to be UTC
        when = when.dt.tz_localize("UTC")
    local = when.dt.tz_convert("America/New_York")
    day_of_week = local.dt.day_of_week.astype("int8")
    return df.assign(
        day_of_week=day_of_week,
        is_weekend=(day_of_week >= 5).astype("int8"),
        dep_hour_local=(df["sched_dep_time"] // 100).astype("int8"),
    )
