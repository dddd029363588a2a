"""The record layout of the prediction and label logs (format v1), and batch normalisation.

A log record is one *row* answered (or labelled). Writers take a **columnar batch**: a mapping
of column name → a scalar (the same value for every row of the batch) or a 1-D array of one
value per row. :meth:`LogSchema.normalize` checks and converts such a batch on the caller's
thread (so a bad batch fails its own caller, never its group commit), without building a
Python object per row; :meth:`LogSchema.build` merges many normalised batches into one Arrow
record batch on the committer thread.

Beyond the columns of ``docs/prediction-log.md`` every record carries ``writer`` (the id of
the process-local writer that logged it) and ``seq`` (int64, 0, 1, 2, ... per writer, in
commit order, without gaps): ``(writer, seq)`` is unique and is what incremental readers
keep as their cursor.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from kyklos.errors import DataError

__all__ = [
    "ARMS",
    "ENDPOINTS",
    "FEATURE_PREFIX",
    "FORMAT_VERSION",
    "LABELS",
    "PREDICTIONS",
    "TS_TYPE",
    "Column",
    "LogSchema",
    "Normalized",
    "label_schema",
    "prediction_schema",
    "schema_of",
    "to_micros",
]

FORMAT_VERSION = "1"
PREDICTIONS = "predictions"
LABELS = "labels"
FEATURE_PREFIX = "f."
ARMS = ("champion", "canary", "shadow", "challenger")  # challenger: the name before canary
ENDPOINTS = ("predict", "invocations", "v2", "batch")
TS_TYPE = pa.timestamp("us", tz="UTC")

Kind = Literal["str", "int32", "int64", "float64", "ts"]
FeatureKind = Literal["numeric", "categorical"]

_ARROW: dict[str, pa.DataType] = {
    "str": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "ts": TS_TYPE,
}
_NUMPY: dict[str, Any] = {
    "int32": np.int32,
    "int64": np.int64,
    "float64": np.float64,
    "ts": np.int64,
}
#: Scalar types taken as they are on the hot path (ints are range-checked as int32).
_FAST: dict[str, frozenset[type]] = {
    "str": frozenset({str, type(None)}),
    "int32": frozenset({int}),
    "int64": frozenset(),
    "float64": frozenset({float, type(None)}),
    "ts": frozenset(),
}
_INT32 = 2**31
_REQUIRED = object()  # default of a column a batch must give
_ROW_INDEX = object()  # default of ``row``: 0, 1, ..., n - 1
_NOW = object()  # default of ``ts``: the time of the append


@dataclass(frozen=True)
class Column:
    """One column: its name, its kind, and its default when a batch leaves it out."""

    name: str
    kind: Kind
    default: Any = None

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW[self.kind]


#: One normalised batch: its row count and one value per schema column, each a scalar (same
#: for every row) or a numpy array of ``rows`` values (object arrays of str/None for strings).
@dataclass(frozen=True, slots=True)
class Normalized:
    rows: int
    values: tuple[Any, ...]
    scalar: bool  # every value is a scalar (a one-row batch)


@dataclass(frozen=True)
class LogSchema:
    """The columns of one log (``predictions`` or ``labels``); ``length_from`` sizes a batch."""

    kind: str
    columns: tuple[Column, ...]
    length_from: str
    _names: frozenset[str] = field(init=False, repr=False, compare=False)
    _plan: tuple[tuple[str, Any, frozenset[type], Column], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", frozenset(c.name for c in self.columns))
        plan = tuple(
            (
                c.name,
                c.default,
                _FAST[c.kind] - {type(None)} if c.default is _REQUIRED else _FAST[c.kind],
                c,
            )
            for c in self.columns
        )
        object.__setattr__(self, "_plan", plan)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def arrow(self, writer: str = "") -> pa.Schema:
        """The Arrow schema of the records (with ``writer`` and ``seq``), stamped with metadata."""
        fields = [pa.field(c.name, c.arrow_type) for c in self.columns]
        fields += [pa.field("writer", pa.string()), pa.field("seq", pa.int64())]
        meta = {"kyklos.log": self.kind, "kyklos.format": FORMAT_VERSION, "kyklos.writer": writer}
        return pa.schema(fields, metadata=meta)

    def normalize(self, records: Mapping[str, Any]) -> Normalized:
        """Check and convert one columnar batch; raise :class:`DataError` naming the culprit."""
        if not self._names.issuperset(records):
            unknown = [k for k in records if k not in self._names]
            raise DataError(
                f"{self.kind} log: unknown column(s) {', '.join(map(repr, unknown))}; "
                f"expected some of {', '.join(self.names)}. Hint: features are named "
                f"'{FEATURE_PREFIX}<name>' and must be declared when the writer is created"
            )
        try:
            rows = _length(records[self.length_from])
        except KeyError:
            raise DataError(
                f"{self.kind} log: the batch has no {self.length_from!r} column"
            ) from None
        values: list[Any] = []
        scalar = rows == 1
        get = records.get
        ndarray = np.ndarray
        for name, default, fast, column in self._plan:
            value = get(name, default)
            kind = type(value)
            if kind is ndarray and scalar and value.shape == (1,):
                value = value.item()  # a one-row request's column: its Python value
                kind = type(value)
            if kind in fast and (kind is not int or -_INT32 <= value < _INT32):
                values.append(value)
                continue
            if value is _REQUIRED:
                raise DataError(
                    f"{self.kind} log: the batch has no {column.name!r} column (required: "
                    f"{', '.join(c.name for c in self.columns if c.default is _REQUIRED)})"
                )
            if value is _ROW_INDEX:
                value = 0 if rows == 1 else np.arange(rows, dtype=np.int32)
            elif value is _NOW:
                value = time.time_ns() // 1000
            elif value is None and column.default is _REQUIRED:
                raise DataError(f"{self.kind} log: column {column.name!r} cannot be empty")
            else:
                value = _convert(column, value, rows, self.kind)
            if isinstance(value, np.ndarray):
                scalar = False
            values.append(value)
        return Normalized(rows, tuple(values), scalar)

    def build(
        self, batches: Sequence[Normalized], *, writer: str, first_seq: int, schema: pa.Schema
    ) -> pa.RecordBatch:
        """Merge normalised batches into one record batch; ``seq`` starts at ``first_seq``.

        Runs on the committer thread and cannot fail on data ``normalize`` accepted.
        """
        if all(b.scalar for b in batches):  # single-row requests
            rows = [b.values for b in batches]
            return self.build_rows(rows, writer=writer, first_seq=first_seq, schema=schema)
        parts = list(zip(*(b.values for b in batches), strict=True))
        counts = [b.rows for b in batches]
        total = sum(counts)
        arrays = [
            _merge(c, list(p), counts, total) for c, p in zip(self.columns, parts, strict=True)
        ]
        return _with_seq(arrays, total, writer, first_seq, schema)

    def build_rows(
        self,
        rows: Sequence[tuple[Any, ...]],
        *,
        writer: str,
        first_seq: int,
        schema: pa.Schema,
    ) -> pa.RecordBatch:
        """One record batch of rows given as the ``values`` of one-row normalised batches (as
        the prediction log's WAL keeps them); ``seq`` starts at ``first_seq``."""
        parts = list(zip(*rows, strict=True))
        arrays = self._flat_columns(parts, len(rows))
        return _with_seq(arrays, len(rows), writer, first_seq, schema)

    def _flat_columns(self, parts: list[tuple[Any, ...]], total: int) -> list[pa.Array]:
        """One Arrow array per column from one scalar per row.

        The float64 columns without nulls are converted together: one numpy matrix, each
        column an Arrow view of its row of it (~1 µs a column against ~3 µs for
        ``pa.array`` of a list, which sets the cost of a one-row commit).
        """
        arrays: list[pa.Array | None] = [None] * len(parts)
        dense: list[int] = []
        for i, (column, values) in enumerate(zip(self.columns, parts, strict=True)):
            if column.kind == "float64" and None not in values:
                dense.append(i)
            else:
                arrays[i] = _flat(column, list(values))
        if dense:
            matrix = np.array([parts[i] for i in dense], dtype=np.float64)
            buffer = pa.py_buffer(matrix)  # holds the matrix alive
            width = total * 8
            for row, i in enumerate(dense):
                arrays[i] = pa.Array.from_buffers(
                    _FLOAT64, total, [None, buffer.slice(row * width, width)]
                )
        return arrays


def _with_seq(
    arrays: list[pa.Array], total: int, writer: str, first_seq: int, schema: pa.Schema
) -> pa.RecordBatch:
    arrays.append(pa.array(np.full(total, writer, dtype=object), type=pa.string()))
    arrays.append(pa.array(np.arange(first_seq, first_seq + total, dtype=np.int64)))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def prediction_schema(features: Sequence[tuple[str, str]] = ()) -> LogSchema:
    """The prediction-log layout for ``features`` (``(name, "numeric" | "categorical")``)."""
    columns = [
        Column("request_id", "str", _REQUIRED),
        Column("row", "int32", _ROW_INDEX),
        Column("ts", "ts", _NOW),
        Column("model", "str", _REQUIRED),
        Column("version", "int32", _REQUIRED),
        Column("arm", "str", "champion"),
        Column("endpoint", "str", "predict"),
        Column("latency_ms", "float64"),
        Column("prediction", "float64", _REQUIRED),
        Column("score", "float64"),
    ]
    seen: set[str] = set()
    for name, kind in features:
        if kind not in ("numeric", "categorical"):
            raise DataError(
                f"prediction log: feature {name!r} has kind {kind!r}; "
                "expected 'numeric' or 'categorical'"
            )
        if not name or name in seen:
            raise DataError(f"prediction log: feature name {name!r} is empty or given twice")
        seen.add(name)
        columns.append(
            Column(FEATURE_PREFIX + name, "float64" if kind == "numeric" else "str", None)
        )
    return LogSchema(PREDICTIONS, tuple(columns), "prediction")


def schema_of(arrow: pa.Schema) -> LogSchema:
    """The layout a log file's Arrow schema (from :meth:`LogSchema.arrow`) was written with."""
    if (arrow.metadata or {}).get(b"kyklos.log") == LABELS.encode():
        return label_schema()
    features = [
        (f.name.removeprefix(FEATURE_PREFIX), "numeric" if f.type == _FLOAT64 else "categorical")
        for f in arrow
        if f.name.startswith(FEATURE_PREFIX)
    ]
    return prediction_schema(features)


def label_schema() -> LogSchema:
    """The label-log layout: ``request_id``, ``row``, ``label``, ``ts``."""
    columns = (
        Column("request_id", "str", _REQUIRED),
        Column("row", "int32", _ROW_INDEX),
        Column("label", "float64", _REQUIRED),
        Column("ts", "ts", _NOW),
    )
    return LogSchema(LABELS, columns, "label")


def to_micros(value: dt.datetime) -> int:
    """Microseconds since the epoch of ``value`` (a naive datetime is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _length(value: Any) -> int:
    if isinstance(value, np.ndarray | list | tuple | pa.Array | pa.ChunkedArray):
        return len(value)
    return 1


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray | list | tuple | pa.Array | pa.ChunkedArray)


def _convert(column: Column, value: Any, rows: int, log: str) -> Any:
    """A scalar or a length-``rows`` numpy array of the column's kind."""
    where = f"{log} log: column {column.name!r}"
    if not _is_array(value):
        return _scalar(column, value, where)
    if isinstance(value, pa.Array | pa.ChunkedArray):
        value = value.to_numpy(zero_copy_only=False)
    if len(value) != rows:
        raise DataError(f"{where} has {len(value)} values; the batch has {rows} rows")
    if column.kind == "str":
        return _strings(value)
    if column.kind == "ts":
        return _timestamps(value, where)
    try:
        raw = np.asarray(value)
        if column.kind != "float64" and raw.dtype.kind not in "iub":
            raise TypeError(f"dtype {raw.dtype}")
        too_wide = column.kind == "int32" and raw.size and raw.dtype.kind in "iu"
        if too_wide and (raw.min() < -_INT32 or raw.max() >= _INT32):
            raise ValueError("out of the int32 range")
        array = raw.astype(_NUMPY[column.kind])
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"{where}: values are not {column.kind} numbers ({exc})") from None
    if array.ndim != 1:
        raise DataError(f"{where} must be one-dimensional, got shape {array.shape}")
    return array


