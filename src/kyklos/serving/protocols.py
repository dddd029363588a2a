"""Request parsing and answer encoding of the HTTP protocols (no pydantic on the hot path).

Two protocols share one batching path; both end in *records* (a list of ``{feature: value}``)
or *columns* (``{feature: [values]}``), which :mod:`kyklos.serving.validation` checks against
the model's features:

- ``POST /predict`` (kyklos): one row as an object, many as ``{"rows": [...]}`` or
  ``{"columns": {...}}``; answers predictions, scores (binary), model, version, request id.
- ``POST /invocations`` (MLflow scoring): ``dataframe_split``, ``dataframe_records``,
  ``instances``, ``inputs`` (JSON) or a ``text/csv`` body; answers ``{"predictions": [...]}``.

Every client mistake raises :class:`RequestError` (a :class:`~kyklos.errors.ServingError`
that also says what was ``expected``); the app turns it into a 4xx JSON body.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from kyklos.errors import ServingError

__all__ = [
    "INVOCATION_KEYS",
    "JSON_TYPES",
    "Parsed",
    "RequestError",
    "dumps",
    "encode_values",
    "loads",
    "parse_csv",
    "parse_invocations",
    "parse_predict",
]

JSON_TYPES = ("application/json",)
CSV_TYPES = ("text/csv",)
INVOCATION_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


class FeatureLike(Protocol):
    """What the protocols need of a model feature (``kyklos.serving.model.FeatureSpec``)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...


class RequestError(ServingError):
    """A request the server cannot accept: ``status`` (4xx), ``field`` and what was ``expected``."""

    def __init__(
        self, message: str, *, field: str | None = None, status: int = 422, expected: str = ""
    ) -> None:
        super().__init__(message, field=field, status=status)
        self.expected = expected


@dataclass(frozen=True)
class Parsed:
    """A request's rows: exactly one of ``records`` or ``columns`` is set."""

    records: list[dict[str, Any]] | None = None
    columns: dict[str, Any] | None = None


# -- JSON ---------------------------------------------------------------------------------------

try:  # orjson is 3-10x faster both ways; plain json is the fallback
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only without orjson
    _orjson = None  # type: ignore[assignment]


def loads(body: bytes) -> Any:
    """Parse a JSON body; malformed JSON is a 400 naming the position."""
    if not body:
        raise RequestError(
            "the request body is empty", field="body", status=400, expected="a JSON document"
        )
    try:
        if _orjson is not None:
            return _orjson.loads(body)
        import json

        return json.loads(body)
    except ValueError as exc:  # orjson.JSONDecodeError and json.JSONDecodeError are ValueErrors
        raise RequestError(
            f"malformed JSON: {exc}", field="body", status=400, expected="a JSON document"
        ) from exc


def dumps(value: Any) -> bytes:
    """Encode an answer (NaN and infinities become null, numpy arrays are lists)."""
    if _orjson is not None:
        return _orjson.dumps(value, option=_orjson.OPT_SERIALIZE_NUMPY)
    import json

    return json.dumps(value, allow_nan=False, default=_default).encode()


def _default(value: Any) -> Any:  # pragma: no cover - only without orjson
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_values(values: np.ndarray, *, integral: bool) -> list[Any]:
    """A float64 answer array as a JSON-able list: ints for class labels, None for NaN."""
    if values.size <= 16:  # the common small answer: plain Python beats numpy's call overhead
        small: list[Any] = values.tolist()
        if integral:
            try:
                return [int(v) for v in small]
            except (ValueError, OverflowError):  # NaN or infinity: not a label
                pass
        return [v if math.isfinite(v) else None for v in small]
    if integral and values.size and np.all(np.isfinite(values)):
        return values.astype(np.int64).tolist()  # type: ignore[no-any-return]
    out: list[Any] = values.tolist()
    if not np.all(np.isfinite(values)):
        out = [v if math.isfinite(v) else None for v in out]
    return out


# -- kyklos /predict ----------------------------------------------------------------------------

_PREDICT_SHAPES = (
    'one row as an object {"feature": value, ...}, many as {"rows": [{...}, ...]} '
    'or {"columns": {"feature": [values], ...}}'
)


def parse_predict(payload: Any) -> Parsed:
    """The rows of a ``/predict`` body (see the module docstring)."""
    if not isinstance(payload, dict):
        raise RequestError(
            f"the body is a JSON {_json_kind(payload)}, not an object",
            field="body",
            expected=_PREDICT_SHAPES,
        )
    if "rows" in payload and len(payload) == 1:
        rows = payload["rows"]
        if not isinstance(rows, list):
            raise RequestError(
                f"'rows' is a JSON {_json_kind(rows)}",
                field="rows",
                expected="a list of objects, one per row",
            )
        return Parsed(records=_records(rows, "rows"))
    if "columns" in payload and len(payload) == 1:
        return Parsed(columns=_columns(payload["columns"], "columns"))
    return Parsed(records=[payload])


# -- MLflow /invocations ------------------------------------------------------------------------

_INVOCATION_SHAPES = (
    "a JSON object with exactly one of " + ", ".join(INVOCATION_KEYS) + " (and optional params)"
)


