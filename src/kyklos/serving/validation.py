"""Checking a request against a model's features, and turning it into numpy columns.

Two entry points share one column checker:

* :func:`validate_records` takes rows (``[{"distance": 1400, "carrier": "UA"}, ...]``), the
  shape of ``/predict``, MLflow's ``dataframe_records`` and ``instances``;
* :func:`validate_columns` takes columns (``{"distance": [1400, 200], ...}``), the shape of
  Open Inference Protocol tensors, MLflow's ``dataframe_split`` and batch scoring.

Both return what :meth:`kyklos.serving.model.LoadedModel.predict` takes: numeric features as
``float64`` arrays (NaN for missing), categorical ones as ``object`` arrays (None for missing).
Checks are vectorised per column (``np.asarray``, ``np.isfinite``); the only per-row Python is
building the column lists from records and the type check of string columns.

Records take a fast path first (the common case of ``/predict``: every feature present, numbers
as JSON numbers, categories as strings, nothing else): two ``np.array`` calls for the whole
request (a numeric matrix and a category matrix) whose columns are handed out as views. Any
request the fast path does not recognise as clean goes through the full checks, which find and
name every problem; the fast path never refuses anything itself.

Every client mistake raises :class:`InvalidInput` (a :class:`~kyklos.errors.ServingError`,
status 422; 413 for too many rows) naming the feature, the value, the row and what was expected.
All problems are collected and reported together; ``field`` names the first.

Policies (keyword arguments, defaults in brackets):

* ``extra`` ["reject"]: a feature the model does not know is an error; "ignore" drops it.
* ``allow_missing`` [True]: a missing value (null, NaN) is accepted in a feature whose training
  data had missing values; False rejects missing values everywhere. A feature without missing
  values in training always rejects them. Infinite values are always rejected.
* ``unknown_categories`` ["allow"]: a category not seen in training is passed on (the encoder
  maps it to its "infrequent/unknown" bucket); "reject" refuses it.
* ``max_rows`` [None]: more rows than this is an error with status 413.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from kyklos.errors import ConfigError, ServingError
from kyklos.serving.model import FeatureSpec

__all__ = ["Columns", "InvalidInput", "Problem", "validate_columns", "validate_records"]

ExtraPolicy = Literal["reject", "ignore"]
CategoryPolicy = Literal["allow", "reject"]

_MAX_LISTED = 5
_NUMBER_TYPES = (int, float, bool, np.integer, np.floating, np.bool_)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: the feature (or ``payload``), what, what was expected."""

    field: str
    message: str
    status: int = 422

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "message": self.message}


