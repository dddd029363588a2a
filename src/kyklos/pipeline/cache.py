"""A content-addressed cache of step outputs.

The key of a step is the SHA-256 of a canonical JSON document holding the step's name, its code
hash, its parameters, the *output hashes* of its inputs and the relevant environment (Python and
library versions). Keys therefore chain through output hashes: deciding that a step is cached
needs only the small ``meta.json`` files of its upstream steps, never their outputs. Outputs are
unpickled lazily (:meth:`CacheEntry.load`), only when a downstream step must actually run.

An entry is a folder ``<root>/<key[:2]>/<key>/`` with ``output.pkl`` (the output pickled with
protocol 5) and ``meta.json`` (``output_hash`` = SHA-256 of the pickle bytes, plus whatever the
runner recorded). It is written into a temporary folder and renamed into place, so a crash
leaves no entry behind, only an ignored temporary folder.

A deterministic step (same code, parameters and inputs → the same output) produces the same
pickle bytes and so the same output hash; its downstream steps then stay cached even when the
step itself had to run again (for example after a comment-only edit with ``cache=False``).
Steps whose output embeds wall-clock times or random state without a seed get a new hash each
time they run, which simply means their downstream steps run too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import pickle
import platform
import shutil
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kyklos.errors import StoreError

__all__ = ["CacheEntry", "StepCache", "cache_key", "environment_fingerprint", "hash_output"]

_OUTPUT = "output.pkl"
_META = "meta.json"
_TMP_PREFIX = ".tmp-"
PICKLE_PROTOCOL = 5
KEY_FORMAT = 1  # bump when the key document changes shape


def cache_key(
    *,
    step: str,
    code_hash: str,
    params: Mapping[str, Any],
    inputs: Mapping[str, str],
    env: Mapping[str, str],
) -> str:
    """SHA-256 over the canonical JSON of everything that determines a step's output.

    ``inputs`` maps the step's input names to the output hashes of the upstream steps.
    Parameters are made JSON-able (dataclasses, pydantic models, paths, tuples, sets);
    anything else counts by its ``repr``.
    """
    document = {
        "format": KEY_FORMAT,
        "step": step,
        "code": code_hash,
        "params": _canonical(params),
        "inputs": dict(sorted(inputs.items())),
        "env": dict(sorted(env.items())),
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value else "NaN"
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_canonical(v) for v in value), key=repr)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__qualname__, **_canonical(dataclasses.asdict(value))}
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump):
        return {"__type__": type(value).__qualname__, **_canonical(dump(mode="json"))}
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return _canonical(item())
    return {"__repr__": repr(value)}


def hash_output(value: Any) -> tuple[str, bytes]:
    """The output hash of a value and its pickle bytes (protocol 5)."""
    data = pickle.dumps(value, protocol=PICKLE_PROTOCOL)
    return hashlib.sha256(data).hexdigest(), data


@functools.lru_cache(maxsize=32)
def environment_fingerprint(packages: tuple[str, ...] = ()) -> Mapping[str, str]:
    """Python version, platform and the installed versions of ``packages``.

    Reads package metadata only; nothing is imported. Pass the result as a node's ``env`` so that
    an upgrade of, say, scikit-learn invalidates the steps that use it.
    """
    import importlib.metadata

    env = {
        "python": ".".join(map(str, sys.version_info[:3])),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
    }
    for name in packages:
        try:
            env[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            env[name] = "absent"
    return types.MappingProxyType(env)


@dataclass(frozen=True)
class CacheEntry:
    """One cached output: its hash and metadata now, the value itself on :meth:`load`."""

    key: str
    output_hash: str
    meta: Mapping[str, Any]
    path: Path = field(repr=False)

    def load(self) -> Any:
        """Unpickle the output; raise :class:`~kyklos.errors.StoreError` when it is gone or corrupt."""
        file = self.path / _OUTPUT
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise StoreError(f"cached output {file} cannot be read: {exc.strerror}") from exc
        if hashlib.sha256(data).hexdigest() != self.output_hash:
            raise StoreError(
                f"cached output {file} does not match its hash {self.output_hash[:12]}; "
                "it will be recomputed. Hint: `kyklos run --no-cache` refreshes the cache"
            )
        try:
            return pickle.loads(data)
        except Exception as exc:
            raise StoreError(
                f"cached output {file} cannot be unpickled: {type(exc).__name__}: {exc}"
            ) from exc


class StepCache:
    """Step outputs on the local disk under ``root`` (the project's ``.kyklos/cache``).

    A miss returns None; :meth:`put` replaces an existing entry for the same key.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"StepCache({str(self.root)!r})"

    def _folder(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, key: str) -> CacheEntry | None:
        """The entry for ``key``, or None on a miss. Reads only the small metadata file."""
        folder = self._folder(key)
        try:
            meta = json.loads((folder / _META).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # an unreadable entry is a miss; put() replaces it
        output_hash = meta.get("output_hash") if isinstance(meta, dict) else None
        if not isinstance(output_hash, str):
            return None
        return CacheEntry(key=key, output_hash=output_hash, meta=meta, path=folder)

    def put(
        self,
        key: str,
        value: Any,
        *,
        meta: Mapping[str, Any] | None = None,
        pickled: tuple[str, bytes] | None = None,
    ) -> CacheEntry:
        """Store ``value`` under ``key`` atomically and return its entry.

        ``pickled`` may pass ``hash_output(value)`` when the caller has it already.
        """
        output_hash, data = pickled if pickled is not None else hash_output(value)
        document = {
            **(meta or {}),
            "key": key,
            "output_hash": output_hash,
            "size": len(data),
            "created": time.time(),
        }
        folder = self._folder(key)
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=folder.parent))
            try:
                (tmp / _OUTPUT).write_bytes(data)
                (tmp / _META).write_text(json.dumps(document, default=str), encoding="utf-8")
                self._swap(tmp, folder)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        except OSError as exc:
            raise StoreError(f"cannot write the step cache at {folder}: {exc}") from exc
        return CacheEntry(key=key, output_hash=output_hash, meta=document, path=folder)

    @staticmethod
    def _swap(tmp: Path, folder: Path) -> None:
        try:
            tmp.rename(folder)
            return
        except OSError:
            if not folder.exists():
                raise
        # Replace an existing entry: move it aside, move ours in, drop the old one.
        trash = folder.with_name(f"{_TMP_PREFIX}old-{uuid.uuid4().hex}")
        with contextlib.suppress(FileNotFoundError):
            folder.rename(trash)
        tmp.rename(folder)
        shutil.rmtree(trash, ignore_errors=True)

    def delete(self, key: str) -> None:
        """Remove one entry (no error when it does not exist)."""
        shutil.rmtree(self._folder(key), ignore_errors=True)

    def clear(self) -> None:
        """Remove every entry."""
        if self.root.exists():
            for child in self.root.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
