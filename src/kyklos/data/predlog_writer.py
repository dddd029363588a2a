"""Durable, group-committed writers of the prediction and label logs.

``append(batch)`` checks and converts a columnar batch on the caller's thread, adds it to the
open *group* and returns that group's :class:`Commit` at once. Each group becomes ONE frame
appended to the writer's write-ahead file with one ``write`` (its rows as plain values when every
append is one row, else one Arrow record batch: :mod:`kyklos.data.predlog_frames`), and the
group's commit resolves: every append of the group is committed at the same time (group
commit). A caller that acknowledges a prediction only after ``commit.wait()`` (or ``await
commit``) never loses it, however the process dies. How far "committed" reaches is ``fsync``:

* ``fsync=True`` (the class default): one ``fdatasync`` per group before it resolves: the record
  survives the machine too (power loss, kernel panic). ~0.8 ms per group on this disk.
* ``fsync=False`` (what ``kyklos serve`` uses unless ``serve.log.fsync`` is set): the ``write``
  has reached the kernel's page cache: the record survives the process (SIGKILL, OOM kill, a
  crash), not the machine. ``append_async`` then commits on the event loop itself, once per
  loop iteration for every record appended during it, with no thread hop.

Who commits: a committer thread (every ``append``, and ``append_async`` with ``fsync``), or the
event loop (``append_async`` without ``fsync``); one lock keeps their commits apart.

When the thread commits: a group closes at ``max_batch_rows`` rows. After a commit, the next
group waits for company at most ``commit_interval_ms`` from the start of the previous commit,
and not at all once it is as big as recent groups were (a decaying estimate of the load): the
first record after a quiet spell is committed at once, and under load groups grow instead of
fsyncs multiplying. Records that arrive while a commit is in flight join the next group. A WAL
is sealed into a Parquet segment by a second thread when it holds ``segment_rows`` rows or is
``segment_seconds`` old, and on ``close()``. A writer that starts seals the WAL files of
writers that died (see :mod:`kyklos.data.predlog_files`).

One writer per process and log folder; create it after forking. Several processes may write
to the same folder: each has its own WAL and segments.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import queue
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa

from kyklos.data.predlog_commit import Commit
from kyklos.data.predlog_files import WAL_SUFFIX, fsync_dir, recover, seal_wal
from kyklos.data.predlog_frames import encode_arrow, encode_header, encode_rows
from kyklos.data.predlog_schema import (
    FEATURE_PREFIX,
    LABELS,
    PREDICTIONS,
    LogSchema,
    Normalized,
    label_schema,
    prediction_schema,
)
from kyklos.errors import DataError, StoreError

__all__ = ["Commit", "LabelLogWriter", "LogWriter", "PredictionLogWriter", "WriterStats"]

_fdatasync = getattr(os, "fdatasync", os.fsync)


@dataclass(frozen=True)
class WriterStats:
    """Counters of a writer (for ``/metrics``): rows and group commits so far, and the lag."""

    rows: int
    commits: int
    segments: int
    pending_rows: int
    wal_rows: int
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "commits": self.commits,
            "segments": self.segments,
            "pending_rows": self.pending_rows,
            "wal_rows": self.wal_rows,
            "last_error": self.last_error,
        }


@dataclass
class _Group:
    commit: Commit
    schema: LogSchema
    batches: list[Normalized]
    rows: int = 0


#: The commit of a group written by ``append_now`` (nobody waits for it).
_NO_COMMIT = Commit()


@dataclass
class _Wal:
    path: Path
    fd: int
    schema: LogSchema
    arrow: Any  # pa.Schema
    opened: float
    size: int
    rows: int = 0


class LogWriter:
    """A durable, group-committed writer of one log folder (see the module docstring)."""

    def __init__(
        self,
        folder: Path,
        schema: LogSchema,
        *,
        commit_interval_ms: float = 2.0,
        max_batch_rows: int = 4096,
        segment_rows: int = 100_000,
        segment_seconds: float = 60.0,
        fsync: bool = True,
        seal_in_child: bool = False,
    ) -> None:
        if max_batch_rows < 1 or segment_rows < 1 or segment_seconds <= 0:
            raise DataError(
                f"log writer: max_batch_rows={max_batch_rows}, segment_rows={segment_rows} and "
                f"segment_seconds={segment_seconds} must all be positive"
            )
        self.folder = Path(folder)
        self.commit_interval = max(commit_interval_ms, 0.0) / 1000
        self.max_batch_rows = max_batch_rows
        self.segment_rows = segment_rows
        self.segment_seconds = segment_seconds
        self.fsync = fsync
        #: seal rotated WALs in a child process (a server: keeps the GIL for the event loop)
        self.seal_in_child = seal_in_child
        self._pid = os.getpid()
        self.writer_id = f"{self._pid}-{uuid.uuid4().hex[:12]}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.recovered = recover(self.folder)
        except OSError as exc:
            raise StoreError(f"cannot open the log folder {self.folder}: {exc}") from exc
        self._schema = schema
        # pyarrow imports pandas on its first conversion of Python values (~0.3 s): pay it
        # here, not in the first group commit a client waits for.
        pa.array([0], type=pa.int64())
        self._cond = threading.Condition(threading.Lock())
        self._commit_lock = threading.Lock()  # one committer at a time: the thread or the loop
        self._loop_commit_due = False  # append_async (no fsync): a loop commit is scheduled
        self._groups: deque[_Group] = deque()
        self._open: _Group | None = None
        self._pending_rows = 0
        self._closing = False
        self._closed = False
        self._failure: str | None = None
        self._wal: _Wal | None = None
        self._seq = 0
        self._commits = 0
        self._segments = 0
        self._last_error: str | None = None
        self._last_commit = 0.0
        # About the size of the last groups (decaying): a group that big commits at once.
        self._expected_rows = 1
        self._sealer_queue: queue.Queue[_Wal | None] = queue.Queue()
        self._committer = threading.Thread(
            target=self._run_committer, name=f"kyklos-log-commit-{schema.kind}", daemon=True
        )
        self._sealer = threading.Thread(
            target=self._run_sealer, name=f"kyklos-log-seal-{schema.kind}", daemon=True
        )
        self._committer.start()
        self._sealer.start()

    # -- the hot path -------------------------------------------------------------------------

    def append(self, records: Mapping[str, Any]) -> Commit:
        """Queue one columnar batch (one request or many); return its group's :class:`Commit`.

        Values are scalars (the same for every row) or 1-D arrays/lists of one value per row.
        Raises :class:`DataError` for a malformed batch, :class:`StoreError` when the writer is
        closed or broken. Nothing is durable until the returned commit is.
        """
        return self._append(records, wake=True)

    def _append(
        self,
        records: Mapping[str, Any],
        *,
        wake: bool,
        normalized: tuple[LogSchema, Normalized] | None = None,
    ) -> Commit:
        """``append``; ``wake=False`` leaves the committer thread asleep (the loop commits).
        ``normalized``: the records already normalised, and the schema that did it."""
        schema, batch = normalized or (self._schema, self._schema.normalize(records))
        with self._cond:
            self._check_open()
            if schema is not self._schema:  # the features changed meanwhile
                schema = self._schema
                batch = schema.normalize(records)
            group = self._open
            if (
                group is None
                or group.schema is not schema
                or (group.rows and group.rows + batch.rows > self.max_batch_rows)
            ):
                group = _Group(Commit(), schema, [])
                self._groups.append(group)
                self._open = group
                if wake:
                    self._cond.notify()
            group.batches.append(batch)
            before = group.rows
            group.rows += batch.rows
            self._pending_rows += batch.rows
            if group.rows >= self.max_batch_rows:
                self._open = None
                if wake:
                    self._cond.notify()
            elif wake and before < self._expected_rows <= group.rows:
                self._cond.notify()  # as big as the last group: no point in waiting longer
            return group.commit

    async def append_async(self, records: Mapping[str, Any]) -> None:
        """``append`` and wait for the commit without blocking the event loop.

        Without ``fsync`` the loop commits itself: the first append of a loop iteration
        schedules one commit (``call_soon``) of everything appended until it runs.
        """
        if self.fsync:
            await self.append(records)
            return
        commit = self._append(records, wake=False)
        if not self._loop_commit_due:
            self._loop_commit_due = True
            asyncio.get_running_loop().call_soon(self._commit_on_loop)
        await commit

    def append_now(self, records: Mapping[str, Any]) -> None:
        """``append`` and commit it at once, on the calling thread, with whatever else is
        pending: for a caller that knows nothing else is coming to share the commit (a lone
        request), which then saves the wait for a commit turn. Returns once the records are
        written (and fdatasync'ed with ``fsync``); raises :class:`StoreError` if they could not
        be (they were then not logged). Blocks: call it from the event loop only when a write
        is all it costs (no ``fsync``)."""
        schema = self._schema
        batch = schema.normalize(records)
        with self._cond:
            self._check_open()
            pending = bool(self._groups) or schema is not self._schema
        if pending:  # others to commit along (or the features changed): the group path
            commit = self._append(records, wake=False, normalized=(schema, batch))
            self._commit_on_loop()
            commit.wait()
            return
        with self._commit_lock:
            error = self._write(_Group(_NO_COMMIT, schema, [batch], batch.rows))
        if error is not None:
            raise StoreError(error)

    def _commit_on_loop(self) -> None:
        self._loop_commit_due = False
        with self._cond:
            groups = list(self._groups)
            self._groups.clear()
            self._open = None
        with self._commit_lock:
            for group in groups:
                self._commit(group)

    # -- control ------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything appended so far is durable."""
        with self._cond:
            last = self._groups[-1].commit if self._groups else None
        if last is not None:
            last.wait(timeout)
        with self._commit_lock:  # a commit the event loop has under way
            pass

    def close(self) -> None:
        """Commit what is pending, seal the WAL into a segment and stop the threads (idempotent)."""
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._cond.notify_all()
        if os.getpid() == self._pid:
            self._committer.join()
            self._sealer.join()
        self._closed = True

    def stats(self) -> WriterStats:
        with self._cond:
            return WriterStats(
                rows=self._seq,
                commits=self._commits,
                segments=self._segments,
                pending_rows=self._pending_rows,
                wal_rows=self._wal.rows if self._wal else 0,
                last_error=self._last_error or self._failure,
            )

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        """Raise :class:`StoreError` when appends are refused (called holding the lock)."""
        if self._closing or self._failure is not None or os.getpid() != self._pid:
            raise StoreError(self._refusal())

    def _refusal(self) -> str:
        if os.getpid() != self._pid:
            return (
                f"this log writer was created in process {self._pid}, not in {os.getpid()}. "
                "Hint: create one writer per worker process, after forking"
            )
        if self._failure is not None:
            return f"the log writer of {self.folder} is broken: {self._failure}"
        return f"the log writer of {self.folder} is closed"

    # -- the committer thread -----------------------------------------------------------------

    def _run_committer(self) -> None:
        while True:
            with self._cond:
                group = self._next_group()
                done = group is None and self._closing
            if group is not None:
                with self._commit_lock:
                    self._commit(group)
            elif self._wal is not None and (done or self._wal_expired()):
                with self._commit_lock:
                    self._rotate()
            if done:
                self._sealer_queue.put(None)
                return

    def _next_group(self) -> _Group | None:
        """Wait (holding the lock) for a group to commit; None when closing or a WAL expires."""
        while True:
            if self._groups:
                head = self._groups[0]
                wait = self._last_commit + self.commit_interval - time.monotonic()
                if (
                    wait > 0
                    and head is self._open
                    and head.rows < self._expected_rows
                    and not self._closing
                ):
                    self._cond.wait(wait)
                    continue
                group = self._groups.popleft()
                if group is self._open:
                    self._open = None
                return group
            if self._closing:
                return None
            timeout = None
            if self._wal is not None:
                timeout = self._wal.opened + self.segment_seconds - time.monotonic()
                if timeout <= 0:
                    return None
            self._cond.wait(timeout)

    def _wal_expired(self) -> bool:
        wal = self._wal
        return wal is not None and time.monotonic() >= wal.opened + self.segment_seconds

    def _commit(self, group: _Group) -> None:
        self._finish(group, self._write(group))

    def _write(self, group: _Group) -> str | None:
        """Write ``group`` to the WAL (holding the commit lock); the error that kept it out."""
        self._last_commit = time.monotonic()
        if self._failure is not None:
            return self._failure
        wal = self._wal
        written = 0
        try:
            if wal is not None and wal.schema is not group.schema:
                self._rotate()
                wal = None
            if wal is None:
                wal = self._wal = self._open_wal(group.schema)
            data = memoryview(self._frame(group, wal))
            while written < len(data):
                written += os.write(wal.fd, data[written:])
            if self.fsync:
                _fdatasync(wal.fd)
        except Exception as exc:
            message = f"cannot write the log file in {self.folder}: {type(exc).__name__}: {exc}"
            if wal is not None and written:
                try:  # drop the partial batch so the WAL stays readable
                    os.ftruncate(wal.fd, wal.size)
                    _fdatasync(wal.fd)
                except OSError as again:
                    self._failure = f"{message}; and cannot truncate it: {again}"
            self._last_error = message
            return message
        wal.size += written
        wal.rows += group.rows
        self._seq += group.rows
        self._commits += 1
        self._expected_rows = max(group.rows, self._expected_rows // 2)
        if wal.rows >= self.segment_rows:
            self._rotate()
        return None

    def _frame(self, group: _Group, wal: _Wal) -> bytes:
        """The WAL frame of a group: its rows as they are when every append is one row."""
        if all(batch.scalar for batch in group.batches):
            frame = encode_rows(self._seq, [batch.values for batch in group.batches])
            if frame is not None:
                return frame
        batch = group.schema.build(
            group.batches, writer=self.writer_id, first_seq=self._seq, schema=wal.arrow
        )
        return encode_arrow(batch)

    def _finish(self, group: _Group, error: str | None) -> None:
        with self._cond:
            self._pending_rows -= group.rows
        group.commit._resolve(error)

    def _open_wal(self, schema: LogSchema) -> _Wal:
        wal_id = uuid.uuid4().hex
        tmp = self.folder / f".wal-{self._pid}-{wal_id}.tmp"
        path = self.folder / f"wal-{self._pid}-{wal_id}{WAL_SUFFIX}"
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o644)  # O_APPEND: after a truncation, writes go to the end
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            arrow = schema.arrow(self.writer_id)
            header = encode_header(arrow)
            os.write(fd, header)
            if self.fsync:
                _fdatasync(fd)
            tmp.rename(path)
            if self.fsync:
                fsync_dir(self.folder)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return _Wal(path, fd, schema, arrow, time.monotonic(), len(header))

    def _rotate(self) -> None:
        wal, self._wal = self._wal, None
        if wal is not None:
            self._sealer_queue.put(wal)

    # -- the sealer thread --------------------------------------------------------------------

    def _run_sealer(self) -> None:
        while True:
            wal = self._sealer_queue.get()
            if wal is None:
                return
            try:
                if self._seal(wal.path) is not None:
                    with self._cond:
                        self._segments += 1
            except Exception as exc:  # kept: the WAL is sealed again by the next writer
                self._last_error = f"{type(exc).__name__}: {exc}"
            finally:
                os.close(wal.fd)

    def _seal(self, path: Path) -> Path | None:
        """Seal a rotated WAL: in a child process while serving with ``seal_in_child`` (see
        :mod:`kyklos.data.predlog_seal`), here when closing (nobody waits on the loop any more)
        or when the child fails (its error is kept in ``stats().last_error``)."""
        if self.seal_in_child and not self._closing:
            from kyklos.data.predlog_seal import seal_in_child

            try:
                return seal_in_child(path)
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
        return seal_wal(path)


class PredictionLogWriter(LogWriter):
    """The writer of ``<root>/predictions`` for a model with ``features``.

    ``append`` takes ``request_id``, ``model``, ``version``, ``prediction`` (required), ``row``
    (default 0..n-1), ``ts`` (default now), ``arm`` (``champion``), ``endpoint`` (``predict``),
    ``latency_ms``, ``score`` (default null) and ``f.<feature>`` columns (default null).
    """

    def __init__(
        self, root: Path, *, features: Sequence[tuple[str, str]] = (), **options: Any
    ) -> None:
        self.features: tuple[tuple[str, str], ...] = tuple(features)
        super().__init__(Path(root) / PREDICTIONS, prediction_schema(self.features), **options)

    def extend_features(self, features: Sequence[tuple[str, str]]) -> None:
        """Add features (a new model version's); the WAL rolls over if the layout changes."""
        known = dict(self.features)
        added = list(self.features)
        for name, kind in features:
            if name not in known:
                known[name] = kind
                added.append((name, kind))
            elif known[name] != kind:
                raise DataError(
                    f"prediction log: feature {FEATURE_PREFIX}{name} is logged as {known[name]}, "
                    f"not {kind}. Hint: rename the feature, or log to a new folder"
                )
        if len(added) == len(self.features):
            return
        schema = prediction_schema(added)
        with self._cond:
            self.features = tuple(added)
            self._schema = schema
            self._open = None


class LabelLogWriter(LogWriter):
    """The writer of ``<root>/labels``: ``request_id``, ``label`` (required), ``row``, ``ts``."""

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(Path(root) / LABELS, label_schema(), **options)
