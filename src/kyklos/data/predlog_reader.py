"""Reading the prediction and label logs: full scans, the label join, incremental reads.

A reader takes a :class:`LogSnapshot` of a log folder: the sealed segments plus the complete
batches of every WAL not yet sealed. Files are listed twice around the WAL reads, so a WAL
sealed while the snapshot is taken is seen exactly once (as WAL or as segment), never twice.

Incremental consumers (monitoring) keep a :class:`LogCursor`: for each writer, the last ``seq``
consumed. ``seq`` numbers a writer's records 0, 1, 2, ... in commit order without gaps, and
sealing a WAL keeps its records and their ``seq``, so the cursor stays valid whether a record
was read from a WAL or, later, from the segment it became.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kyklos.data.predlog_files import SegmentInfo, list_files, read_wal, segment_info, wal_info
from kyklos.data.predlog_schema import LABELS, PREDICTIONS, TS_TYPE, label_schema, prediction_schema
from kyklos.errors import DataError

if TYPE_CHECKING:
    from kyklos.config import Project

__all__ = ["LogCursor", "LogSnapshot", "PredictionLog", "concat", "empty_table", "latest_labels"]

_KINDS = (PREDICTIONS, LABELS)
_ORDER = [("ts", "ascending"), ("writer", "ascending"), ("seq", "ascending")]


@dataclass(frozen=True)
class LogCursor:
    """Where an incremental reader stands: for each writer id, the last ``seq`` consumed."""

    positions: Mapping[str, int] = field(default_factory=dict)

    def get(self, writer: str) -> int:
        return self.positions.get(writer, -1)

    def to_dict(self) -> dict[str, Any]:
        return {"format": 1, "writers": dict(self.positions)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogCursor:
        return cls({str(k): int(v) for k, v in dict(data.get("writers", {})).items()})


@dataclass(frozen=True)
class LogSnapshot:
    """A consistent view of one log: sealed segments and the complete batches of live WALs."""

    kind: str
    segments: tuple[SegmentInfo, ...]
    wals: tuple[tuple[SegmentInfo, pa.Table], ...]

    @property
    def segment_paths(self) -> list[Path]:
        return [info.path for info in self.segments]

    def tail(self) -> pa.Table | None:
        """The WAL records as one table (None when there are none)."""
        tables = [table for _, table in self.wals if table.num_rows]
        return concat(tables) if tables else None


class PredictionLog:
    """The prediction and label logs under ``root`` (a project's ``.kyklos/logs``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._footers: dict[Path, SegmentInfo] = {}  # segments are immutable: cache footers

    @classmethod
    def for_project(cls, project: Project) -> PredictionLog:
        return cls(project.state_dir / "logs")

    def folder(self, kind: str = PREDICTIONS) -> Path:
        if kind not in _KINDS:
            raise DataError(f"log kind {kind!r} is unknown; expected one of {', '.join(_KINDS)}")
        return self.root / kind

    # -- files --------------------------------------------------------------------------------

    def snapshot(
        self,
        kind: str = PREDICTIONS,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> LogSnapshot:
        """The files of one log; segments entirely outside ``[since, until)`` are left out."""
        folder = self.folder(kind)
        for _ in range(10):
            segments, wals = list_files(folder)
            read: list[tuple[SegmentInfo, pa.Table]] = []
            try:
                for wal_id, name in sorted(wals.items()):
                    if wal_id not in segments:
                        table = read_wal(folder / name)
                        read.append((wal_info(folder / name, table), table))
                seen = {info.file_id for info, _ in read}
                later, _ = list_files(folder)  # segments sealed while the WALs were read
                names = {**{k: v for k, v in later.items() if k not in seen}, **segments}
                infos = [self._footer(folder / name) for name in sorted(names.values())]
            except FileNotFoundError:
                continue  # a WAL was sealed between listing and reading: list again
            break
        else:  # pragma: no cover - ten races in a row
            raise DataError(f"the log folder {folder} keeps changing; try again")
        lo = None if since is None else _aware(since)
        hi = None if until is None else _aware(until)
        keep = [i for i in infos if i.rows and _overlaps(i, lo, hi)]
        return LogSnapshot(kind, tuple(keep), tuple((i, t) for i, t in read if t.num_rows))

    def segments(self, kind: str = PREDICTIONS) -> list[SegmentInfo]:
        """Every file of a log: sealed segments, then live WALs (``sealed=False``)."""
        snap = self.snapshot(kind)
        return [*snap.segments, *(info for info, _ in snap.wals)]

    # -- queries ------------------------------------------------------------------------------

    def scan(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        version: int | None = None,
        columns: Sequence[str] | None = None,
        kind: str = PREDICTIONS,
    ) -> pa.Table:
        """Records with ``since <= ts < until`` (of one model ``version``), ordered by ``ts``."""
        snap = self.snapshot(kind, since=since, until=until)
        wanted = _needed(columns)
        conditions: list[pc.Expression] = []
        if since is not None:
            conditions.append(pc.field("ts") >= pa.scalar(_aware(since), TS_TYPE))
        if until is not None:
            conditions.append(pc.field("ts") < pa.scalar(_aware(until), TS_TYPE))
        if version is not None:
            conditions.append(pc.field("version") == version)
        parts = [_read_segment(info.path, wanted) for info in snap.segments]
        parts += [_project(table, wanted) for _, table in snap.wals]
        table = concat(parts) if parts else self._empty(kind)
        for condition in conditions:
            table = table.filter(condition)
        return _select(table.sort_by(_ORDER), columns)

    def labels(
        self, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> pa.Table:
        """The label records (``request_id``, ``row``, ``label``, ``ts``, ...), ordered by ``ts``."""
        return self.scan(since=since, until=until, kind=LABELS)

    def joined(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        version: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Predictions left-joined with their latest label by ``(request_id, row)``.

        Adds ``label`` (null while unlabelled) and ``label_ts``; the latest label (by ``ts``)
        of a row wins. Labels may have arrived in any order, before or after sealing.
        """
        cols = None if columns is None else [*dict.fromkeys([*columns, "request_id", "row"])]
        predictions = self.scan(since=since, until=until, version=version, columns=cols)
        order = pa.array(np.arange(predictions.num_rows, dtype=np.int64))
        predictions = predictions.append_column("_order", order)
        latest = latest_labels(self.labels())
        out = predictions.join(latest, keys=["request_id", "row"], join_type="left outer")
        out = out.sort_by("_order").drop_columns(["_order"])
        return _select(out, None if columns is None else [*columns, "label", "label_ts"])

    def lookup(
        self,
        request_ids: Sequence[str],
        *,
        since: dt.datetime | None = None,
        columns: Sequence[str] = ("request_id", "row", "ts", "version", "arm"),
    ) -> pa.Table:
        """The logged rows of these request ids (e.g. to tell ``/feedback`` which ids are unknown).

        Reads only ``columns`` (plus ``request_id``) of the files, from ``since`` on when given.
        """
        wanted = _needed([*dict.fromkeys(["request_id", *columns])])
        ids = pa.array(list(dict.fromkeys(request_ids)), type=pa.string())
        snap = self.snapshot(PREDICTIONS, since=since)
        parts = [_read_segment(info.path, wanted) for info in snap.segments]
        parts += [_project(table, wanted) for _, table in snap.wals]
        parts = [p.filter(pc.is_in(p.column("request_id"), value_set=ids)) for p in parts]
        table = concat(parts) if parts else self._empty(PREDICTIONS)
        if since is not None:
            table = table.filter(pc.field("ts") >= pa.scalar(_aware(since), TS_TYPE))
        return _select(table.sort_by(_ORDER), [*dict.fromkeys(["request_id", *columns])])

    def scan_since(
        self,
        cursor: LogCursor | None = None,
        *,
        kind: str = PREDICTIONS,
        columns: Sequence[str] | None = None,
    ) -> tuple[pa.Table, LogCursor]:
        """The records not yet consumed at ``cursor`` (ordered by ``ts``), and the new cursor.

        Start with ``cursor=None``; persist ``cursor.to_dict()`` between runs. Every record is
        returned exactly once over successive calls, whether it was read from a WAL or later
        from the segment that WAL became.
        """
        cursor = cursor or LogCursor()
        wanted = _needed(columns)
        table = self._empty(kind)
        for _ in range(3):
            snap = self.snapshot(kind)
            parts: list[pa.Table] = []
            for info in snap.segments:
                if info.seq_last > cursor.get(info.writer):
                    parts.append(_after(_read_segment(info.path, wanted), info, cursor))
            for info, wal in snap.wals:
                if info.seq_last > cursor.get(info.writer):
                    parts.append(_after(_project(wal, wanted), info, cursor))
            table = concat(parts) if parts else self._empty(kind)
            if not _has_gap(table, cursor):
                break  # else a file was missed in a race: read again (a lasting gap is kept)
        positions = dict(cursor.positions)
        if table.num_rows:
            last = table.group_by("writer").aggregate([("seq", "max")])
            for writer, seq in zip(
                last.column("writer").to_pylist(), last.column("seq_max").to_pylist(), strict=True
            ):
                positions[writer] = max(seq, positions.get(writer, -1))
        return _select(table.sort_by(_ORDER), columns), LogCursor(positions)

    # -- helpers ------------------------------------------------------------------------------

    def _footer(self, path: Path) -> SegmentInfo:
        info = self._footers.get(path)
        if info is None:
            info = self._footers[path] = segment_info(path)
        return info

    @staticmethod
    def _empty(kind: str) -> pa.Table:
        return empty_table(kind)


def empty_table(kind: str = PREDICTIONS) -> pa.Table:
    """An empty table of a log's base columns (no features)."""
    schema = prediction_schema() if kind == PREDICTIONS else label_schema()
    return schema.arrow().empty_table().replace_schema_metadata(None)


def latest_labels(labels: pa.Table) -> pa.Table:
    """The latest label of each ``(request_id, row)``: columns request_id, row, label, label_ts."""
    if labels.num_rows == 0:
        return pa.table(
            {
                "request_id": pa.array([], pa.string()),
                "row": pa.array([], pa.int32()),
                "label": pa.array([], pa.float64()),
                "label_ts": pa.array([], TS_TYPE),
            }
        )
    ordered = labels.sort_by([("ts", "ascending"), ("writer", "ascending"), ("seq", "ascending")])
    latest = ordered.group_by(["request_id", "row"], use_threads=False).aggregate(
        [("label", "last"), ("ts", "last")]
    )
    return pa.table(
        {
            "request_id": latest.column("request_id"),
            "row": latest.column("row"),
            "label": latest.column("label_last"),
            "label_ts": latest.column("ts_last"),
        }
    )


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate tables whose feature columns may differ (missing ones become null).

    A feature logged as a number in one file and as text in another is read as text.
    """
    tables = [t.replace_schema_metadata(None) for t in tables]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        types: dict[str, set[pa.DataType]] = {}
        for table in tables:
            for f in table.schema:
                types.setdefault(f.name, set()).add(f.type)
        text = {name for name, kinds in types.items() if len(kinds) > 1}
        fixed = []
        for table in tables:
            for name in text & set(table.column_names):
                i = table.schema.get_field_index(name)
                table = table.set_column(i, name, pc.cast(table.column(name), pa.string()))
            fixed.append(table)
        return pa.concat_tables(fixed, promote_options="permissive")


def _read_segment(path: Path, columns: list[str] | None) -> pa.Table:
    handle = pq.ParquetFile(path)
    if columns is not None:
        present = set(handle.schema_arrow.names)
        columns = [c for c in columns if c in present]
    return handle.read(columns=columns)


def _project(table: pa.Table, columns: list[str] | None) -> pa.Table:
    if columns is None:
        return table
    return table.select([c for c in columns if c in table.column_names])


def _needed(columns: Sequence[str] | None) -> list[str] | None:
    if columns is None:
        return None
    return [*dict.fromkeys([*columns, "ts", "writer", "seq", "version"])]


def _select(table: pa.Table, columns: Sequence[str] | None) -> pa.Table:
    if columns is None:
        return table
    missing = [c for c in columns if c not in table.column_names]
    for name in missing:  # a feature no file has yet: a column of nulls
        table = table.append_column(name, pa.nulls(table.num_rows))
    return table.select(list(columns))


def _after(table: pa.Table, info: SegmentInfo, cursor: LogCursor) -> pa.Table:
    position = cursor.get(info.writer)
    if info.seq_first > position:
        return table
    return table.filter(pc.field("seq") > position)


def _has_gap(table: pa.Table, cursor: LogCursor) -> bool:
    if table.num_rows == 0:
        return False
    spans = table.group_by("writer").aggregate([("seq", "min"), ("seq", "max"), ("seq", "count")])
    for writer, low, high, count in zip(
        spans.column("writer").to_pylist(),
        spans.column("seq_min").to_pylist(),
        spans.column("seq_max").to_pylist(),
        spans.column("seq_count").to_pylist(),
        strict=True,
    ):
        if low != cursor.get(writer) + 1 or high - low + 1 != count:
            return True
    return False


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _overlaps(info: SegmentInfo, lo: dt.datetime | None, hi: dt.datetime | None) -> bool:
    if lo is not None and info.last_ts is not None and info.last_ts < lo:
        return False
    return not (hi is not None and info.first_ts is not None and info.first_ts >= hi)
