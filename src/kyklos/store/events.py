"""The append-only event log: what happened to a project, by whom, and why.

Every part of kyklos writes here — alias moves are in ``alias_history``, everything else (a
model swap in the server, an alert, a rollout, each step of a loop cycle) is an event. The
table refuses UPDATE and DELETE (triggers installed by the migration), so the timeline that
``kyklos events`` shows is the one that happened.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, or_, select

from kyklos.store.schema import events

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from kyklos.store.db import Database

__all__ = ["Event", "read_events", "record_event"]


@dataclass(frozen=True)
class Event:
    """One row of the event log."""

    id: int
    at: dt.datetime
    project: str
    kind: str
    subject: str | None
    actor: str
    message: str
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out = dict(vars(self))
        out["at"] = self.at.isoformat()
        return out


def record_event(
    conn: Connection,
    *,
    project: str,
    kind: str,
    actor: str,
    message: str,
    subject: str | None = None,
    payload: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> int:
    """Append one event inside the caller's transaction; returns its id."""
    return int(
        conn.execute(
            insert(events)
            .values(
                at=at or dt.datetime.now(dt.UTC),
                project=project,
                kind=kind,
                subject=subject,
                actor=actor,
                message=message,
                payload=payload or {},
            )
            .returning(events.c.id)
        ).scalar_one()
    )


def read_events(
    db: Database,
    project: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    kinds: Sequence[str] = (),
    subject: str | None = None,
    after_id: int | None = None,
    limit: int | None = 200,
) -> list[Event]:
    """Events of ``project``, oldest first; ``kinds`` match exactly or by prefix (``loop.``),
    ``subject`` matches a substring (``cycle 3``, ``v4``); ``limit`` keeps the newest."""
    query = select(events).where(events.c.project == project)
    if since is not None:
        query = query.where(events.c.at >= since)
    if until is not None:
        query = query.where(events.c.at < until)
    if after_id is not None:
        query = query.where(events.c.id > after_id)
    if kinds:
        query = query.where(
            or_(
                *(
                    events.c.kind.startswith(k) if k.endswith(".") else events.c.kind == k
                    for k in kinds
                )
            )
        )
    if subject is not None:
        query = query.where(events.c.subject.contains(subject))
    query = query.order_by(events.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    with db.read() as conn:
        rows = list(conn.execute(query).mappings())
    return [
        Event(
            id=int(r["id"]),
            at=_utc(r["at"]),
            project=r["project"],
            kind=r["kind"],
            subject=r["subject"],
            actor=r["actor"],
            message=r["message"],
            payload=dict(r["payload"] or {}),
        )
        for r in reversed(rows)
    ]


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
