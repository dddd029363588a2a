"""Monitor results and the incremental monitor's cursor, in kyklos's metadata DB.

* ``monitor_results``: one row per checked window, with the summary in columns (version,
  window bounds, rows, verdict, share of drifted features, dataset drift) for listing and the
  whole :class:`~kyklos.monitoring.results.CheckResult` as JSON for reports.
* ``monitor_state``: one row per (project, model): the cursor of the incremental monitor (a
  JSON document owned by :mod:`kyklos.monitoring.monitor`).

A window's result and the cursor move that consumes its rows are written by
:meth:`MonitorStore.commit` in **one** transaction, which also checks that the cursor is still
the one the caller started from (compare-and-set, on PostgreSQL under ``SELECT ... FOR
UPDATE``): a crash leaves either both or neither, and two monitors racing on the same model
cannot both store a window.

Non-finite floats (an infinite statistic, a NaN p-value) are stored as ``{"$float": "inf"}``
because PostgreSQL's JSON type refuses ``NaN`` and ``Infinity``; reading restores them.
"""

from __future__ import annotations

import builtins
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, func, insert, select, update

from kyklos.errors import MonitorError, NotFoundError
from kyklos.monitoring.results import CheckResult
from kyklos.store.db import Database
from kyklos.store.schema import monitor_results, monitor_state

__all__ = ["MonitorStore", "StoredResult", "decode_json", "encode_json"]

_FLOAT = "$float"


