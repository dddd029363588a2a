"""Reading tables, their canonical form and their content digest.

A dataset version is addressed by what the table *contains*, not by the bytes of the file it came
from: the same rows read from CSV or from Parquet, renamed or touched, have the same digest.

* :func:`read_table` reads CSV (also ``.tsv`` and compressed ``.csv.gz``) or Parquet from a path,
  a glob, a folder of Parquet files or an fsspec URI, and turns every failure into one
  :class:`~kyklos.errors.DataError` line naming the file (and the line of a malformed CSV row).
* :func:`canonicalize` maps every column to one canonical Arrow type and sorts the columns by
  name, so that the readers' differences (``int32`` vs ``int64``, ``string`` vs ``large_string``,
  ``timestamp[s]`` vs ``timestamp[us]``, NaN vs null, empty string vs null) disappear.
* :func:`content_digest` hashes the canonical column names, types, validity and values. Numbers
  are hashed by value, so a float column of integral values equals the integer column a CSV
  writer turns it into (``260.0`` printed as ``260``); the version keeps the types of the table
  first added.
* :func:`file_digest` hashes a file's bytes with a stat cache (path, size, mtime, inode), so an
  unchanged file is never read twice and a touched file costs one rehash (the way DVC does it).

Canonical types::

    any integer (and unsigned)        -> int64
    any float, decimal                -> float64   (NaN becomes null)
    string, large_string, dictionary  -> large_string   (empty string becomes null: a CSV cannot
                                                         tell them apart)
    bool                              -> bool
    timestamp[*, tz]                  -> timestamp[us, tz=UTC] (tz-aware) / timestamp[us] (naive)
    date32, date64                    -> date32
    a column with no value at all     -> null      (a CSV cannot tell its type)
"""

from __future__ import annotations

import glob as globlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kyklos.errors import DataError
from kyklos.store import sha256_file

__all__ = [
    "DIGEST_FORMAT",
    "FORMATS",
    "DigestCache",
    "canonicalize",
    "content_digest",
    "detect_format",
    "file_digest",
    "frame_to_arrow",
    "read_table",
]

DIGEST_FORMAT = b"kyklos.table-digest/1"
_EXACT = 2**53  # integers up to this magnitude are exact in float64
FORMATS = ("csv", "tsv", "parquet")
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".parq": "parquet",
}
_COMPRESSION = (".gz", ".bz2", ".zst", ".lz4")
_GLOB = re.compile(r"[*?\[]")
_ROW = re.compile(r"Row #(\d+)")


# -- reading ----------------------------------------------------------------------------------
def detect_format(path_or_uri: str) -> str:
    """``csv``, ``tsv`` or ``parquet`` from the file name (a folder is Parquet)."""
    name = path_or_uri.rstrip("/").lower()
    for comp in _COMPRESSION:
        name = name.removesuffix(comp)
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    if "://" not in path_or_uri and Path(path_or_uri).is_dir():
        return "parquet"
    raise DataError(
        f"cannot tell the format of {path_or_uri}: expected a name ending in "
        f"{', '.join(_SUFFIXES)} (optionally compressed: {', '.join(_COMPRESSION)}). "
        "Hint: rename the file or pass format='csv' / 'parquet'"
    )