def _scalar(column: Column, value: Any, where: str) -> Any:
    if value is None:
        if column.kind in ("str", "float64"):
            return None
        raise DataError(f"{where} cannot be empty")
    if column.kind == "str":
        return value if isinstance(value, str) else _string(value)
    if column.kind == "ts":
        return _timestamp(value, where)
    if column.kind == "float64":
        if isinstance(value, float | int | np.number) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, int | np.integer) and not isinstance(value, bool):
        if column.kind == "int32" and not -_INT32 <= int(value) < _INT32:
            raise DataError(f"{where}: {value!r} is out of the int32 range")
        return int(value)
    raise DataError(f"{where}: {value!r} is not a {column.kind} value")


def _string(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, str) else str(value)


def _strings(values: Any) -> np.ndarray[Any, Any]:
    """An object array of str/None: NaN and None become null, other values are formatted."""
    array = np.asarray(values, dtype=object)
    if array.ndim != 1:
        array = array.reshape(-1)
    if not set(map(type, array.tolist())) <= {str, type(None)}:
        array = np.array([_string(v) for v in array.tolist()], dtype=object)
    return array


def _timestamp(value: Any, where: str) -> int:
    if isinstance(value, dt.datetime):
        return to_micros(value)
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[us]").astype(np.int64))
    if isinstance(value, float):
        return round(value * 1_000_000)  # seconds, as from time.time()
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)  # microseconds since the epoch
    raise DataError(
        f"{where}: {value!r} is not a time; expected a datetime, seconds (float) or "
        "microseconds (int) since the epoch"
    )