def encode_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``{"$float": "nan" | "inf" | "-inf"}``.

    >>> encode_json({"a": [1.0, float("inf")]})
    {'a': [1.0, {'$float': 'inf'}]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return {_FLOAT: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, Mapping):
        return {str(k): encode_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_json(v) for v in value]
    return value


def decode_json(value: Any) -> Any:
    """The inverse of :func:`encode_json`.

    >>> decode_json({"a": [1.0, {"$float": "-inf"}]})
    {'a': [1.0, -inf]}
    """
    if isinstance(value, dict):
        if len(value) == 1 and _FLOAT in value:
            return float(value[_FLOAT])
        return {k: decode_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_json(v) for v in value]
    return value


@dataclass(frozen=True)
class StoredResult:
    """A stored check: its id, whose it is, when it was stored, and the result."""

    id: int
    project: str
    model_name: str
    model_version: int | None
    created_at: dt.datetime
    result: CheckResult

    @property
    def verdict(self) -> str:
        return self.result.verdict

    def summary(self) -> dict[str, Any]:
        """The short form listed by ``kyklos monitor show``."""
        window = self.result.window
        drifted = [f.feature for f in self.result.features if f.drifted]
        return {
            "id": self.id,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "window": window.label,
            "window_start": window.start.isoformat() if window.start else None,
            "window_end": window.end.isoformat() if window.end else None,
            "n_rows": window.n_rows,
            "verdict": self.result.verdict,
            "share_drifted": self.result.share_drifted,
            "dataset_drift": self.result.dataset_drift,
            "drifted_features": drifted,
            "created_at": self.created_at.isoformat(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project": self.project,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "created_at": self.created_at.isoformat(),
            "result": encode_json(self.result.to_dict()),
        }


class MonitorStore:
    """The stored checks and the monitor cursor of one project's model."""

    def __init__(self, db: Database, *, project: str, model_name: str) -> None:
        self.db = db
        self.project = project
        self.model_name = model_name

    def __repr__(self) -> str:
        return f"MonitorStore({self.project!r}, {self.model_name!r}, db={self.db.url!r})"

    # -- the cursor ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any] | None:
        """The stored cursor document, or None before the first run."""
        with self.db.read() as conn:
            return self._state(conn)

    def commit(
        self,
        *,
        expected: Mapping[str, Any] | None,
        state: Mapping[str, Any],
        result: CheckResult | None = None,
    ) -> StoredResult | None:
        """In one transaction: check that the cursor is still ``expected`` (None: no cursor
        yet), store ``result`` (when given) and replace the cursor with ``state``.

        Raises :class:`~kyklos.errors.MonitorError` when another monitor moved the cursor
        meanwhile; nothing is written then.
        """
        with self.db.write() as conn:
            current = self._state(conn, lock=True)
            if current != (dict(expected) if expected is not None else None):
                raise MonitorError(
                    f"another monitor run of {self.project}/{self.model_name} moved the cursor "
                    "while this one was checking; nothing was stored. Hint: run "
                    "`kyklos monitor run` again (it continues where the other one stopped)"
                )
            stored = self._insert(conn, result) if result is not None else None
            self._write_state(conn, state, exists=current is not None)
        return stored

    def reset(self) -> None:
        """Forget the cursor: the next run starts from the beginning of the log again."""
        from sqlalchemy import delete

        with self.db.write() as conn:
            conn.execute(
                delete(monitor_state).where(
                    monitor_state.c.project == self.project,
                    monitor_state.c.model_name == self.model_name,
                )
            )

    # -- results ------------------------------------------------------------------------------
    def save(self, result: CheckResult) -> StoredResult:
        """Store one result on its own (``kyklos monitor run`` uses :meth:`commit`)."""
        with self.db.write() as conn:
            return self._insert(conn, result)

    def list(
        self, *, limit: int | None = 20, version: int | None = None
    ) -> builtins.list[StoredResult]:
        """The newest results first (of one model ``version``), at most ``limit``."""
        query = (
            select(monitor_results)
            .where(
                monitor_results.c.project == self.project,
                monitor_results.c.model_name == self.model_name,
            )
            .order_by(monitor_results.c.id.desc())
        )
        if version is not None:
            query = query.where(monitor_results.c.model_version == version)
        if limit is not None:
            query = query.limit(limit)
        with self.db.read() as conn:
            return [self._from_row(row) for row in conn.execute(query).mappings()]

    def latest(self, *, versions: int | None = 20) -> builtins.list[StoredResult]:
        """The newest result of each model version, the most recently checked version first
        (at most ``versions`` of them): what the monitor gauges of ``/metrics`` show."""
        newest = (
            select(func.max(monitor_results.c.id).label("id"))
            .where(
                monitor_results.c.project == self.project,
                monitor_results.c.model_name == self.model_name,
            )
            .group_by(monitor_results.c.model_version)
            .subquery()
        )
        query = (
            select(monitor_results)
            .join(newest, monitor_results.c.id == newest.c.id)
            .order_by(monitor_results.c.id.desc())
        )
        if versions is not None:
            query = query.limit(versions)
        with self.db.read() as conn:
            return [self._from_row(row) for row in conn.execute(query).mappings()]

    def history(
        self, version: int | None, *, before: int | None = None, limit: int = 50
    ) -> builtins.list[CheckResult]:
        """Earlier results of ``version``, oldest first (for the charts of a report)."""
        query = (
            select(monitor_results)
            .where(
                monitor_results.c.project == self.project,
                monitor_results.c.model_name == self.model_name,
                monitor_results.c.model_version == version,
            )
            .order_by(monitor_results.c.id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(monitor_results.c.id < before)
        with self.db.read() as conn:
            rows = list(conn.execute(query).mappings())
        return [self._from_row(row).result for row in reversed(rows)]

    def get(self, result_id: int) -> StoredResult:
        """One stored result by id; :class:`~kyklos.errors.NotFoundError` when there is none."""
        with self.db.read() as conn:
            row = (
                conn.execute(
                    select(monitor_results).where(
                        monitor_results.c.id == result_id,
                        monitor_results.c.project == self.project,
                        monitor_results.c.model_name == self.model_name,
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                total = conn.execute(
                    select(func.count()).where(
                        monitor_results.c.project == self.project,
                        monitor_results.c.model_name == self.model_name,
                    )
                ).scalar_one()
        if row is None:
            raise NotFoundError(
                f"there is no monitor result {result_id} of {self.project}/{self.model_name} "
                f"({total} stored). Hint: `kyklos monitor show` lists them"
            )
        return self._from_row(row)

    # -- internals ----------------------------------------------------------------------------
    def _state(self, conn: Connection, *, lock: bool = False) -> dict[str, Any] | None:
        query = select(monitor_state.c.cursor).where(
            monitor_state.c.project == self.project,
            monitor_state.c.model_name == self.model_name,
        )
        if lock and self.db.dialect == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        return None if row is None else dict(row.cursor)

    def _write_state(self, conn: Connection, state: Mapping[str, Any], *, exists: bool) -> None:
        now = dt.datetime.now(dt.UTC)
        if exists:
            conn.execute(
                update(monitor_state)
                .where(
                    monitor_state.c.project == self.project,
                    monitor_state.c.model_name == self.model_name,
                )
                .values(cursor=dict(state), updated_at=now)
            )
        else:
            conn.execute(
                insert(monitor_state).values(
                    project=self.project,
                    model_name=self.model_name,
                    cursor=dict(state),
                    updated_at=now,
                )
            )

    def _insert(self, conn: Connection, result: CheckResult) -> StoredResult:
        now = dt.datetime.now(dt.UTC)
        window = result.window
        share = result.share_drifted if math.isfinite(result.share_drifted) else 0.0
        row_id = conn.execute(
            insert(monitor_results)
            .values(
                project=self.project,
                model_name=self.model_name,
                model_version=window.model_version,
                window_start=window.start,
                window_end=window.end,
                n_rows=window.n_rows,
                verdict=result.verdict,
                share_drifted=share,
                dataset_drift=result.dataset_drift,
                result=encode_json(result.to_dict()),
                created_at=now,
            )
            .returning(monitor_results.c.id)
        ).scalar_one()
        return StoredResult(
            int(row_id), self.project, self.model_name, window.model_version, now, result
        )

    def _from_row(self, row: RowMapping) -> StoredResult:
        created = row["created_at"]
        if created.tzinfo is None:  # SQLite returns naive datetimes
            created = created.replace(tzinfo=dt.UTC)
        return StoredResult(
            id=int(row["id"]),
            project=str(row["project"]),
            model_name=str(row["model_name"]),
            model_version=None if row["model_version"] is None else int(row["model_version"]),
            created_at=created,
            result=CheckResult.from_dict(decode_json(row["result"])),
        )