def read_table(path_or_uri: str, *, format: str | None = None) -> pa.Table:
    """Read a CSV or Parquet table from a path, glob, Parquet folder or fsspec URI.

    Raises :class:`DataError` naming the file when it is missing, unreadable, malformed or
    empty. A glob reads every match (sorted) and concatenates their canonical forms.
    """
    source = str(path_or_uri)
    if format is not None and format not in FORMATS:
        raise DataError(f"unknown table format {format!r}; choose one of {', '.join(FORMATS)}")
    if "://" not in source and _GLOB.search(source):
        matches = sorted(globlib.glob(source))  # noqa: PTH207 (absolute patterns)
        if not matches:
            raise DataError(f"no file matches {source}. Hint: check the pattern and the folder")
        parts = [canonicalize(read_table(m, format=format)) for m in matches]
        try:
            return pa.concat_tables(parts, promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(
                f"the files matching {source} do not share one schema: {_one_line(exc)}"
            ) from exc
    fmt = format or detect_format(source)
    if "://" not in source or source.startswith("file://"):
        local = Path(source.removeprefix("file://"))
        if not local.exists():
            raise DataError(
                f"{source} does not exist. Hint: check the path (relative to {Path.cwd()})"
            )
    table = _read_csv(source, fmt) if fmt in {"csv", "tsv"} else _read_parquet(source)
    if table.num_columns == 0:
        raise DataError(f"{source} has no columns")
    if table.num_rows == 0:
        raise DataError(f"{source} has no rows (only a header?); a dataset version needs data")
    return table


@contextmanager
def _open(source: str) -> Iterator[Any]:
    """A path for local files (pyarrow reads those fastest) or an open fsspec file."""
    if "://" not in source or source.startswith("file://"):
        yield source.removeprefix("file://")
        return
    import fsspec

    try:
        with fsspec.open(source, "rb", compression="infer") as fh:
            yield fh
    except (OSError, ValueError, ImportError) as exc:
        raise DataError(f"cannot open {source}: {_one_line(exc)}") from exc


def _read_parquet(source: str) -> pa.Table:
    import pyarrow.parquet as pq

    try:
        with _open(source) as fh:
            return pq.read_table(fh)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError) as exc:
        raise DataError(
            f"cannot read {source} as Parquet: {_one_line(exc)}. "
            "Hint: is it really a Parquet file? (CSV files need a .csv name or format='csv')"
        ) from exc


def _read_csv(source: str, fmt: str) -> pa.Table:
    import pyarrow.csv as pcsv

    delimiter = "\t" if fmt == "tsv" else ","
    try:
        with _open(source) as fh:
            return pcsv.read_csv(
                fh,
                parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                convert_options=pcsv.ConvertOptions(strings_can_be_null=True),
            )
    except pa.ArrowInvalid as exc:
        raise DataError(_csv_problem(source, delimiter, exc)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {source}: {_one_line(exc)}") from exc


def _csv_problem(source: str, delimiter: str, exc: Exception) -> str:
    """One line naming the file, the line (found by a single-threaded re-read) and the problem."""
    import pyarrow.csv as pcsv

    message = _one_line(exc).removeprefix("CSV parse error: ")
    if "Empty CSV file" in message:
        return f"cannot read {source}: the file is empty; a dataset version needs a header and rows"
    line = None
    match = _ROW.search(message)
    if match is None:
        try:
            with _open(source) as fh:
                pcsv.read_csv(
                    fh,
                    read_options=pcsv.ReadOptions(use_threads=False),
                    parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                )
        except pa.ArrowInvalid as again:
            match = _ROW.search(str(again))
            message = _one_line(again).removeprefix("CSV parse error: ")
    if match is not None:
        line = int(match.group(1))
        message = _ROW.sub("", message).lstrip(": ")
    where = f" at line {line}" if line is not None else ""
    if len(message) > 160:
        message = message[:157] + "..."
    if "UTF8" in message:
        hint = "save the file as UTF-8"
    elif "columns" in message:
        hint = (
            "every row needs as many fields as the header; quote fields that contain the delimiter"
        )
    else:
        hint = "check the row against the header"
    return f"malformed CSV {source}{where}: {message}. Hint: {hint}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# -- canonical form ---------------------------------------------------------------------------
def canonicalize(table: pa.Table) -> pa.Table:
    """The canonical form of ``table``: canonical column types, columns sorted by name, no metadata.

    See the module docstring for the type mapping. Raises :class:`DataError` for duplicate
    column names and for column types kyklos cannot version (lists, structs, binary, ...).
    """
    names = table.column_names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"the table has duplicate column names {dupes}; rename them")
    fields = []
    columns = []
    for name in sorted(names):
        column = _canonical_column(name, table.column(name))
        fields.append(pa.field(name, column.type, nullable=True))
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _canonical_column(name: str, column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    try:
        if pa.types.is_dictionary(kind):
            column = column.cast(kind.value_type)
            kind = column.type
        if pa.types.is_null(kind):
            return column
        if pa.types.is_integer(kind):
            column = column.cast(pa.int64())
        elif pa.types.is_floating(kind) or pa.types.is_decimal(kind):
            column = column.cast(pa.float64())
            if pc.any(pc.is_nan(column)).as_py():
                column = pc.if_else(pc.is_nan(column), pa.scalar(None, pa.float64()), column)
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or _is_string_view(kind):
            column = column.cast(pa.large_string())
            empty = pc.equal(column, "")
            if pc.any(empty).as_py():
                column = pc.if_else(empty, pa.scalar(None, pa.large_string()), column)
        elif pa.types.is_boolean(kind):
            pass
        elif pa.types.is_timestamp(kind):
            target = pa.timestamp("us", tz="UTC" if kind.tz else None)
            column = column.cast(target, safe=False)
        elif pa.types.is_date(kind):
            column = column.cast(pa.date32())
        elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            raise DataError(
                f"column {name!r} holds bytes that are not UTF-8 text. "
                "Hint: save the file as UTF-8, or decode the column before adding the table"
            )
        else:
            raise DataError(
                f"column {name!r} has type {kind}, which kyklos cannot version; supported: "
                "integers, floats, decimals, strings, categories, booleans, timestamps, dates. "
                "Hint: convert or drop the column before adding the table"
            )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"column {name!r} ({kind}) cannot be converted: {_one_line(exc)}") from exc
    if len(column) and column.null_count == len(column):
        return pa.chunked_array([pa.nulls(len(column))], type=pa.null())
    return column