def _timestamps(values: Any, where: str) -> np.ndarray[Any, Any]:
    array = np.asarray(values)
    if array.dtype.kind == "M":
        micros: np.ndarray[Any, Any] = array.astype("datetime64[us]").astype(np.int64)
    elif array.dtype.kind in "iu":
        micros = array.astype(np.int64)
    elif array.dtype.kind == "f":
        micros = np.rint(array * 1_000_000).astype(np.int64)
    else:
        micros = np.array([_timestamp(v, where) for v in array.tolist()], dtype=np.int64)
    return micros


_FLOAT64 = pa.float64()


def _flat(column: Column, values: list[Any]) -> pa.Array:
    """One Arrow array from one scalar per row."""
    if column.kind == "str":
        return _text(values)
    return pa.array(values, type=column.arrow_type)


def _text(values: Any) -> pa.Array:
    """Strings to Arrow; text that is not valid UTF-8 (lone surrogates) is escaped, not lost."""
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowException, UnicodeError):
        cleaned = [
            v if v is None else v.encode("utf-8", "backslashreplace").decode("utf-8")
            for v in list(values)
        ]
        return pa.array(cleaned, type=pa.string())


def _merge(column: Column, parts: list[Any], counts: list[int], total: int) -> pa.Array:
    """One Arrow array from per-batch scalars/arrays (on the committer thread; cannot fail)."""
    arrow_type = column.arrow_type
    if column.kind == "str":
        if all(not isinstance(p, np.ndarray) for p in parts):
            flat = np.array(parts, dtype=object)
            if total != len(parts):
                flat = np.repeat(flat, counts)
        else:
            flat = np.concatenate(
                [
                    p if isinstance(p, np.ndarray) else np.full(c, p, dtype=object)
                    for p, c in zip(parts, counts, strict=True)
                ]
            )
        return _text(flat)
    dtype = _NUMPY[column.kind]
    mask = None
    if any(p is None for p in parts):  # a null scalar (only float64 columns allow it)
        mask = np.repeat(np.array([p is None for p in parts]), counts)
        parts = [math.nan if p is None else p for p in parts]
    if all(not isinstance(p, np.ndarray) for p in parts):
        values = np.array(parts, dtype=dtype)
        if total != len(parts):
            values = np.repeat(values, counts)
    else:
        values = np.concatenate(
            [
                p if isinstance(p, np.ndarray) else np.full(c, p, dtype=dtype)
                for p, c in zip(parts, counts, strict=True)
            ]
        )
    if column.kind == "ts":
        return pa.array(values, type=arrow_type)
    return pa.array(values, type=arrow_type, mask=mask)