class InvalidInput(ServingError):
    """A request that does not fit the model; ``problems`` lists everything wrong with it."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        first = self.problems[0]
        listed = "; ".join(p.message for p in self.problems[:_MAX_LISTED])
        more = len(self.problems) - _MAX_LISTED
        if more > 0:
            listed += f"; and {more} more"
        status = 413 if any(p.status == 413 for p in self.problems) else first.status
        super().__init__(listed, field=first.field, status=status)


def validate_records(
    features: Sequence[FeatureSpec],
    records: Any,
    *,
    extra: ExtraPolicy = "reject",
    allow_missing: bool = True,
    unknown_categories: CategoryPolicy = "allow",
    max_rows: int | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """Numpy columns and the row count for a list of records (one dict per row)."""
    _check_policies(extra, unknown_categories)
    if not isinstance(records, list):
        raise InvalidInput(
            [
                Problem(
                    "payload",
                    f"expected a list of records (objects mapping feature names to values), "
                    f"got {_type_name(records)}",
                )
            ]
        )
    n_rows = len(records)
    _check_size(n_rows, max_rows)
    clean = _clean_records(features, records, extra, unknown_categories)
    if clean is not None:
        return clean, n_rows
    bad_rows = [i for i, r in enumerate(records) if not isinstance(r, dict)]
    if bad_rows:
        i = bad_rows[0]
        raise InvalidInput(
            [
                Problem(
                    "payload",
                    f"record {i} is {_type_name(records[i])} {_short(records[i])}, expected an "
                    f"object mapping feature names to values ({len(bad_rows)} such record(s))",
                )
            ]
        )
    problems: list[Problem] = []
    names = {f.name for f in features}
    if extra == "reject":
        keys: set[str] = set().union(*records)
        problems.extend(_unknown(sorted(str(k) for k in keys - names), names))
    columns: dict[str, list[Any]] = {}
    for spec in features:
        try:
            columns[spec.name] = [r[spec.name] for r in records]
        except KeyError:
            lacking = [i for i, r in enumerate(records) if spec.name not in r]
            where = (
                "every record"
                if len(lacking) == n_rows
                else f"record(s) {', '.join(map(str, lacking[:5]))}"
                + (" ..." if len(lacking) > 5 else "")
            )
            problems.append(
                Problem(
                    spec.name,
                    f"feature {spec.name!r} is missing from {where}; expected a "
                    f"{_expected(spec)} (null for a missing value)",
                )
            )
    out = _convert_all(features, columns, problems, allow_missing, unknown_categories)
    return out, n_rows


def validate_columns(
    features: Sequence[FeatureSpec],
    columns: Mapping[str, Sequence[Any] | np.ndarray],
    *,
    n_rows: int | None = None,
    extra: ExtraPolicy = "reject",
    allow_missing: bool = True,
    unknown_categories: CategoryPolicy = "allow",
    max_rows: int | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """Numpy columns and the row count for a mapping of feature name to values (every column
    ``n_rows`` long; when ``n_rows`` is None, as long as most columns are)."""
    _check_policies(extra, unknown_categories)
    if not isinstance(columns, Mapping):
        raise InvalidInput(
            [
                Problem(
                    "payload",
                    f"expected columns (an object mapping feature names to lists of values), "
                    f"got {_type_name(columns)}",
                )
            ]
        )
    problems: list[Problem] = []
    names = {f.name for f in features}
    if extra == "reject":
        problems.extend(_unknown(sorted(str(k) for k in columns if k not in names), names))
    present: dict[str, Any] = {}
    for spec in features:
        if spec.name not in columns:
            problems.append(
                Problem(
                    spec.name,
                    f"feature {spec.name!r} is missing; expected a column of "
                    f"{_expected(spec)} values",
                )
            )
        else:
            present[spec.name] = columns[spec.name]
    lengths: dict[str, int] = {}
    for name, values in present.items():
        if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
            problems.append(
                Problem(
                    name,
                    f"feature {name!r}: got {_type_name(values)} {_short(values)}, expected a "
                    "list with one value per row",
                )
            )
        else:
            lengths[name] = len(values)
    if n_rows is None and lengths:  # the length most columns agree on; the odd ones are wrong
        n_rows = Counter(lengths.values()).most_common(1)[0][0]
    if n_rows is not None:
        _check_size(n_rows, max_rows)
        for name, length in lengths.items():
            if length != n_rows:
                problems.append(
                    Problem(
                        name,
                        f"feature {name!r} has {length} value(s), expected {n_rows} (one per "
                        "row; every column must have the same length)",
                    )
                )
    elif not problems:
        raise InvalidInput([Problem("payload", "the request has no rows; expected at least 1")])
    usable = {n: v for n, v in present.items() if lengths.get(n) == n_rows}
    out = _convert_all(features, usable, problems, allow_missing, unknown_categories)
    return out, int(n_rows or 0)


# -- the fast path of clean records -----------------------------------------------------------
class Columns(dict[str, np.ndarray]):
    """Validated columns by feature name, as every ``validate_*`` returns them; records that
    needed no check beyond their types also keep the two matrices the columns are views of, for
    a consumer that takes them whole (the ONNX session, :mod:`kyklos.serving.onnx_runtime`):
    ``numeric`` ``[N, k]`` float64 with the features ``numeric_names`` (finite), and
    ``categorical`` ``[N, m]`` object with ``categorical_names`` (strings, no None)."""

    __slots__ = ("categorical", "categorical_names", "numeric", "numeric_names")

    numeric: np.ndarray | None
    numeric_names: tuple[str, ...]
    categorical: np.ndarray | None
    categorical_names: tuple[str, ...]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.numeric = self.categorical = None
        self.numeric_names = self.categorical_names = ()


@dataclass(frozen=True)
class _Plan:
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    known: tuple[frozenset[str] | None, ...]  # the categories of each categorical feature
    names: tuple[str, ...]  # numeric, then categorical: the order of the columns handed out


_PLANS: dict[int, tuple[Sequence[FeatureSpec], _Plan]] = {}
_NUMBERS = frozenset({float, int})
_STRINGS = frozenset({str})


def _plan(features: Sequence[FeatureSpec]) -> _Plan:
    cached = _PLANS.get(id(features))
    if cached is not None and cached[0] is features:
        return cached[1]
    numeric = tuple(f.name for f in features if f.kind == "numeric")
    categorical = tuple(f.name for f in features if f.kind != "numeric")
    known = tuple(
        frozenset(f.categories) if f.categories is not None else None
        for f in features
        if f.kind != "numeric"
    )
    plan = _Plan(numeric, categorical, known, numeric + categorical)
    if len(_PLANS) > 64:
        _PLANS.clear()
    _PLANS[id(features)] = (features, plan)
    return plan


def _clean_records(
    features: Sequence[FeatureSpec],
    records: list[Any],
    extra: ExtraPolicy,
    unknown_categories: CategoryPolicy,
) -> dict[str, np.ndarray] | None:
    """The columns of records that need no check beyond their types (every feature present,
    finite numbers, string categories, no other key when ``extra`` rejects); None otherwise."""
    plan = _plan(features)
    try:
        numbers = [[r[k] for k in plan.numeric] for r in records]
        strings = [[r[k] for k in plan.categorical] for r in records]
        if extra == "reject":
            width = len(features)
            if any(len(r) != width for r in records):
                return None
    except (KeyError, TypeError, IndexError):
        return None
    if len(records) == 1:
        if not (set(map(type, numbers[0])) <= _NUMBERS and set(map(type, strings[0])) <= _STRINGS):
            return None
    else:
        for row in numbers:
            if not set(map(type, row)) <= _NUMBERS:
                return None
        for row in strings:
            if not set(map(type, row)) <= _STRINGS:
                return None
    try:
        matrix = np.array(numbers, dtype=np.float64).reshape(len(records), len(plan.numeric))
    except (OverflowError, ValueError):
        return None
    if not np.isfinite(matrix).all():
        return None
    labels = np.empty((len(records), len(plan.categorical)), dtype=object)
    if plan.categorical:
        labels[:] = strings
        if unknown_categories == "reject":
            for j, known in enumerate(plan.known):
                if known is not None and not known.issuperset(labels[:, j].tolist()):
                    return None
    # one view per feature; iterating the transposed matrices is the cheapest way to get them
    columns = Columns(zip(plan.names, [*matrix.T, *labels.T], strict=True))
    columns.numeric, columns.numeric_names = matrix, plan.numeric
    columns.categorical, columns.categorical_names = labels, plan.categorical
    return columns


# -- columns ----------------------------------------------------------------------------------
def _convert_all(
    features: Sequence[FeatureSpec],
    columns: Mapping[str, Any],
    problems: list[Problem],
    allow_missing: bool,
    unknown_categories: CategoryPolicy,
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for spec in features:
        values = columns.get(spec.name)
        if values is None:
            continue
        converted = (
            _numeric(spec, values, allow_missing, problems)
            if spec.kind == "numeric"
            else _categorical(spec, values, allow_missing, unknown_categories, problems)
        )
        if converted is not None:
            out[spec.name] = converted
    if problems:
        raise InvalidInput(problems)
    return out


def _numeric(
    spec: FeatureSpec, values: Any, allow_missing: bool, problems: list[Problem]
) -> np.ndarray | None:
    name = spec.name
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):  # ragged nested lists
        problems.append(_shape_problem(spec, values))
        return None
    if array.ndim != 1:
        problems.append(_shape_problem(spec, values))
        return None
    kind = array.dtype.kind
    if kind not in "biuf":
        if kind == "O":
            bad = next(
                (
                    i
                    for i, v in enumerate(array)
                    if v is not None and not isinstance(v, _NUMBER_TYPES)
                ),
                None,
            )
        else:  # strings (numpy turns a list mixing numbers and strings into strings)
            bad = next((i for i, v in enumerate(values) if not isinstance(v, _NUMBER_TYPES)), 0)
        if bad is not None:
            value = values[bad]
            problems.append(
                Problem(
                    name,
                    f"feature {name!r}: got {_type_name(value)} {_short(value)} in row {bad}, "
                    "expected a number (or null for a missing value)",
                )
            )
            return None
    try:
        array = np.asarray(array, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        problems.append(
            Problem(name, f"feature {name!r}: a value is not representable as a 64-bit float")
        )
        return None
    finite = np.isfinite(array)
    if finite.all():
        return array
    nan = np.isnan(array)
    infinite = ~finite & ~nan
    if infinite.any():
        row = int(np.argmax(infinite))
        problems.append(
            Problem(
                name,
                f"feature {name!r}: got {array[row]} in row {row}, expected a finite number",
            )
        )
        return None
    if not (allow_missing and spec.nullable):
        problems.append(_missing_problem(spec, int(np.argmax(nan)), int(nan.sum()), allow_missing))
        return None
    return array


def _categorical(
    spec: FeatureSpec,
    values: Any,
    allow_missing: bool,
    unknown_categories: CategoryPolicy,
    problems: list[Problem],
) -> np.ndarray | None:
    name = spec.name
    if isinstance(values, np.ndarray) and values.dtype.kind == "U" and values.ndim == 1:
        array = values.astype(object)
    else:
        try:
            array = np.asarray(values, dtype=object)
        except (ValueError, TypeError):
            problems.append(_shape_problem(spec, values))
            return None
    if array.ndim != 1:
        problems.append(_shape_problem(spec, values))
        return None
    missing_rows: list[int] = []
    for i, v in enumerate(array):
        if type(v) is str:
            continue
        if v is None or (isinstance(v, float) and v != v):
            missing_rows.append(i)
            continue
        if isinstance(v, str):  # str subclasses (numpy.str_)
            continue
        problems.append(
            Problem(
                name,
                f"feature {name!r}: got {_type_name(v)} {_short(v)} in row {i}, expected a "
                "string category (or null for a missing value)"
                + (". Hint: send numbers-as-categories as strings" if _is_number(v) else ""),
            )
        )
        return None
    if missing_rows:
        if not (allow_missing and spec.nullable):
            problems.append(
                _missing_problem(spec, missing_rows[0], len(missing_rows), allow_missing)
            )
            return None
        array[missing_rows] = None
    if unknown_categories == "reject" and spec.categories is not None:
        known = frozenset(spec.categories)
        unknown = [(i, v) for i, v in enumerate(array) if v is not None and v not in known]
        if unknown:
            i, v = unknown[0]
            shown = ", ".join(repr(c) for c in spec.categories[:20])
            more = " ..." if len(spec.categories) > 20 else ""
            problems.append(
                Problem(
                    name,
                    f"feature {name!r}: category {v!r} in row {i} was not seen in training "
                    f"({len(unknown)} row(s) with unknown categories); expected one of "
                    f"{shown}{more}",
                )
            )
            return None
    return array


# -- messages ---------------------------------------------------------------------------------
def _check_policies(extra: str, unknown_categories: str) -> None:
    if extra not in {"reject", "ignore"}:
        raise ConfigError(f"extra={extra!r}: expected 'reject' or 'ignore'")
    if unknown_categories not in {"allow", "reject"}:
        raise ConfigError(
            f"unknown_categories={unknown_categories!r}: expected 'allow' or 'reject'"
        )


def _check_size(n_rows: int, max_rows: int | None) -> None:
    if n_rows == 0:
        raise InvalidInput([Problem("payload", "the request has no rows; expected at least 1")])
    if max_rows is not None and n_rows > max_rows:
        raise InvalidInput(
            [
                Problem(
                    "payload",
                    f"the request has {n_rows:,} rows, more than the limit of {max_rows:,}. "
                    "Hint: split it into smaller requests, or use `kyklos predict` for files",
                    status=413,
                )
            ]
        )


def _unknown(extra_names: Sequence[str], names: set[str]) -> list[Problem]:
    import difflib

    found = []
    for key in extra_names:
        close = difflib.get_close_matches(key, sorted(names), n=1)
        hint = f" Hint: did you mean {close[0]!r}?" if close else ""
        found.append(
            Problem(
                key,
                f"feature {key!r} is not a feature of this model; expected only "
                f"{_listed(sorted(names))}.{hint}",
            )
        )
    return found


def _missing_problem(spec: FeatureSpec, row: int, count: int, allow_missing: bool) -> Problem:
    why = (
        "missing values are not accepted (allow_missing is off)"
        if spec.nullable and not allow_missing
        else "the training data had no missing values in this feature"
    )
    return Problem(
        spec.name,
        f"feature {spec.name!r}: got a missing value (null/NaN) in row {row} ({count} row(s)); "
        f"expected a {_expected(spec)}: {why}",
    )


def _shape_problem(spec: FeatureSpec, values: Any) -> Problem:
    return Problem(
        spec.name,
        f"feature {spec.name!r}: got {_short(values)}, expected one {_expected(spec)} per row "
        "(a flat list, not nested lists)",
    )


def _expected(spec: FeatureSpec) -> str:
    return "number" if spec.kind == "numeric" else "string category"


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:30])
    return shown + (f" ... ({len(names)} features)" if len(names) > 30 else "")


def _is_number(value: Any) -> bool:
    return isinstance(value, _NUMBER_TYPES)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool | np.bool_):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float | np.integer | np.floating):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple | np.ndarray):
        return "a list"
    return f"a {type(value).__name__}"


def _short(value: Any) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= 60 else text[:57] + "..."
