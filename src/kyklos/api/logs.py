"""Querying the prediction log: the Python twin of ``kyklos logs``.

The query runs in DuckDB over the sealed Parquet segments (``read_parquet``, so filters and
projections reach the files) plus the complete batches of the live write-ahead files, registered
as an Arrow table; the files are taken from one :class:`~kyklos.data.predlog.LogSnapshot`, so a
segment sealed during the query is counted once.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from kyklos.config import load_project
from kyklos.config.project import parse_duration
from kyklos.data.predlog import (
    ARMS,
    LABELS,
    PREDICTIONS,
    LogSnapshot,
    PredictionLog,
    empty_table,
)
from kyklos.errors import ConfigError, DataError

__all__ = [
    "FORMATS",
    "TABLE_COLUMNS",
    "encode_logs",
    "logs_query",
    "parse_time",
    "save_logs",
]

FORMATS = ("table", "csv", "json", "parquet")
#: The columns ``kyklos logs`` shows as a table unless ``--columns`` says otherwise.
TABLE_COLUMNS = (
    "ts",
    "request_id",
    "row",
    "version",
    "arm",
    "endpoint",
    "prediction",
    "score",
    "latency_ms",
)
_RELATIVE = re.compile(r"^-?\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)$")


def parse_time(text: str, *, what: str = "time", now: dt.datetime | None = None) -> dt.datetime:
    """A point in time from ISO 8601 (naive means UTC), ``now``, or a duration back from now.

    >>> parse_time("2026-11-23T10:00").isoformat()
    '2026-11-23T10:00:00+00:00'
    >>> now = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
    >>> parse_time("-90m", now=now).isoformat(), parse_time("2h", now=now).hour
    ('2026-11-23T10:30:00+00:00', 10)
    """
    raw = text.strip()
    now = now or dt.datetime.now(dt.UTC)
    if raw.lower() == "now":
        return now
    if _RELATIVE.match(raw):
        return now - dt.timedelta(seconds=parse_duration(raw.lstrip("-").strip()))
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError(
            f"{what}: {text!r} is not a time; expected ISO 8601 such as 2026-11-23T10:00 "
            "(naive means UTC) or a duration back from now such as -1h, 30m, 2d"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def logs_query(
    project: str | Path | None = None,
    *,
    since: str | dt.datetime | None = None,
    until: str | dt.datetime | None = None,
    version: int | None = None,
    arm: str | None = None,
    limit: int | None = None,
    labels: bool = False,
    columns: Sequence[str] | None = None,
    root: Path | None = None,
) -> pa.Table:
    """Predictions with ``since <= ts < until`` (of ``version``, ``arm``), ordered by time.

    ``limit`` keeps the most recent records. ``labels`` adds each prediction's latest label
    (``label``, ``label_ts``; null until one arrives). ``root`` reads a log folder directly
    instead of the project's ``.kyklos/logs``.
    """
    start = _time(since, "since")
    end = _time(until, "until")
    if arm is not None and arm not in ARMS:
        raise ConfigError(f"arm: {arm!r} is not a rollout arm; expected one of {', '.join(ARMS)}")
    if limit is not None and limit < 0:
        raise ConfigError(f"limit: {limit} is negative; expected a number of records >= 0")
    log = (
        PredictionLog(root)
        if root is not None
        else PredictionLog.for_project(load_project(project))
    )

    import duckdb

    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        source = _source(con, log.snapshot(PREDICTIONS, since=start, until=end), "wal_predictions")
        if source is None:
            return _select(_empty(labels), columns)
        where: list[str] = []
        params: list[Any] = []
        for condition, value in (
            ("ts >= ?", start),
            ("ts < ?", end),
            ("version = ?", version),
            ("arm = ?", arm),
        ):
            if value is not None:
                where.append(condition)
                params.append(value)
        sql = f"SELECT * FROM ({source})" + (f" WHERE {' AND '.join(where)}" if where else "")
        if limit is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY ts DESC, writer DESC, seq DESC LIMIT {limit:d})"
        if labels:
            label_source = _source(con, log.snapshot(LABELS), "wal_labels")
            if label_source is None:
                sql = f"SELECT *, NULL::DOUBLE AS label, NULL::TIMESTAMPTZ AS label_ts FROM ({sql})"
            else:
                sql = (
                    f"WITH p AS ({sql}), l AS ("
                    f'SELECT request_id, "row", label, ts AS label_ts FROM ({label_source}) '
                    'QUALIFY row_number() OVER (PARTITION BY request_id, "row" '
                    "ORDER BY ts DESC, writer DESC, seq DESC) = 1) "
                    'SELECT p.*, l.label, l.label_ts FROM p LEFT JOIN l USING (request_id, "row")'
                )
        sql = f"SELECT * FROM ({sql}) ORDER BY ts, writer, seq"
        try:
            table = con.sql(sql, params=params).to_arrow_table()
        except duckdb.Error as exc:
            raise DataError(f"cannot query the prediction log in {log.root}: {exc}") from exc
    finally:
        con.close()
    return _select(table.replace_schema_metadata(None), columns)


def encode_logs(table: pa.Table, fmt: str) -> bytes:
    """The records as CSV or JSON Lines (one object per record; NaN becomes null)."""
    _check_format(fmt, ("csv", "json"))
    if fmt == "csv":
        import pyarrow.csv as pacsv

        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink)
        return bytes(sink.getvalue().to_pybytes())
    lines = [json.dumps(_jsonable(row), ensure_ascii=False) for row in table.to_pylist()]
    return "".join(line + "\n" for line in lines).encode()


def save_logs(table: pa.Table, fmt: str, output: str | Path) -> Path:
    """Write the records to ``output`` as CSV, JSON Lines or Parquet, atomically."""
    _check_format(fmt, ("csv", "json", "parquet"))
    target = Path(output)
    if target.is_dir():
        raise ConfigError(f"output: {str(target)!r} is a folder; expected a file name")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, tmp, compression="zstd")
        else:
            tmp.write_bytes(encode_logs(table, fmt))
        tmp.replace(target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write {target}: {exc}") from exc
    return target


def _check_format(fmt: str, allowed: Sequence[str]) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"format: {fmt!r} is unknown; expected one of {', '.join(FORMATS)}")
    if fmt not in allowed:
        raise ConfigError(
            f"format: {fmt!r} cannot be written here; expected one of {', '.join(allowed)}"
        )


def _time(value: str | dt.datetime | None, what: str) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value
    return parse_time(value, what=what)


def _source(con: Any, snap: LogSnapshot, name: str) -> str | None:
    """SQL reading a snapshot: the segments' Parquet files UNION ALL BY NAME the WAL tail."""
    parts: list[str] = []
    if snap.segments:
        paths = ", ".join("'" + str(p).replace("'", "''") + "'" for p in snap.segment_paths)
        parts.append(f"SELECT * FROM read_parquet([{paths}], union_by_name = true)")
    tail = snap.tail()
    if tail is not None:
        con.register(name, tail)
        parts.append(f"SELECT * FROM {name}")
    return " UNION ALL BY NAME ".join(parts) if parts else None


def _empty(labels: bool) -> pa.Table:
    table = empty_table(PREDICTIONS)
    if labels:
        table = table.append_column("label", pa.array([], pa.float64()))
        table = table.append_column("label_ts", pa.array([], table.schema.field("ts").type))
    return table


def _select(table: pa.Table, columns: Sequence[str] | None) -> pa.Table:
    if columns is None:
        return table
    unknown = [c for c in columns if c not in table.column_names]
    if unknown:
        raise ConfigError(
            f"columns: {', '.join(map(repr, unknown))} not in the log; "
            f"expected some of {', '.join(table.column_names)}"
        )
    return table.select(list(columns))


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        elif isinstance(value, dt.datetime):
            value = value.isoformat()
        out[key] = value
    return out
