"""Cut the training table into a train and a test part, deterministically.

* ``time``: the last ``test_size`` fraction of rows by ``time_column`` (stable sort, so rows
  with equal times keep their order) is the test part — the honest split for anything that
  will predict the future;
* ``random``: a seeded shuffle;
* ``stratified``: a seeded shuffle that keeps the class shares of ``target`` in both parts.

Both parts keep the original index and the original row order (except ``time``, sorted by time). pandas and scikit-learn are imported when called.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from kyklos.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SPLIT_METHODS", "split_frame"]

SPLIT_METHODS = ("time", "random", "stratified")


def split_frame(
    df: pd.DataFrame,
    *,
    target: str,
    method: Literal["time", "random", "stratified"] | str,
    test_size: float,
    time_column: str | None = None,
    seed: int = 42,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``df`` into ``(train, test)``; the same inputs always give the same split."""
    if method not in SPLIT_METHODS:
        raise DataError(
            f"split method {method!r} is unknown; expected one of {', '.join(SPLIT_METHODS)}"
        )
    if not 0.0 < test_size < 1.0:
        raise DataError(f"split test_size {test_size!r} must be between 0 and 1 (exclusive)")
    n = len(df)
    n_test = math.ceil(n * test_size)
    if n_test < 1 or n - n_test < 1:
        raise DataError(
            f"cannot split {n} rows with test_size={test_size}: both parts need at least one row. "
            "Hint: add data or change evaluate.split.test_size"
        )
    if method == "time":
        if not time_column:
            raise DataError(
                "a time split needs a time column. Hint: set data.time_column, or use method: random"
            )
        if time_column not in df.columns:
            raise DataError(
                f"time column {time_column!r} is not in the data; columns: {', '.join(map(str, df.columns))}"
            )
        if df[time_column].isna().any():
            raise DataError(
                f"time column {time_column!r} has {int(df[time_column].isna().sum())} missing "
                "values; a time split needs every row to have a time"
            )
        ordered = df.sort_values(time_column, kind="stable")
        return ordered.iloc[: n - n_test], ordered.iloc[n - n_test :]
    if method == "random":
        import numpy as np

        order = np.random.RandomState(seed).permutation(n)
        return df.iloc[np.sort(order[n_test:])], df.iloc[np.sort(order[:n_test])]
    # stratified
    import numpy as np
    from sklearn.model_selection import train_test_split

    if target not in df.columns:
        raise DataError(f"a stratified split needs the target column {target!r}, which is missing")
    labels = df[target]
    if labels.isna().any():
        raise DataError(
            f"a stratified split needs a target in every row; {target!r} has "
            f"{int(labels.isna().sum())} missing values. Hint: drop them first"
        )
    try:
        train, test = train_test_split(
            np.arange(n), test_size=n_test, random_state=seed, shuffle=True, stratify=labels
        )
    except ValueError as exc:
        raise DataError(f"cannot stratify on {target!r}: {exc}. Hint: use method: random") from exc
    return df.iloc[np.sort(train)], df.iloc[np.sort(test)]