def _is_string_view(kind: pa.DataType) -> bool:
    check = getattr(pa.types, "is_string_view", None)
    return bool(check(kind)) if check is not None else False


# -- digests ----------------------------------------------------------------------------------
def content_digest(table: pa.Table) -> str:
    """Hex sha256 of the canonical content: column names, types, validity and values.

    Independent of the file format, of chunking and of column order; the row order counts.
    """
    canonical = table if _is_canonical(table) else canonicalize(table)
    h = hashlib.sha256()
    h.update(DIGEST_FORMAT)
    h.update(np.int64(canonical.num_rows).tobytes())
    for field, column in zip(canonical.schema, canonical.columns, strict=True):
        _update_bytes(h, field.name.encode())
        _hash_array(h, field.type, _one_chunk(column))
    return h.hexdigest()


def _is_canonical(table: pa.Table) -> bool:
    names = table.column_names
    if names != sorted(names) or table.schema.metadata:
        return False
    allowed = (pa.int64(), pa.float64(), pa.large_string(), pa.bool_(), pa.date32(), pa.null())
    return all(
        f.type in allowed
        or (pa.types.is_timestamp(f.type) and f.type.unit == "us" and f.type.tz in (None, "UTC"))
        for f in table.schema
    )


def _update_bytes(h: Any, data: bytes) -> None:
    h.update(np.int64(len(data)).tobytes())
    h.update(data)


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    if column.num_chunks == 1:
        return column.chunk(0)
    if column.num_chunks == 0:
        return pa.array([], type=column.type)
    return column.combine_chunks()


def _hash_array(h: Any, kind: pa.DataType, array: pa.Array) -> None:
    """Hash one canonical column: its type tag, validity bitmap and values.

    Numbers are hashed by value: an integer column and a float column holding the same
    integral values (as when a CSV writer prints 260.0 as 260) hash alike.
    """
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        filled = array.fill_null(pa.scalar(0, type=kind)) if array.null_count else array
        values = np.asarray(filled.to_numpy(zero_copy_only=False))
        if pa.types.is_floating(kind):
            integral = bool(np.all((np.trunc(values) == values) & (np.abs(values) <= _EXACT)))
            tag, payload = ("number", values.astype("<i8")) if integral else ("float64", values)
        else:
            small = bool(np.all(np.abs(values) <= _EXACT))
            tag, payload = ("number" if small else "int64"), values
        _update_bytes(h, tag.encode())
        _hash_validity(h, array)
        h.update(np.ascontiguousarray(payload).astype(payload.dtype.newbyteorder("<")).tobytes())
        return
    _update_bytes(h, str(kind).encode())
    if pa.types.is_null(kind):
        return
    _hash_validity(h, array)
    if pa.types.is_large_string(kind):
        filled = array.fill_null("") if array.null_count else array
        buffers = filled.buffers()
        offsets = np.frombuffer(buffers[1], dtype=np.int64)[
            filled.offset : filled.offset + len(filled) + 1
        ]
        h.update(np.diff(offsets).astype("<i8").tobytes())
        if buffers[2] is not None and len(offsets) and offsets[-1] > offsets[0]:
            h.update(memoryview(buffers[2])[int(offsets[0]) : int(offsets[-1])])
        return
    if pa.types.is_boolean(kind):
        filled = array.fill_null(False) if array.null_count else array
        h.update(np.packbits(filled.to_numpy(zero_copy_only=False)).tobytes())
        return
    filled = array.fill_null(pa.scalar(0, type=kind)) if array.null_count else array
    values = filled.to_numpy(zero_copy_only=False)
    if values.dtype.kind in "mM":
        values = values.view(np.int64)
    h.update(np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes())


