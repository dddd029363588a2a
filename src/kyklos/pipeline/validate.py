"""Reject bad training data before a model is fitted on it, with every problem at once.

Problems (raise :class:`TrainingDataInvalid`, a :class:`~kyklos.errors.DataError`):

* the table has no rows;
* the target column is missing (the message names close matches and the available columns),
  holds only missing values, has a single class (classification) or is not numeric (regression);
* a listed feature column is missing;
* a feature column holds only missing values;
* a column changed its kind against the previous dataset version (``numeric``,
  ``categorical``, ``boolean``, ``datetime``; int → float stays ``numeric`` and is fine).

Warnings (returned): rows without a target (they are dropped for training), columns that
appeared or disappeared since the previous version, a classification target with very many
distinct values.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from kyklos.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["KINDS", "TrainingDataInvalid", "column_kinds_of", "kind_of", "validate_training_frame"]

KINDS = ("numeric", "categorical", "boolean", "datetime")
_MANY_CLASSES = 100
_SHOW_COLUMNS = 25


class TrainingDataInvalid(DataError):
    """The training table failed validation; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        if n == 1:
            text = f"training data failed validation: {self.problems[0]}"
        else:
            listed = "; ".join(f"({i}) {p}" for i, p in enumerate(self.problems, 1))
            text = f"training data failed validation with {n} problems: {listed}"
        super().__init__(text)


def kind_of(series: pd.Series) -> str:
    """The kind of one column: numeric, categorical, boolean or datetime."""
    from pandas.api import types

    dtype = series.dtype
    if types.is_bool_dtype(dtype):
        return "boolean"
    if types.is_datetime64_any_dtype(dtype) or types.is_timedelta64_dtype(dtype):
        return "datetime"
    if types.is_numeric_dtype(dtype):
        return "numeric"
    if types.is_object_dtype(dtype):
        inferred = types.infer_dtype(series, skipna=True)
        if inferred == "boolean":
            return "boolean"
        if inferred in {"integer", "floating", "mixed-integer-float", "decimal"}:
            return "numeric"
        if inferred in {"datetime64", "datetime", "date", "timedelta64", "timedelta"}:
            return "datetime"
    return "categorical"


def column_kinds_of(df: pd.DataFrame) -> dict[str, str]:
    """The kind of every column, from its pandas dtype (object columns are inspected)."""
    return {str(name): kind_of(df[name]) for name in df.columns}


def validate_training_frame(
    df: pd.DataFrame,
    *,
    target: str,
    features: Sequence[str] | None = None,
    column_kinds: Mapping[str, str] | None = None,
    previous_kinds: Mapping[str, str] | None = None,
    task: str | None = None,
) -> list[str]:
    """Check the training table; return warnings, raise :class:`TrainingDataInvalid` on problems.

    ``column_kinds`` are the kinds of ``df``'s columns when already known (from the dataset
    version's schema), otherwise they are derived from the dtypes; ``previous_kinds`` are those of
    the previous version of the dataset, if any; ``task`` is ``classification``, ``regression``
    or None (unknown: no task-specific checks).
    """
    problems: list[str] = []
    warnings: list[str] = []
    columns = [str(c) for c in df.columns]
    present = set(columns)
    kinds = dict(column_kinds or {})
    for name in columns:
        if name not in kinds:
            kinds[name] = kind_of(df[name])
    null_counts = {str(k): int(v) for k, v in df.isna().sum().items()}
    n_rows = len(df)

    def all_null(name: str) -> bool:
        return n_rows > 0 and null_counts.get(name, 0) == n_rows

    if n_rows == 0:
        problems.append("the table has no rows")

    if target not in present:
        problems.append(f"target column {target!r} is missing{_suggest(target, columns)}")
    elif n_rows > 0:
        missing = null_counts[target]
        if missing == n_rows:
            problems.append(f"target column {target!r} has only missing values")
        else:
            if missing:
                warnings.append(
                    f"target column {target!r} is missing in {missing} of {n_rows} rows "
                    f"({missing / n_rows:.1%}); those rows are dropped for training"
                )
            if task == "classification":
                classes = df[target].dropna().unique()
                if len(classes) < 2:
                    problems.append(
                        f"target column {target!r} has a single class ({_plain(classes[0])!r}); "
                        "classification needs at least two"
                    )
                elif len(classes) > _MANY_CLASSES:
                    warnings.append(
                        f"target column {target!r} has {len(classes)} distinct values; "
                        "is this a regression? Hint: set model.task or a regressor"
                    )
            elif task == "regression" and kinds.get(target) not in {"numeric", "boolean"}:
                problems.append(
                    f"target column {target!r} is {kinds.get(target)}; regression needs a numeric "
                    "target. Hint: use a classifier, or convert the column"
                )

    if features is not None:
        for name in features:
            if name not in present:
                problems.append(f"feature column {name!r} is missing{_suggest(name, columns)}")
        candidates = [f for f in features if f in present and f != target]
    else:
        candidates = [c for c in columns if c != target]
    empty = [c for c in candidates if all_null(c)]
    if empty:
        listed = ", ".join(repr(c) for c in empty)
        noun = "column" if len(empty) == 1 else "columns"
        problems.append(
            f"feature {noun} {listed} {'has' if len(empty) == 1 else 'have'} only missing values. "
            "Hint: fix the source, or list the column under data.drop"
        )

    if previous_kinds is not None:
        checked = [*candidates, target] if target in present else candidates
        for name in checked:
            old, new = previous_kinds.get(name), kinds.get(name)
            if old is None or new is None or old == new or all_null(name):
                continue
            problems.append(
                f"column {name!r} changed type against the previous version: {old} → {new}. "
                "Hint: fix the source, or list the column under data.drop"
            )
        gone = [
            c
            for c in previous_kinds
            if c not in present and (features is None or c not in features)
        ]
        if gone:
            warnings.append(
                f"column(s) {', '.join(map(repr, gone))} of the previous version are gone"
            )
        added = [c for c in columns if c not in previous_kinds]
        if added:
            warnings.append(
                f"new column(s) since the previous version: {', '.join(map(repr, added))}"
            )

    if problems:
        raise TrainingDataInvalid(problems)
    return warnings


def _suggest(name: str, columns: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, columns, n=1, cutoff=0.6)
    shown = ", ".join(columns[:_SHOW_COLUMNS])
    more = f" and {len(columns) - _SHOW_COLUMNS} more" if len(columns) > _SHOW_COLUMNS else ""
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (columns: {shown}{more})" if columns else " (the table has no columns)"


def _plain(value: object) -> object:
    item = getattr(value, "item", None)
    return item() if callable(item) else value
