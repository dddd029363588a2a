"""The artifact store: immutable blobs by key, on a local folder (default) or any fsspec URI.

Writes are atomic: a local write goes to a temporary file in the same folder and is renamed into
place, so a reader never sees half a file and an interrupted write leaves nothing under the key.
Object stores (``s3://``) give the same guarantee for a single PUT.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from kyklos.errors import MissingExtraError, StoreError

__all__ = ["ArtifactStore", "sha256_file"]

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a local file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ArtifactStore:
    """Blobs under ``root`` (a folder path or an fsspec URI such as ``s3://bucket/prefix``)."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self.is_local = "://" not in root or root.startswith("file://")
        self._fs: Any = None
        if self.is_local:
            self._local_root = Path(root.removeprefix("file://"))

    # -- keys --------------------------------------------------------------------------------
    def uri(self, key: str) -> str:
        """The full path or URI of ``key``."""
        return str(self._local_root / key) if self.is_local else f"{self.root}/{key}"

    def local_path(self, key: str) -> Path:
        """A local filesystem path for ``key`` (only for local stores)."""
        if not self.is_local:
            raise StoreError(f"{self.root} is not a local artifact store")
        return self._local_root / key

    def exists(self, key: str) -> bool:
        if self.is_local:
            return (self._local_root / key).exists()
        return bool(self._remote().exists(self.uri(key)))

    # -- writing -----------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key`` atomically; return its URI."""
        if self.is_local:
            target = self._local_root / key
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                Path(tmp).replace(target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return str(target)
        self._remote().pipe(self.uri(key), data)
        return self.uri(key)

    def put_file(self, key: str, source: str | Path, *, move: bool = False) -> str:
        """Copy (or move) a local file under ``key`` atomically; return its URI."""
        if self.is_local:
            target = self._local_root / key
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
            os.close(fd)
            try:
                if move:
                    shutil.move(str(source), tmp)
                else:
                    shutil.copyfile(source, tmp)
                with Path(tmp).open("rb+") as fh:
                    os.fsync(fh.fileno())
                Path(tmp).replace(target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return str(target)
        self._remote().put_file(str(source), self.uri(key))
        return self.uri(key)

    @staticmethod
    def temp_dir(parent: str | Path | None = None) -> tempfile.TemporaryDirectory[str]:
        """A scratch folder (removed on exit) for building a file before ``put_file``."""
        return tempfile.TemporaryDirectory(prefix="kyklos-", dir=parent)

    # -- reading -----------------------------------------------------------------------------
    def open(self, key: str, mode: str = "rb") -> IO[Any]:
        if self.is_local:
            path = self._local_root / key
            if not path.exists():
                raise StoreError(f"artifact {key!r} is missing from {self.root}")
            return path.open(mode)
        file: IO[Any] = self._remote().open(self.uri(key), mode)
        return file

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as fh:
            data: bytes = fh.read()
            return data

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix`` (temporary files excluded)."""
        if self.is_local:
            base = self._local_root / prefix
            if not base.exists():
                return
            for path in sorted(base.rglob("*")):
                if path.is_file() and not path.name.startswith(".tmp-"):
                    yield path.relative_to(self._local_root).as_posix()
            return
        for uri in sorted(self._remote().find(self.uri(prefix))):
            yield str(uri)[len(self.root) + 1 :]

    def _remote(self) -> Any:
        if self._fs is None:
            import fsspec

            protocol = self.root.split("://", 1)[0]
            try:
                self._fs = fsspec.filesystem(protocol)
            except ImportError as exc:
                raise MissingExtraError(exc.name or protocol, "s3") from exc
        return self._fs
