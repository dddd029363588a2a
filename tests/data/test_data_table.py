"""Reading tables, canonical form and content digests: the same data is the same digest."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kyklos.data import DigestCache, canonicalize, content_digest, file_digest, read_table
from kyklos.errors import DataError

# pyarrow 25 converting a tz-aware pandas 3.1 column (DataFrame.to_parquet, Table.from_pandas)
pytestmark = pytest.mark.filterwarnings(
    "ignore:Series.values returning an ndarray that drops timezone:pandas.errors.Pandas4Warning"
)


def _rich_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The flights sample plus the column kinds a CSV round trip must survive."""
    out = frame.head(3000).copy()
    out["is_late"] = out["late"] == 1
    out["day_of"] = out["time_hour"].dt.date
    out["local_time"] = out["time_hour"].dt.tz_convert("America/New_York")
    out["naive_time"] = out["time_hour"].dt.tz_localize(None)
    out.loc[out.index[::7], "carrier"] = None  # missing strings
    out["tail"] = out["dest"].astype("category")  # dictionary-encoded in Parquet
    return out


def test_csv_and_parquet_of_the_same_frame_have_the_same_digest(
    tmp_path: Path, flights_small_frame: pd.DataFrame
) -> None:
    frame = _rich_frame(flights_small_frame)
    assert frame["temp"].isna().any() and frame["wind_gust"].isna().any()
    frame.to_csv(tmp_path / "f.csv", index=False)
    frame.to_parquet(tmp_path / "f.parquet")
    from_csv = read_table(str(tmp_path / "f.csv"))
    from_parquet = read_table(str(tmp_path / "f.parquet"))
    assert from_csv.schema != from_parquet.schema  # the readers really differ ...
    a, b = canonicalize(from_csv), canonicalize(from_parquet)
    assert a.schema == b.schema  # ... and the canonical form does not
    assert a.equals(b)
    assert content_digest(from_csv) == content_digest(from_parquet)
    assert str(a.schema.field("local_time").type) == "timestamp[us, tz=UTC]"
    assert str(a.schema.field("naive_time").type) == "timestamp[us]"
    assert a.column("carrier").null_count == len(frame.index[::7])


def test_float_column_printed_without_decimals_is_the_same_number(tmp_path: Path) -> None:
    table = pa.table({"wind_dir": [260.0, None, 250.0], "x": [0.5, 1.5, 2.0]})
    pq.write_table(table, tmp_path / "t.parquet")
    (tmp_path / "t.csv").write_text("wind_dir,x\n260,0.5\n,1.5\n250,2.0\n")
    from_csv = read_table(str(tmp_path / "t.csv"))
    assert from_csv.schema.field("wind_dir").type == pa.int64()
    assert content_digest(from_csv) == content_digest(read_table(str(tmp_path / "t.parquet")))


def test_digest_ignores_chunking_column_order_and_metadata(flights_table: pa.Table) -> None:
    table = flights_table.slice(0, 4000)
    reordered = table.select(list(reversed(table.column_names))).replace_schema_metadata(None)
    chunked = pa.concat_tables([table.slice(0, 1234), table.slice(1234)])
    assert chunked.column(0).num_chunks == 2
    digest = content_digest(table)
    assert content_digest(reordered) == digest
    assert content_digest(chunked) == digest


@pytest.mark.parametrize(
    "change",
    ["value", "null", "row_order", "rename", "string"],
    ids=["one-value", "one-null", "row-order", "column-name", "one-string"],
)
def test_digest_changes_with_the_content(flights_table: pa.Table, change: str) -> None:
    frame = flights_table.slice(0, 500).to_pandas()
    base = content_digest(pa.Table.from_pandas(frame, preserve_index=False))
    other = frame.copy()
    if change == "value":
        other.loc[10, "temp"] += 0.01
    elif change == "null":
        other.loc[10, "temp"] = np.nan
    elif change == "row_order":
        other = other.iloc[::-1].reset_index(drop=True)
    elif change == "rename":
        other = other.rename(columns={"temp": "temperature"})
    else:
        other.loc[10, "carrier"] = "ZZ"
    assert content_digest(pa.Table.from_pandas(other, preserve_index=False)) != base


def test_integers_beyond_float_precision_are_not_confused() -> None:
    big = 2**53
    assert content_digest(pa.table({"a": [big + 1]})) != content_digest(pa.table({"a": [big]}))
    assert content_digest(pa.table({"a": [big + 1]})) != content_digest(
        pa.table({"a": [float(big + 1)]})
    )


def test_glob_and_uri_reading(tmp_path: Path, flights_table: pa.Table) -> None:
    import fsspec

    part = flights_table.slice(0, 200)
    pq.write_table(part.slice(0, 100), tmp_path / "a.parquet")
    pq.write_table(part.slice(100), tmp_path / "b.parquet")
    assert content_digest(read_table(str(tmp_path / "*.parquet"))) == content_digest(part)
    with fsspec.open("memory://kyklos-test/part.parquet", "wb") as fh:
        pq.write_table(part, fh)
    assert content_digest(read_table("memory://kyklos-test/part.parquet")) == content_digest(part)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("short.csv", "a,b,c\n1,2,3\n4,5\n6,7,8\n", r"malformed CSV .*short\.csv at line 3: Expected 3 columns, got 2"),
        ("long.csv", "a,b\n1,2\n3,4,5\n", r"malformed CSV .*long\.csv at line 3: Expected 2 columns, got 3"),
        ("empty.csv", "", r"empty\.csv: the file is empty"),
        ("header.csv", "a,b\n", r"header\.csv has no rows"),
        ("fake.parquet", "a,b\n1,2\n", r"cannot read .*fake\.parquet as Parquet"),
        ("table.xlsx", "x", r"cannot tell the format of .*table\.xlsx"),
    ],
    ids=["too-few-fields", "too-many-fields", "empty", "header-only", "not-parquet", "unknown-suffix"],
)  # fmt: skip
def test_bad_input_is_one_clear_line_naming_the_file(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=expected) as info:
        read_table(str(path))
    assert "\n" not in str(info.value)


def test_missing_file_and_unsupported_column_type(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere\.csv does not exist"):
        read_table(str(tmp_path / "nowhere.csv"))
    with pytest.raises(DataError, match=r"column 'tags' has type list<item: int64>"):
        canonicalize(pa.table({"tags": [[1, 2], [3]]}))
    with pytest.raises(DataError, match=r"duplicate column names \['a'\]"):
        canonicalize(pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"]))


def test_file_digest_uses_the_stat_cache(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    cache = tmp_path / "cache"
    first = file_digest(path, cache)
    assert first == file_digest(path)  # the uncached hash agrees
    stat = path.stat()
    # same size, same inode, mtime restored: the cache answers without reading the bytes
    with path.open("r+") as fh:
        fh.write("x")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_digest(path, cache) == first
    # touching changes the stat: the file is hashed again and its true digest comes back
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert file_digest(path, cache) != first
    path.write_text("a,b\n1,2\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))
    assert file_digest(path, cache) == first


def test_damaged_digest_cache_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a\n1\n")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / DigestCache.FILE).write_text("{not json")
    assert file_digest(path, tmp_path / "cache") == file_digest(path)


def test_column_without_values_is_the_same_from_csv_and_parquet(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "gust": [np.nan] * 3, "note": [None] * 3})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    from_csv, from_parquet = (
        read_table(str(tmp_path / "t.csv")),
        read_table(str(tmp_path / "t.parquet")),
    )
    assert canonicalize(from_parquet).schema.field("gust").type == pa.null()
    assert content_digest(from_csv) == content_digest(from_parquet)
