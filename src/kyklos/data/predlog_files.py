"""Files of a log folder: write-ahead files, Parquet segments, sealing and crash recovery.

Layout of one log folder (``.kyklos/logs/predictions`` or ``.kyklos/logs/labels``)::

    wal-<pid>-<id>.kwal            a write-ahead file being appended by a live writer
                                   (format: :mod:`kyklos.data.predlog_frames`; ``.arrows``, a
                                   bare Arrow IPC stream, is the earlier format, still sealed)
    seg-<first ts>-<id>.parquet    a sealed, immutable segment (the WAL of the same <id>)
    .wal-<pid>-<id>.tmp            a WAL being created (renamed once locked and headed)
    .seg-<id>.parquet.tmp          a segment being written (renamed when complete)

A live writer holds an exclusive ``flock`` on its WAL until the file is sealed and removed; the
lock dies with the process (even on SIGKILL), so any writer that starts later can tell an
orphaned WAL from a live one and seal it. Sealing is idempotent: the segment of WAL ``<id>`` is
always named from ``<id>``, and a reader that sees both a segment and a WAL with the same
``<id>`` (the instant between rename and unlink) uses the segment.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kyklos.data.predlog_frames import decode_frames, read_header
from kyklos.data.predlog_schema import FORMAT_VERSION, TS_TYPE
from kyklos.errors import StoreError

__all__ = [
    "SegmentInfo",
    "fsync_dir",
    "list_files",
    "read_wal",
    "recover",
    "seal_wal",
    "segment_info",
    "wal_info",
]

WAL_SUFFIX = ".kwal"
_OLD_WAL_SUFFIX = ".arrows"  # before 0.2: an Arrow IPC stream
SEG_SUFFIX = ".parquet"
_TMP_GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class SegmentInfo:
    """One file of a log: a sealed segment, or the complete batches of a WAL (``sealed=False``)."""

    name: str
    path: Path
    rows: int
    first_ts: dt.datetime | None
    last_ts: dt.datetime | None
    writer: str
    seq_first: int
    seq_last: int
    sealed: bool

    @property
    def file_id(self) -> str:
        return file_id(self.name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "rows": self.rows,
            "first_ts": self.first_ts.isoformat() if self.first_ts else None,
            "last_ts": self.last_ts.isoformat() if self.last_ts else None,
            "writer": self.writer,
            "seq_first": self.seq_first,
            "seq_last": self.seq_last,
            "sealed": self.sealed,
        }


def file_id(name: str) -> str:
    """The ``<id>`` shared by a WAL and the segment it becomes."""
    stem = name.removesuffix(WAL_SUFFIX).removesuffix(_OLD_WAL_SUFFIX).removesuffix(SEG_SUFFIX)
    return stem.rsplit("-", 1)[-1]


def list_files(folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``({id: segment name}, {id: WAL name})`` of a log folder (missing folder: empty)."""
    try:
        names = [entry.name for entry in Path(folder).iterdir()]
    except FileNotFoundError:
        return {}, {}
    segments: dict[str, str] = {}
    wals: dict[str, str] = {}
    for name in names:
        if name.startswith("seg-") and name.endswith(SEG_SUFFIX):
            segments[file_id(name)] = name
        elif name.startswith("wal-") and name.endswith((WAL_SUFFIX, _OLD_WAL_SUFFIX)):
            wals[file_id(name)] = name
    return segments, wals


def read_wal(path: Path) -> pa.Table:
    """The complete record batches of a WAL; a torn last batch (a crash mid-write) is ignored.

    Raises FileNotFoundError when the file is gone (sealed meanwhile).
    """
    if path.name.endswith(WAL_SUFFIX):
        return _decoded.read(path)
    with pa.OSFile(str(path), "rb") as handle:
        data = handle.read_buffer()
    batches: list[pa.RecordBatch] = []
    try:
        reader = pa.ipc.open_stream(data)
    except (OSError, pa.ArrowInvalid):
        return _empty_wal_table(path)  # crashed before the header was complete
    schema = reader.schema
    try:
        for batch in reader:
            batches.append(batch)
    except (OSError, pa.ArrowInvalid):
        pass  # torn tail: never acknowledged
    return pa.Table.from_batches(batches, schema=schema)


@dataclass
class _Decoded:
    inode: int
    schema: pa.Schema
    end: int  # where the last complete frame ends
    batches: list[pa.RecordBatch]


class _DecodedWals:
    """The decoded part of each live WAL this process read, so a reader that polls a growing
    WAL (``/feedback``, ``monitor run``, the loop) decodes each frame once, not at every read."""

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._wals: OrderedDict[Path, _Decoded] = OrderedDict()

    def read(self, path: Path) -> pa.Table:
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            self.forget(path)
            raise
        with handle, self._lock:
            inode = os.fstat(handle.fileno()).st_ino
            known = self._wals.pop(path, None)
            if known is None or known.inode != inode:
                data = handle.read()
                header = read_header(data)
                if header is None:  # crashed before the header was complete
                    return _empty_wal_table(path)
                schema, at = header
                known = _Decoded(inode, schema, at, [])
            else:
                handle.seek(known.end)
                data, at = handle.read(), 0
            batches, end = decode_frames(known.schema, data, at)
            known.end += end - at
            known.batches += batches
            if len(known.batches) > 32:  # keep reads of a long-lived WAL cheap
                merged = pa.Table.from_batches(known.batches, schema=known.schema)
                known.batches = merged.combine_chunks().to_batches()
            # WALs sealed (by any process) since they were read hold memory for nothing
            for gone in [p for p in self._wals if not p.exists()]:
                del self._wals[gone]
            self._wals[path] = known
            while len(self._wals) > self._size:
                self._wals.popitem(last=False)
            return pa.Table.from_batches(known.batches, schema=known.schema)

    def forget(self, path: Path) -> None:
        with self._lock:
            self._wals.pop(path, None)