def parse_invocations(payload: Any, features: Sequence[FeatureLike]) -> Parsed:
    """The rows of an MLflow scoring request (``dataframe_split``, ``dataframe_records``,
    ``instances`` or ``inputs``); lists of lists are taken in the model's feature order."""
    if not isinstance(payload, dict):
        raise RequestError(
            f"the body is a JSON {_json_kind(payload)}, not an object",
            field="body",
            expected=_INVOCATION_SHAPES,
        )
    keys = [k for k in payload if k != "params"]
    if len(keys) != 1 or keys[0] not in INVOCATION_KEYS:
        found = ", ".join(map(repr, keys)) or "no key"
        raise RequestError(
            f"the MLflow scoring body has {found}",
            field="body",
            expected=_INVOCATION_SHAPES,
        )
    key = keys[0]
    value = payload[key]
    if key == "dataframe_split":
        return Parsed(records=_split(value))
    if key == "dataframe_records":
        if not isinstance(value, list):
            raise RequestError(
                f"'dataframe_records' is a JSON {_json_kind(value)}",
                field=key,
                expected="a list of objects, one per row",
            )
        return Parsed(records=_records(value, key))
    # instances / inputs: records, positional rows, or columns
    if isinstance(value, dict):
        return Parsed(columns=_columns(value, key))
    if isinstance(value, list):
        if value and all(isinstance(r, list) for r in value):
            names = [f.name for f in features]
            return Parsed(records=_positional(value, names, key))
        return Parsed(records=_records(value, key))
    raise RequestError(
        f"{key!r} is a JSON {_json_kind(value)}",
        field=key,
        expected="a list of row objects, a list of row lists, or an object of columns",
    )


def parse_csv(body: bytes, features: Sequence[FeatureLike]) -> Parsed:
    """The rows of a ``text/csv`` body: a header line naming the features, then one line per row.

    Numeric features are parsed as numbers (an empty cell is missing); categorical ones stay text.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError(
            f"the CSV body is not UTF-8: {exc}", field="body", status=400, expected="UTF-8 text"
        ) from exc
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise RequestError(
            "the CSV body is empty", field="body", status=400, expected="a header line and rows"
        ) from None
    except csv.Error as exc:
        raise RequestError(f"malformed CSV: {exc}", field="body", status=400) from exc
    kinds = {f.name: f.kind for f in features}
    columns: dict[str, list[Any]] = {name: [] for name in header}
    if len(columns) != len(header):
        raise RequestError(
            "the CSV header names a column twice", field="header", expected="distinct names"
        )
    try:
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise RequestError(
                    f"CSV line {line} has {len(row)} cells, the header {len(header)}",
                    field=f"line {line}",
                    expected=f"{len(header)} cells",
                )
            for name, cell in zip(header, row, strict=True):
                columns[name].append(_cell(cell, kinds.get(name), name, line))
    except csv.Error as exc:
        raise RequestError(f"malformed CSV: {exc}", field="body", status=400) from exc
    return Parsed(columns=columns)


def _cell(cell: str, kind: str | None, name: str, line: int) -> Any:
    if cell == "":
        return None
    if kind != "numeric":
        return cell
    try:
        return float(cell)
    except ValueError:
        raise RequestError(
            f"CSV line {line}: {name} = {cell!r} is not a number",
            field=name,
            expected="a number (or an empty cell for a missing value)",
        ) from None


# -- shared shapes ------------------------------------------------------------------------------


def _records(rows: list[Any], field: str) -> list[dict[str, Any]]:
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(
                f"{field}[{i}] is a JSON {_json_kind(row)}",
                field=f"{field}[{i}]",
                expected="an object of feature values",
            )
    return rows


def _columns(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RequestError(
            f"{field!r} is a JSON {_json_kind(value)}",
            field=field,
            expected="an object mapping each feature to a list of values",
        )
    if value and not any(isinstance(v, list) for v in value.values()):
        return {k: [v] for k, v in value.items()}  # one row given as scalars
    for name, column in value.items():
        if not isinstance(column, list):
            raise RequestError(
                f"{field}.{name} is a JSON {_json_kind(column)}",
                field=name,
                expected="a list of values, one per row",
            )
    return value


def _split(value: Any) -> list[dict[str, Any]]:
    field = "dataframe_split"
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise RequestError(
            f"{field!r} is not an object with a 'data' list",
            field=field,
            expected='{"columns": [names], "data": [[row values], ...]}',
        )
    names = value.get("columns")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RequestError(
            f"{field}.columns is missing or not a list of names",
            field=f"{field}.columns",
            expected="a list of feature names",
        )
    return _positional(value["data"], names, f"{field}.data")


def _positional(rows: list[Any], names: list[str], field: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    width = len(names)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            got = f"{len(row)} values" if isinstance(row, list) else f"a {_json_kind(row)}"
            raise RequestError(
                f"{field}[{i}] has {got}",
                field=f"{field}[{i}]",
                expected=f"a list of {width} values ({', '.join(names)})",
            )
        records.append(dict(zip(names, row, strict=True)))
    return records


def _json_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else type(value).__name__