def _hash_validity(h: Any, array: pa.Array) -> None:
    if array.null_count == 0:
        h.update(b"\x00")
        return
    h.update(b"\x01")
    h.update(np.packbits(array.is_valid().to_numpy(zero_copy_only=False)).tobytes())


# -- file digests with a stat cache ----------------------------------------------------------
class DigestCache:
    """A JSON file under ``cache_dir`` remembering file digests by stat, and table digests by file.

    ``file_digest`` rehashes a file only when its (size, mtime_ns, inode) changed; ``content_of``
    maps a file digest to the content digest of the table read from it, so re-adding an
    unchanged (or merely touched) file skips parsing. A damaged cache is ignored and rewritten.
    """

    FILE = "digests.json"

    def __init__(self, cache_dir: str | Path) -> None:
        self.path = Path(cache_dir) / self.FILE
        self._data: dict[str, dict[str, Any]] | None = None

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._data is None:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                ok = isinstance(raw, dict) and all(
                    isinstance(raw.get(k), dict) for k in ("stat", "content")
                )
                self._data = raw if ok else None
            except (OSError, ValueError):
                self._data = None
            if self._data is None:
                self._data = {"stat": {}, "content": {}}
        return self._data

    def _save(self) -> None:
        data = self._load()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".tmp-{os.getpid()}-{self.FILE}")
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        tmp.replace(self.path)

    def file_digest(self, path: str | Path) -> str:
        """Hex sha256 of the file's bytes; read only when its stat changed since last time."""
        resolved = Path(path).resolve()
        try:
            st = resolved.stat()
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror}") from exc
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        entry = self._load()["stat"].get(str(resolved))
        if isinstance(entry, dict) and entry.get("stat") == stamp:
            return str(entry["sha256"])
        digest = sha256_file(resolved)
        self._load()["stat"][str(resolved)] = {"stat": stamp, "sha256": digest}
        self._save()
        return digest

    def content_of(self, file_sha256: str) -> str | None:
        """The content digest last computed for a file with these bytes, if any."""
        value = self._load()["content"].get(file_sha256)
        return str(value) if value is not None else None

    def remember(self, file_sha256: str, content: str) -> None:
        self._load()["content"][file_sha256] = content
        self._save()


def file_digest(path: str | Path, cache_dir: str | Path | None = None) -> str:
    """Hex sha256 of a local file; with ``cache_dir`` an unchanged file is not read again."""
    if cache_dir is None:
        try:
            return sha256_file(path)
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    return DigestCache(cache_dir).file_digest(path)


def frame_to_arrow(frame: Any) -> pa.Table:
    """A pandas DataFrame as an Arrow table, time-zone-aware columns included (converted
    through UTC nanoseconds: pandas 3 deprecates the path ``Table.from_pandas`` takes)."""
    import pandas as pd
    import pyarrow as pa

    columns: dict[str, Any] = {}
    for name in frame.columns:
        series = frame[name]
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            utc = series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
            columns[str(name)] = pa.array(utc).cast(pa.timestamp("us", tz="UTC"))
        else:
            columns[str(name)] = pa.Array.from_pandas(series)
    return pa.table(columns)
