"""Dataset versions: immutable, content-addressed snapshots with schema, profile and parents.

A version's id is ``"ds-"`` + the first 12 hex digits of its content digest
(:func:`~kyklos.data.table.content_digest`), so adding the same data twice — from CSV or Parquet,
renamed or touched — gives back the version that already exists.

Adding is crash-safe. The canonical Parquet file is written first, atomically (a ``.tmp-<pid>-``
file in the target folder, fsynced, then renamed) under ``datasets/<digest[:2]>/<digest>.parquet``;
only then is the row inserted, together with its parent edges, in one transaction. A version
exists once its row exists, and its row never exists without its file. A process killed midway
leaves at most a complete, unreferenced file (which the next add of the same data reuses) or a
hidden temp file (which the next add sweeps once its writer is gone).
"""

from __future__ import annotations

import builtins
import datetime as dt
import difflib
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Connection, RowMapping, select
from sqlalchemy.exc import IntegrityError

from kyklos._version import __version__
from kyklos.config.actor import current_actor
from kyklos.data.profile import TableProfile, profile_table
from kyklos.data.schema import TableSchema, infer_schema
from kyklos.data.table import DigestCache, canonicalize, content_digest, read_table
from kyklos.errors import DataError, NotFoundError, StoreError
from kyklos.store import ArtifactStore, Database, open_db
from kyklos.store.schema import dataset_parents, dataset_versions

if TYPE_CHECKING:
    import pandas as pd

    from kyklos.config import Project

__all__ = ["DatasetStore", "DatasetVersion", "dataset_key", "version_id"]

ID_PREFIX = "ds-"
_TMP = re.compile(r"^\.tmp-(\d+)-")
_HEX = re.compile(r"^[0-9a-f]+$")


def version_id(digest: str) -> str:
    """The id of the version with this content digest."""
    return ID_PREFIX + digest[:12]


