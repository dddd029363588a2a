"""Dataset versions: content-addressed, idempotent, immutable, found by id, prefix or name."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kyklos.data import DatasetStore, content_digest, dataset_key
from kyklos.errors import DataError, NotFoundError, StoreError
from kyklos.store import ArtifactStore, open_db

pytestmark = pytest.mark.filterwarnings(
    "ignore:Series.values returning an ndarray that drops timezone:pandas.errors.Pandas4Warning"
)


def test_add_stores_canonical_parquet_schema_and_profile(
    store: DatasetStore, tmp_path: Path, january: pa.Table
) -> None:
    pq.write_table(january, tmp_path / "jan.parquet")
    version, created = store.add(str(tmp_path / "jan.parquet"), name="flights", note="first")
    assert created
    assert version.id == "ds-" + version.digest[:12]
    assert version.digest == content_digest(january)
    assert (version.n_rows, version.n_columns) == (5000, 22)
    assert version.schema["carrier"].kind == "categorical"
    assert version.profile["temp"].count == 5000 - january.column("temp").null_count
    assert store.artifacts.exists(dataset_key(version.digest))
    assert version.size_bytes == Path(version.storage_uri).stat().st_size
    loaded = store.load(version.id, verify=True)
    assert loaded.column_names == sorted(january.column_names)
    assert loaded.schema.field("month").type == pa.int64()
    assert store.load_frame(version.id).shape == (5000, 22)
    assert version.to_dict()["profile"]["format"] == "kyklos.profile/1"


def test_add_is_idempotent_across_formats_renames_and_touches(
    store: DatasetStore, tmp_path: Path, flights_small_frame: pd.DataFrame
) -> None:
    frame = flights_small_frame.head(2000)
    frame.to_parquet(tmp_path / "a.parquet")
    first, created = store.add(str(tmp_path / "a.parquet"), name="flights")
    assert created
    # the same content as CSV, under another name, touched: the same version, nothing new stored
    frame.to_csv(tmp_path / "b.csv", index=False)
    again, created = store.add(str(tmp_path / "b.csv"), name="flights")
    assert (again.id, created) == (first.id, False)
    shutil.move(tmp_path / "b.csv", tmp_path / "renamed.csv")
    os.utime(tmp_path / "renamed.csv")
    again, created = store.add(str(tmp_path / "renamed.csv"), name="flights")
    assert (again.id, created) == (first.id, False)
    assert again.source == first.source  # immutable: the first add's record is kept
    assert [v.id for v in store.list()] == [first.id]
    assert list(store.artifacts.list("datasets")) == [dataset_key(first.digest)]


def test_unchanged_file_is_not_parsed_again(store: DatasetStore, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,x\n2,y\n")
    first, _ = store.add(str(path), name="t")
    stat = path.stat()
    # garble the bytes but keep size, inode and mtime: the stat cache answers, no parse happens
    path.write_text("a,b\n1,x\n2,y,\n"[: stat.st_size])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again, created = store.add(str(path), name="t")
    assert (again.id, created) == (first.id, False)
    # once the stat changes the file is read again, and the garbled row is reported
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(DataError, match=r"malformed CSV .*t\.csv at line 3"):
        store.add(str(path), name="t")


def test_get_by_id_prefix_latest_and_name(
    store: DatasetStore, january: pa.Table, july: pa.Table
) -> None:
    a, _ = store.add("jan", name="flights", table=january)
    b, _ = store.add("jul", name="flights", table=july, parents=[a.id[:7]])
    c, _ = store.add("other", name="weather", table=january.select(["temp", "humid"]))
    assert store.get(a.id) == a
    assert store.get(a.id[:6]) == a
    assert store.get(a.id[3:9].upper()) == a  # without "ds-", any case
    assert store.get("latest") == c
    assert store.get("flights@latest") == b
    assert store.get("flights@previous") == a
    assert store.latest("flights") == b
    assert store.previous("flights", b.id) == a
    assert store.previous("flights", a.id) is None
    assert b.parents == (a.id,)
    assert store.children(a.id) == [b.id]
    assert [v.id for v in store.list("flights")] == [b.id, a.id]
    assert [v.id for v in store.list()] == [c.id, b.id, a.id]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("ds-000000000000", r"no dataset version 'ds-000000000000'"),
        ("flihgts@latest", r"dataset 'flihgts' has no version.*Did you mean flights"),
        ("flights@previous", r"dataset 'flights' has only one version for @previous"),
        ("flights@best", r"unknown dataset selector 'best'"),
        ("nonsense", r"no dataset version 'nonsense'"),
    ],
    ids=["unknown-id", "misspelled-name", "no-previous", "bad-selector", "not-an-id"],
)
def test_unknown_refs_say_what_exists(
    store: DatasetStore, january: pa.Table, ref: str, message: str
) -> None:
    store.add("jan", name="flights", table=january)
    with pytest.raises(NotFoundError, match=message):
        store.get(ref)


def test_close_ids_are_suggested(store: DatasetStore, january: pa.Table) -> None:
    version, _ = store.add("jan", name="flights", table=january)
    typo = version.id[:-1] + ("0" if version.id[-1] != "0" else "1")
    with pytest.raises(NotFoundError, match=f"did you mean {version.id}"):
        store.get(typo)


def test_parent_must_exist_and_no_self_parent(store: DatasetStore, january: pa.Table) -> None:
    with pytest.raises(NotFoundError, match="no dataset version 'ds-123456'"):
        store.add("jan", name="flights", table=january, parents=["ds-123456"])
    assert store.list() == []
    a, _ = store.add("jan", name="flights", table=january)
    again, created = store.add("jan", name="flights", table=january, parents=[a.id])
    assert (again.id, created, again.parents) == (a.id, False, ())


def test_load_detects_a_damaged_file(store: DatasetStore, january: pa.Table) -> None:
    version, _ = store.add("jan", name="flights", table=january)
    path = Path(version.storage_uri)
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(StoreError, match=f"file of dataset version {version.id} is damaged"):
        store.load(version.id)
    # same size, other content: only the digest check sees it
    pq.write_table(january.slice(1).select(sorted(january.column_names)), path)
    tampered = path.read_bytes()
    path.write_bytes(tampered[: len(data)].ljust(len(data), b"\0"))
    with pytest.raises(StoreError):
        store.load(version.id, verify=True)
    path.unlink()
    with pytest.raises(StoreError, match="missing from the artifact store"):
        store.load(version.id)


def test_non_utf8_csv_names_the_file_and_column(store: DatasetStore, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("city,n\nZürich,1\n".encode("latin-1"))
    with pytest.raises(
        DataError, match=r"latin1\.csv: column 'city' holds bytes that are not UTF-8"
    ):
        store.add(str(path), name="cities")


def test_empty_table_and_bad_name_are_refused(store: DatasetStore, january: pa.Table) -> None:
    with pytest.raises(DataError, match="is empty"):
        store.add("nothing", name="flights", table=january.slice(0, 0))
    with pytest.raises(DataError, match="dataset name"):
        store.add("jan", name="", table=january)


@pytest.mark.postgres
def test_versions_on_postgres(
    pg_url: str, tmp_path: Path, january: pa.Table, july: pa.Table
) -> None:
    store = DatasetStore(open_db(pg_url), ArtifactStore(str(tmp_path / "artifacts")))
    a, created = store.add("jan", name="flights", table=january, note="pg")
    assert created
    b, _ = store.add("jul", name="flights", table=july, parents=[a.id])
    assert store.add("jan", name="flights", table=january) == (a, False)
    assert store.get("flights@latest") == b
    assert store.get(a.id[:8]).profile == a.profile
    assert store.load(b.id, verify=True).num_rows == 5000


def test_versions_in_an_fsspec_artifact_store(tmp_path: Path, january: pa.Table) -> None:
    """The same contract on a non-local store (fsspec's in-memory filesystem stands in for S3)."""
    db = open_db(f"sqlite:///{tmp_path / 'kyklos.db'}")
    store = DatasetStore(db, ArtifactStore("memory://kyklos-test-artifacts"))
    version, created = store.add("jan", name="flights", table=january)
    assert created and version.storage_uri.startswith("memory://")
    assert store.load(version.id, verify=True).num_rows == 5000
    assert store.add("jan", name="flights", table=january)[1] is False