_decoded = _DecodedWals()


def _empty_wal_table(path: Path) -> pa.Table:
    return pa.table({"ts": pa.array([], type=TS_TYPE), "seq": pa.array([], type=pa.int64())})


def wal_info(path: Path, table: pa.Table) -> SegmentInfo:
    meta = table.schema.metadata or {}
    return _info(path, table, meta.get(b"kyklos.writer", b"").decode(), sealed=False)


def segment_info(path: Path) -> SegmentInfo:
    """Read a segment's footer (no data) into a :class:`SegmentInfo`."""
    meta: dict[bytes, bytes] = pq.read_metadata(path).metadata or {}

    def get(key: str) -> str:
        return meta.get(f"kyklos.{key}".encode(), b"").decode()

    return SegmentInfo(
        name=path.name,
        path=path,
        rows=int(get("rows") or 0),
        first_ts=_parse_ts(get("first_ts")),
        last_ts=_parse_ts(get("last_ts")),
        writer=get("writer"),
        seq_first=int(get("seq_first") or 0),
        seq_last=int(get("seq_last") or -1),
        sealed=True,
    )


def _info(path: Path, table: pa.Table, writer: str, *, sealed: bool) -> SegmentInfo:
    if table.num_rows == 0:
        return SegmentInfo(path.name, path, 0, None, None, writer, 0, -1, sealed)
    ts = pc.min_max(table.column("ts"))
    seq = pc.min_max(table.column("seq"))
    return SegmentInfo(
        name=path.name,
        path=path,
        rows=table.num_rows,
        first_ts=ts["min"].as_py(),
        last_ts=ts["max"].as_py(),
        writer=writer,
        seq_first=seq["min"].as_py(),
        seq_last=seq["max"].as_py(),
        sealed=sealed,
    )


def _parse_ts(text: str) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def seal_wal(path: Path) -> Path | None:
    """Rewrite a WAL as a Parquet segment (temp + fsync + rename), then remove the WAL.

    The caller holds the WAL's lock. Returns the segment, or None when the WAL held no complete
    batch. Idempotent: if the segment of this WAL already exists, only the WAL is removed.
    """
    folder = path.parent
    wal_id = file_id(path.name)
    table = read_wal(path)
    target: Path | None = None
    if table.num_rows:
        existing = list_files(folder)[0].get(wal_id)
        if existing is not None:
            target = folder / existing
        else:
            info = wal_info(path, table)
            assert info.first_ts is not None and info.last_ts is not None
            stamp = info.first_ts.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
            target = folder / f"seg-{stamp}-{wal_id}{SEG_SUFFIX}"
            meta = dict(table.schema.metadata or {})
            meta.update(
                {
                    b"kyklos.format": FORMAT_VERSION.encode(),
                    b"kyklos.rows": str(info.rows).encode(),
                    b"kyklos.first_ts": info.first_ts.isoformat().encode(),
                    b"kyklos.last_ts": info.last_ts.isoformat().encode(),
                    b"kyklos.seq_first": str(info.seq_first).encode(),
                    b"kyklos.seq_last": str(info.seq_last).encode(),
                    b"kyklos.wal": path.name.encode(),
                }
            )
            tmp = folder / f".seg-{wal_id}{SEG_SUFFIX}.tmp"
            try:
                pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")
                with tmp.open("rb+") as handle:
                    os.fsync(handle.fileno())
                tmp.replace(target)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise StoreError(
                    f"cannot seal the log file {path} into {target.name}: {exc}. "
                    "Hint: the WAL is kept and sealed again when a writer next starts"
                ) from exc
            fsync_dir(folder)
    path.unlink(missing_ok=True)
    _decoded.forget(path)
    fsync_dir(folder)
    return target


def recover(folder: Path) -> list[Path]:
    """Seal every orphaned WAL of ``folder`` (its writer died); return the segments written.

    A WAL whose lock is held belongs to a live writer (maybe in another process) and is left.
    """
    written: list[Path] = []
    try:
        names = sorted(entry.name for entry in Path(folder).iterdir())
    except FileNotFoundError:
        return written
    for name in names:
        is_tmp = name.startswith(".wal-") and name.endswith(".tmp")
        is_wal = name.startswith("wal-") and name.endswith((WAL_SUFFIX, _OLD_WAL_SUFFIX))
        if not (is_tmp or is_wal):
            continue
        path = folder / name
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer owns it
            try:
                if path.stat().st_ino != os.fstat(fd).st_ino:
                    continue  # sealed and replaced meanwhile
            except FileNotFoundError:
                continue  # sealed meanwhile by someone else
            if is_tmp:  # a WAL whose creation was cut short (young ones may be in the making)
                if time.time() - os.fstat(fd).st_mtime > _TMP_GRACE_SECONDS:
                    path.unlink(missing_ok=True)
                continue
            segment = seal_wal(path)
            if segment is not None:
                written.append(segment)
        finally:
            os.close(fd)
    return written
