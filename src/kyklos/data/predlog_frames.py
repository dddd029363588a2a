"""The write-ahead file format of the logs (``wal-<pid>-<id>.kwal``): framed, checksummed groups.

A WAL holds one group commit per *frame*, so a commit is one ``write`` of bytes that are cheap
to make. Building an Arrow record batch costs about 1 µs a column even for one row (~60–90 µs
for a 22-feature model, most of a one-row request's logging), so a group of one-row appends is
written as its rows (``marshal`` of plain Python scalars: ~2 µs a row) and becomes Arrow only
when the WAL is read or sealed; a group holding a multi-row batch is written as an Arrow IPC
record-batch message, as before. Layout::

    b"KYKLOS-WAL\\x01"  u32 n  <n bytes: the Arrow schema (IPC), with the log's metadata>
    frame*:  u8 kind  u32 n  u32 crc32(payload)  <n bytes: payload>
             kind b"R": marshal((first_seq, ((value, ...), ...)))  one tuple per row, schema
                        columns in order without ``writer``/``seq`` (``ts`` in microseconds)
             kind b"A": an Arrow IPC record-batch message (``writer`` and ``seq`` included)

A frame that is incomplete or fails its checksum is a torn tail (the process died in the middle
of a write that was never acknowledged): it and anything after it are ignored. ``marshal`` reads
only plain values (no code runs), and the checksum keeps it from reading a torn frame. WALs of
the earlier format (``.arrows``: a bare Arrow IPC stream) are still read and sealed.
"""

from __future__ import annotations

import marshal
import struct
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from kyklos.data.predlog_schema import schema_of

__all__ = [
    "MAGIC",
    "decode_frames",
    "decode_wal",
    "encode_arrow",
    "encode_header",
    "encode_rows",
    "frame_rows",
    "iter_frames",
    "read_header",
]

MAGIC = b"KYKLOS-WAL\x01"
_LENGTH = struct.Struct("<I")
_FRAME = struct.Struct("<cII")  # kind, payload length, crc32 of the payload
ROWS = b"R"
ARROW = b"A"


def encode_header(schema: pa.Schema) -> bytes:
    """The first bytes of a WAL: magic, then the Arrow schema (with its metadata)."""
    body: bytes = schema.serialize().to_pybytes()
    return MAGIC + _LENGTH.pack(len(body)) + body


def encode_rows(first_seq: int, rows: Sequence[tuple[Any, ...]]) -> bytes | None:
    """A frame of one-row values (plain Python scalars); None when a value is not plain."""
    try:
        payload = marshal.dumps((first_seq, tuple(rows)))
    except ValueError:  # e.g. a str subclass such as numpy.str_: the Arrow frame takes it
        return None
    return _FRAME.pack(ROWS, len(payload), zlib.crc32(payload)) + payload


def encode_arrow(batch: pa.RecordBatch) -> bytes:
    """A frame of one Arrow record batch (its IPC message)."""
    payload: bytes = batch.serialize().to_pybytes()
    return _FRAME.pack(ARROW, len(payload), zlib.crc32(payload)) + payload


def decode_wal(data: bytes) -> pa.Table | None:
    """The complete frames of a WAL as one table; None when its header is incomplete."""
    header = read_header(data)
    if header is None:
        return None
    schema, at = header
    batches, _ = decode_frames(schema, data, at)
    return pa.Table.from_batches(batches, schema=schema)


#: Rows of consecutive row frames that become one record batch. Building a batch holds the GIL
#: in a few long C calls (``zip`` of the rows, one numpy matrix, one ``pa.array`` per column):
#: for a whole 100k-row WAL sealed in a background thread they kept the GIL from the server's
#: event loop for up to 146 ms at a time (18 ms in batches of 4,096 rows; measured in process,
#: a thread sleeping 0.5 ms in a loop beside a seal). At 64 connections, a 10 s run that sealed
#: had a p99 of 470 ms before, 42-118 ms after (13-15 ms for runs that did not seal).
_RUN_ROWS = 4096


def decode_frames(schema: pa.Schema, data: bytes, at: int) -> tuple[list[pa.RecordBatch], int]:
    """The record batches of the complete frames from offset ``at``, and where they end.

    Consecutive row frames become one record batch (of at most ``_RUN_ROWS`` rows). A reader that keeps the end offset can
    decode only what was appended since (the file only grows while its writer lives).
    """
    writer = (schema.metadata or {}).get(b"kyklos.writer", b"").decode()
    log = schema_of(schema)
    batches: list[pa.RecordBatch] = []
    rows: list[tuple[Any, ...]] = []  # a run of row frames with consecutive seq
    first = 0

    def flush() -> None:
        if rows:
            batches.append(log.build_rows(rows, writer=writer, first_seq=first, schema=schema))
            rows.clear()

    for kind, payload in iter_frames(data, at):
        at += _FRAME.size + len(payload)
        if kind == ROWS:
            first_seq, frame_rows = marshal.loads(payload)
            if first_seq != first + len(rows):
                flush()
            if not rows:
                first = first_seq
            rows.extend(frame_rows)
            if len(rows) >= _RUN_ROWS:
                flush()
            continue
        flush()
        batches.append(pa.ipc.read_record_batch(pa.py_buffer(payload), schema))
    flush()
    return batches, at


def read_header(data: bytes) -> tuple[pa.Schema, int] | None:
    """The schema of a WAL and where its first frame starts; None when the header is torn."""
    start = len(MAGIC) + _LENGTH.size
    if not data.startswith(MAGIC) or len(data) < start:
        return None
    (size,) = _LENGTH.unpack_from(data, len(MAGIC))
    if len(data) < start + size:
        return None
    try:
        schema = pa.ipc.read_schema(pa.py_buffer(data[start : start + size]))
    except (OSError, pa.ArrowInvalid):
        return None
    return schema, start + size


def iter_frames(data: bytes, at: int) -> Iterator[tuple[bytes, bytes]]:
    """``(kind, payload)`` of each complete frame from offset ``at``, up to a torn tail."""
    end = len(data)
    while at + _FRAME.size <= end:
        kind, size, crc = _FRAME.unpack_from(data, at)
        start = at + _FRAME.size
        payload = data[start : start + size]
        if len(payload) < size or zlib.crc32(payload) != crc or kind not in (ROWS, ARROW):
            return  # torn tail: never acknowledged
        yield kind, payload
        at = start + size


def frame_rows(kind: bytes, payload: bytes, schema: pa.Schema) -> int:
    """How many rows a frame holds."""
    if kind == ROWS:
        return len(marshal.loads(payload)[1])
    return int(pa.ipc.read_record_batch(pa.py_buffer(payload), schema).num_rows)