def dataset_key(digest: str) -> str:
    """The artifact-store key of the canonical Parquet file of a version."""
    return f"datasets/{digest[:2]}/{digest}.parquet"


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable dataset version (a row of ``dataset_versions`` plus its parents)."""

    id: str
    digest: str
    name: str
    created_at: dt.datetime
    created_by: str
    source: str
    storage_uri: str
    n_rows: int
    n_columns: int
    size_bytes: int
    schema: TableSchema
    profile: TableProfile
    parents: tuple[str, ...] = ()
    note: str | None = None

    @property
    def key(self) -> str:
        return dataset_key(self.digest)

    def summary(self) -> dict[str, Any]:
        """The short form shown by ``kyklos data list``."""
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "n_rows": self.n_rows,
            "n_columns": self.n_columns,
            "size_bytes": self.size_bytes,
            "source": self.source,
            "parents": list(self.parents),
            "note": self.note,
        }

    def to_dict(self) -> dict[str, Any]:
        return self.summary() | {
            "digest": self.digest,
            "storage_uri": self.storage_uri,
            "schema": self.schema.to_dict(),
            "profile": self.profile.to_dict(),
        }


class DatasetStore:
    """Dataset versions of one metadata DB, their files in one artifact store.

    ``cache_dir`` (optional) holds the digest cache that lets an unchanged local file be
    re-added without being parsed again.
    """

    def __init__(
        self, db: Database, artifacts: ArtifactStore, *, cache_dir: str | Path | None = None
    ) -> None:
        self.db = db
        self.artifacts = artifacts
        self.cache = DigestCache(cache_dir) if cache_dir is not None else None

    @classmethod
    def for_project(cls, project: Project) -> DatasetStore:
        """The store of a loaded project (its DB, artifact store and cache folder)."""
        return cls(
            open_db(project.db_url),
            ArtifactStore(project.artifacts_uri),
            cache_dir=project.cache_dir / "data",
        )

    # -- adding ------------------------------------------------------------------------------
    def add(
        self,
        source: str,
        *,
        name: str,
        parents: Sequence[str] = (),
        note: str | None = None,
        table: pa.Table | None = None,
    ) -> tuple[DatasetVersion, bool]:
        """Add the table at ``source`` (or ``table``, with ``source`` as its label).

        Returns the version and whether it was created; the same content returns the existing
        version unchanged (``created`` False, its name, parents and note kept).
        """
        if not name or len(name) > 128:
            raise DataError(f"dataset name {name!r} must be 1 to 128 characters")
        parent_ids = self._resolve_parents(parents)
        file_sha = None
        if table is None and self.cache is not None and _is_local_file(source):
            file_sha = self.cache.file_digest(source)
            known = self.cache.content_of(file_sha)
            if known is not None:
                existing = self._by_digest(known)
                if existing is not None:
                    return existing, False
        if table is None:
            table = read_table(source)
        elif table.num_rows == 0 or table.num_columns == 0:
            raise DataError(f"the table given for {source} is empty; a dataset version needs data")
        try:
            canonical = canonicalize(table)
        except DataError as exc:
            raise DataError(f"{source}: {exc}") from exc
        digest = content_digest(canonical)
        if file_sha is not None and self.cache is not None:
            self.cache.remember(file_sha, digest)
        existing = self._by_digest(digest)
        if existing is not None:
            return existing, False
        if version_id(digest) in parent_ids:
            raise DataError(f"{version_id(digest)} cannot be its own parent")
        schema = infer_schema(canonical)
        profile = profile_table(canonical, schema)
        uri, size = self._write(digest, canonical)
        row = {
            "id": version_id(digest),
            "digest": digest,
            "name": name,
            "created_at": dt.datetime.now(dt.UTC),
            "created_by": current_actor(),
            "source": source,
            "storage_uri": uri,
            "n_rows": canonical.num_rows,
            "n_columns": canonical.num_columns,
            "size_bytes": size,
            "schema": schema.to_dict(),
            "profile": profile.to_dict(),
            "note": note,
            "kyklos_version": __version__,
        }
        try:
            with self.db.write() as conn:
                if (
                    conn.execute(
                        select(dataset_versions.c.id).where(dataset_versions.c.digest == digest)
                    ).first()
                    is None
                ):
                    conn.execute(dataset_versions.insert().values(**row))
                    if parent_ids:
                        conn.execute(
                            dataset_parents.insert(),
                            [
                                {"child_id": row["id"], "parent_id": p, "relation": "derived"}
                                for p in parent_ids
                            ],
                        )
                    created = True
                else:
                    created = False  # another process added the same content meanwhile
        except IntegrityError:  # the same race on a DB without serialised writers
            created = False
        version = self._by_digest(digest)
        if version is None:  # pragma: no cover - the row was just written
            raise StoreError(f"dataset version {row['id']} vanished right after it was added")
        return version, created

    def _resolve_parents(self, parents: Sequence[str]) -> builtins.list[str]:
        ids: builtins.list[str] = []
        for ref in parents:
            pid = self.get(ref).id
            if pid not in ids:
                ids.append(pid)
        return ids

    def _write(self, digest: str, table: pa.Table) -> tuple[str, int]:
        """Write the canonical Parquet file atomically; return its URI and size."""
        key = dataset_key(digest)
        if self.artifacts.is_local:
            target = self.artifacts.local_path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            self._sweep(target.parent.parent)
            tmp = target.with_name(f".tmp-{os.getpid()}-{secrets.token_hex(4)}.parquet")
            try:
                with tmp.open("wb") as fh:
                    pq.write_table(table, fh, compression="zstd")
                    fh.flush()
                    os.fsync(fh.fileno())
                tmp.replace(target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return str(target), target.stat().st_size
        with ArtifactStore.temp_dir() as scratch:
            local = Path(scratch) / f"{digest}.parquet"
            pq.write_table(table, local, compression="zstd")
            size = local.stat().st_size
            uri = self.artifacts.put_file(key, local, move=True)
        return uri, size

    @staticmethod
    def _sweep(folder: Path) -> None:
        """Remove temp files left by writers that are no longer running (killed mid-write)."""
        for path in folder.glob("*/.tmp-*"):
            match = _TMP.match(path.name)
            if match is None or int(match.group(1)) == os.getpid():
                continue
            if not _alive(int(match.group(1))):
                path.unlink(missing_ok=True)

    # -- reading -----------------------------------------------------------------------------
    def get(self, ref: str) -> DatasetVersion:
        """A version by full id, unique id prefix (with or without ``ds-``), ``latest``,
        ``NAME@latest`` or ``NAME@previous``."""
        ref = ref.strip()
        with self.db.read() as conn:
            if ref in {"latest", "@latest"}:
                row = conn.execute(_ordered(select(dataset_versions)).limit(1)).first()
                if row is None:
                    raise NotFoundError(
                        "there is no dataset version yet. Hint: kyklos data add PATH"
                    )
                return self._version(conn, row._mapping)
            if "@" in ref:
                name, _, which = ref.partition("@")
                return self._named(conn, name, which)
            lowered = ref.lower()
            prefix = lowered if lowered.startswith(ID_PREFIX) else ID_PREFIX + lowered
            if len(prefix) > len(ID_PREFIX) and _HEX.match(prefix[len(ID_PREFIX) :]):
                rows = conn.execute(
                    select(dataset_versions).where(dataset_versions.c.id.startswith(prefix))
                ).all()
                if len(rows) == 1:
                    return self._version(conn, rows[0]._mapping)
                if len(rows) > 1:
                    ids = sorted(r._mapping["id"] for r in rows)
                    raise NotFoundError(
                        f"dataset version {ref!r} is ambiguous: it matches {', '.join(ids[:5])}"
                        f"{' ...' if len(ids) > 5 else ''}. Hint: give more characters"
                    )
            ids = [r[0] for r in conn.execute(select(dataset_versions.c.id)).all()]
            names = sorted({r[0] for r in conn.execute(select(dataset_versions.c.name)).all()})
        raise NotFoundError(_not_found(ref, ids, names))

    def _named(self, conn: Connection, name: str, which: str) -> DatasetVersion:
        rows = conn.execute(
            _ordered(select(dataset_versions).where(dataset_versions.c.name == name)).limit(2)
        ).all()
        if which not in {"latest", "previous"}:
            raise NotFoundError(
                f"unknown dataset selector {which!r} in {name}@{which}; use {name}@latest or "
                f"{name}@previous"
            )
        index = 0 if which == "latest" else 1
        if len(rows) <= index:
            names = sorted({r[0] for r in conn.execute(select(dataset_versions.c.name)).all()})
            close = difflib.get_close_matches(name, names, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            have = "no" if not rows else "only one"
            raise NotFoundError(f"dataset {name!r} has {have} version for @{which}.{hint}")
        return self._version(conn, rows[index]._mapping)

    def list(self, name: str | None = None) -> list[DatasetVersion]:
        """All versions (of ``name``), newest first."""
        query = select(dataset_versions)
        if name is not None:
            query = query.where(dataset_versions.c.name == name)
        with self.db.read() as conn:
            rows = conn.execute(_ordered(query)).all()
            return [self._version(conn, r._mapping) for r in rows]

    def latest(self, name: str) -> DatasetVersion | None:
        """The newest version of ``name``, or None."""
        with self.db.read() as conn:
            row = conn.execute(
                _ordered(select(dataset_versions).where(dataset_versions.c.name == name)).limit(1)
            ).first()
            return self._version(conn, row._mapping) if row is not None else None

    def previous(self, name: str, before_id: str) -> DatasetVersion | None:
        """The version of ``name`` added just before ``before_id``, or None."""
        versions = self.list(name)
        ids = [v.id for v in versions]
        if before_id not in ids:
            raise NotFoundError(f"dataset {name!r} has no version {before_id!r}")
        index = ids.index(before_id)
        return versions[index + 1] if index + 1 < len(versions) else None

    def children(self, ref: str) -> builtins.list[str]:
        """Ids of the versions derived from ``ref``."""
        vid = self.get(ref).id
        with self.db.read() as conn:
            rows = conn.execute(
                select(dataset_parents.c.child_id).where(dataset_parents.c.parent_id == vid)
            ).all()
        return sorted(r[0] for r in rows)

    def load(self, ref: str | DatasetVersion, *, verify: bool = False) -> pa.Table:
        """The canonical table of a version; checks the file's size, and with ``verify`` its
        content digest too."""
        version = ref if isinstance(ref, DatasetVersion) else self.get(ref)
        key = version.key
        if not self.artifacts.exists(key):
            raise StoreError(
                f"the file of dataset version {version.id} is missing from the artifact store "
                f"({self.artifacts.uri(key)}). Hint: restore the artifact store from a backup"
            )
        size = _size(self.artifacts, key)
        if size != version.size_bytes:
            raise StoreError(
                f"the file of dataset version {version.id} is damaged: {size} bytes, expected "
                f"{version.size_bytes} ({self.artifacts.uri(key)})"
            )
        try:
            with self.artifacts.open(key) as fh:
                table = pq.read_table(fh)
        except (pa.ArrowInvalid, OSError) as exc:
            raise StoreError(
                f"the file of dataset version {version.id} cannot be read: {exc}"
            ) from exc
        if verify and content_digest(table) != version.digest:
            raise StoreError(
                f"the content of dataset version {version.id} does not match its digest "
                f"({self.artifacts.uri(key)} was modified)"
            )
        return table

    def load_frame(self, ref: str | DatasetVersion) -> pd.DataFrame:
        """The table of a version as pandas (strings as Python ``str``, nulls as NaN/NaT)."""
        frame: pd.DataFrame = self.load(ref).to_pandas()
        return frame

    def _by_digest(self, digest: str) -> DatasetVersion | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(dataset_versions).where(dataset_versions.c.digest == digest)
            ).first()
            return self._version(conn, row._mapping) if row is not None else None

    @staticmethod
    def _version(conn: Connection, row: RowMapping | Mapping[str, Any]) -> DatasetVersion:
        parents = conn.execute(
            select(dataset_parents.c.parent_id)
            .where(dataset_parents.c.child_id == row["id"])
            .order_by(dataset_parents.c.parent_id)
        ).all()
        created = row["created_at"]
        if created.tzinfo is None:
            created = created.replace(tzinfo=dt.UTC)
        return DatasetVersion(
            id=row["id"],
            digest=row["digest"],
            name=row["name"],
            created_at=created,
            created_by=row["created_by"],
            source=row["source"],
            storage_uri=row["storage_uri"],
            n_rows=row["n_rows"],
            n_columns=row["n_columns"],
            size_bytes=row["size_bytes"],
            schema=TableSchema.from_dict(row["schema"]),
            profile=TableProfile.from_dict(row["profile"]),
            parents=tuple(p[0] for p in parents),
            note=row["note"],
        )


def _ordered(query: Any) -> Any:
    return query.order_by(dataset_versions.c.created_at.desc(), dataset_versions.c.id.desc())


def _not_found(ref: str, ids: Sequence[str], names: Sequence[str]) -> str:
    close = difflib.get_close_matches(ref, [*ids, *names], n=3, cutoff=0.5)
    if close:
        hint = f"did you mean {', '.join(close)}?"
    elif ids:
        hint = "see `kyklos data list`"
    else:
        hint = "there are no dataset versions yet; add one with `kyklos data add PATH`"
    return f"no dataset version {ref!r}. Hint: {hint}"


def _is_local_file(source: str) -> bool:
    return ("://" not in source or source.startswith("file://")) and Path(
        source.removeprefix("file://")
    ).is_file()


def _size(artifacts: ArtifactStore, key: str) -> int:
    if artifacts.is_local:
        return artifacts.local_path(key).stat().st_size
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(artifacts.uri(key))
    return int(fs.size(path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
