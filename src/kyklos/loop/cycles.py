"""Loop cycles and the loop's own state, in the metadata DB.

A **cycle** is one trip round the loop: trigger → training data → run → gates → rollout →
decision → watch. Its row in ``loop_cycles`` moves through statuses with compare-and-set
updates (``WHERE id = ? AND status = ?``), so two controllers can never both advance it, and
a controller that dies leaves the row in the last status it reached::

    training → rollout → [awaiting_approval] → watching → kept | rolled_back
        ↘ rejected (gates, live figures, or no data)     ↘ superseded (a human moved the alias)
        ↘ abandoned (the controller died mid-way; nothing half-promoted is left behind)

At most one cycle is active per model: ``active`` is TRUE while it runs and NULL after, under a
unique constraint on ``(model_name, active)``.

The **loop state** (one row per project) holds the pause switch, the last monitor result and
dataset version already looked at, and the tick lease: one tick at a time per project, whatever
the number of server workers or ``kyklos loop`` processes.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from kyklos.errors import ConflictError, NotFoundError
from kyklos.store.events import record_event
from kyklos.store.schema import loop_cycles, loop_state

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, RowMapping

    from kyklos.store.db import Database

__all__ = ["ACTIVE", "ENDED", "Cycle", "CycleStore", "LoopState", "owner_id"]

ACTIVE = ("training", "rollout", "awaiting_approval", "watching")
ENDED = ("kept", "rolled_back", "rejected", "abandoned", "superseded", "failed")


def owner_id() -> str:
    """Who holds a lease: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Cycle:
    """One row of ``loop_cycles`` (see the module doc)."""

    id: int
    model_name: str
    status: str
    trigger: str
    evidence: dict[str, Any]
    champion_version: int | None
    dataset_version: str | None
    run_id: str | None
    challenger_version: int | None
    rollout_id: int | None
    figures: dict[str, Any]
    decision: str | None
    reason: str | None
    approved_by: str | None
    started_at: dt.datetime
    updated_at: dt.datetime
    ended_at: dt.datetime | None
    lease_owner: str | None = None
    lease_until: dt.datetime | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        out = dict(vars(self))
        for key in ("started_at", "updated_at", "ended_at", "lease_until"):
            value = out[key]
            out[key] = value.isoformat() if value is not None else None
        return out


@dataclass(frozen=True)
class LoopState:
    paused: bool
    state: dict[str, Any] = field(default_factory=dict)
    revision: int = 0
    lease_owner: str | None = None
    lease_until: dt.datetime | None = None


class CycleStore:
    """Cycles and loop state of one project and model (see the module doc)."""

    def __init__(self, db: Database, *, project: str, model_name: str) -> None:
        self.db = db
        self.project = project
        self.model_name = model_name

    # -- loop state ---------------------------------------------------------------------------
    def state(self) -> LoopState:
        self._ensure_state()
        with self.db.read() as conn:
            row = (
                conn.execute(select(loop_state).where(loop_state.c.project == self.project))
                .mappings()
                .one()
            )
        return LoopState(
            paused=bool(row["paused"]),
            state=dict(row["state"] or {}),
            revision=int(row["revision"]),
            lease_owner=row["lease_owner"],
            lease_until=_utc(row["lease_until"]),
        )

    def update_state(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Apply ``change`` to the state mapping with compare-and-set (retried on a race)."""
        for _ in range(20):
            current = self.state()
            new = dict(current.state)
            change(new)
            with self.db.write() as conn:
                done = conn.execute(
                    update(loop_state)
                    .where(
                        loop_state.c.project == self.project,
                        loop_state.c.revision == current.revision,
                    )
                    .values(state=new, revision=current.revision + 1, updated_at=_now())
                ).rowcount
            if done:
                return new
        raise ConflictError("the loop state kept changing under this update; try again")

    def set_paused(self, paused: bool, *, actor: str, reason: str = "") -> bool:
        """Pause or resume the loop; returns whether it changed (recorded as an event)."""
        self._ensure_state()
        with self.db.write() as conn:
            changed = conn.execute(
                update(loop_state)
                .where(loop_state.c.project == self.project, loop_state.c.paused != paused)
                .values(paused=paused, revision=loop_state.c.revision + 1, updated_at=_now())
            ).rowcount
            if changed:
                word = "paused" if paused else "resumed"
                self._event(
                    conn,
                    f"loop.{word}",
                    actor,
                    f"loop {word}" + (f": {reason}" if reason else ""),
                    {"reason": reason},
                    subject="loop",
                )
        return bool(changed)

    def acquire(self, owner: str, ttl: float) -> bool:
        """Take the tick lease for ``ttl`` seconds (renews one already held by ``owner``)."""
        self._ensure_state()
        now = _now()
        with self.db.write() as conn:
            taken = conn.execute(
                update(loop_state)
                .where(
                    loop_state.c.project == self.project,
                    (loop_state.c.lease_owner.is_(None))
                    | (loop_state.c.lease_until < now)
                    | (loop_state.c.lease_owner == owner),
                )
                .values(lease_owner=owner, lease_until=now + dt.timedelta(seconds=ttl))
            ).rowcount
        return bool(taken)

    def release(self, owner: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                update(loop_state)
                .where(loop_state.c.project == self.project, loop_state.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    # -- cycles -------------------------------------------------------------------------------
    def active(self) -> Cycle | None:
        with self.db.read() as conn:
            row = (
                conn.execute(
                    select(loop_cycles).where(
                        loop_cycles.c.model_name == self.model_name, loop_cycles.c.active.is_(True)
                    )
                )
                .mappings()
                .first()
            )
        return _cycle(row) if row is not None else None

    def get(self, cycle_id: int) -> Cycle:
        with self.db.read() as conn:
            row = (
                conn.execute(
                    select(loop_cycles).where(
                        loop_cycles.c.id == cycle_id, loop_cycles.c.project == self.project
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFoundError(
                f"loop cycle {cycle_id} does not exist in project {self.project!r}. "
                "Hint: list them with `kyklos loop status`"
            )
        return _cycle(row)

    def list(self, *, limit: int = 20) -> list[Cycle]:
        with self.db.read() as conn:
            rows = (
                conn.execute(
                    select(loop_cycles)
                    .where(loop_cycles.c.project == self.project)
                    .order_by(loop_cycles.c.id.desc())
                    .limit(limit)
                )
                .mappings()
                .all()
            )
        return [_cycle(r) for r in rows]

    def started_since(self, moment: dt.datetime, *, retrains_only: bool = True) -> int:
        """Cycles started at or after ``moment`` (the retrain budget)."""
        query = select(func.count()).where(
            loop_cycles.c.project == self.project, loop_cycles.c.started_at >= moment
        )
        if retrains_only:
            query = query.where(loop_cycles.c.trigger != "champion_changed")
        with self.db.read() as conn:
            return int(conn.execute(query).scalar_one())

    def last_started(self, *, retrains_only: bool = True) -> dt.datetime | None:
        query = select(func.max(loop_cycles.c.started_at)).where(
            loop_cycles.c.project == self.project
        )
        if retrains_only:
            query = query.where(loop_cycles.c.trigger != "champion_changed")
        with self.db.read() as conn:
            return _utc(conn.execute(query).scalar_one())

    def create(
        self,
        *,
        trigger: str,
        evidence: Mapping[str, Any],
        champion_version: int | None,
        actor: str,
        message: str,
        status: str = "training",
        challenger_version: int | None = None,
    ) -> Cycle:
        """Open a cycle (its ``loop.triggered`` event in the same transaction); raises
        :class:`~kyklos.errors.ConflictError` when another one is active."""
        now = _now()
        try:
            with self.db.write() as conn:
                new_id = conn.execute(
                    insert(loop_cycles)
                    .values(
                        project=self.project,
                        model_name=self.model_name,
                        status=status,
                        active=True,
                        trigger=trigger,
                        evidence=dict(evidence),
                        champion_version=champion_version,
                        challenger_version=challenger_version,
                        figures={},
                        started_at=now,
                        updated_at=now,
                    )
                    .returning(loop_cycles.c.id)
                ).scalar_one()
                self._event(
                    conn,
                    "loop.triggered",
                    actor,
                    message,
                    {"trigger": trigger, "evidence": dict(evidence)},
                    subject=f"cycle {new_id}",
                )
        except IntegrityError as exc:
            raise ConflictError(
                f"another loop cycle is active for {self.model_name!r}. "
                "Hint: see it with `kyklos loop status`"
            ) from exc
        return self.get(int(new_id))

    def advance(
        self,
        cycle: Cycle,
        status: str,
        *,
        event: tuple[str, str, str, Mapping[str, Any]] | None = None,
        **values: Any,
    ) -> Cycle:
        """Move ``cycle`` from its current status to ``status`` (compare-and-set), with
        ``values`` and an optional ``(kind, actor, message, payload)`` event, atomically.
        Raises :class:`~kyklos.errors.ConflictError` when someone else moved it first."""
        now = _now()
        if status in ENDED:
            values.setdefault("ended_at", now)
            values["active"] = None
        with self.db.write() as conn:
            moved = conn.execute(
                update(loop_cycles)
                .where(loop_cycles.c.id == cycle.id, loop_cycles.c.status == cycle.status)
                .values(status=status, updated_at=now, **values)
            ).rowcount
            if not moved:
                raise ConflictError(
                    f"loop cycle {cycle.id} is no longer {cycle.status!r}: another controller "
                    "or a human moved it"
                )
            if event is not None:
                kind, actor, message, payload = event
                self._event(conn, kind, actor, message, dict(payload), subject=f"cycle {cycle.id}")
        return self.get(cycle.id)

    def approve(self, cycle_id: int, *, actor: str, reason: str = "") -> Cycle:
        """Approve the promotion a cycle waits for (``retrain.approval``), recorded."""
        cycle = self.get(cycle_id)
        if cycle.status != "awaiting_approval":
            raise ConflictError(
                f"loop cycle {cycle_id} is {cycle.status!r}; only a cycle awaiting approval can "
                "be approved. Hint: `kyklos loop status` lists the cycles"
            )
        return self.advance(
            cycle,
            "awaiting_approval",
            approved_by=actor,
            event=(
                "loop.approved",
                actor,
                f"cycle {cycle_id}: promotion of v{cycle.challenger_version} approved by {actor}"
                + (f": {reason}" if reason else ""),
                {"cycle_id": cycle_id, "reason": reason},
            ),
        )

    def note(self, cycle: Cycle, *, figures: Mapping[str, Any]) -> None:
        """Record the latest live figures of a cycle without changing its status."""
        with self.db.write() as conn:
            conn.execute(
                update(loop_cycles)
                .where(loop_cycles.c.id == cycle.id, loop_cycles.c.status == cycle.status)
                .values(figures=dict(figures), updated_at=_now())
            )

    def lease(self, cycle: Cycle, owner: str | None, ttl: float = 0.0) -> None:
        """Mark ``cycle`` as being worked on by ``owner`` until now + ``ttl`` (None: free)."""
        until = _now() + dt.timedelta(seconds=ttl) if owner is not None else None
        with self.db.write() as conn:
            conn.execute(
                update(loop_cycles)
                .where(loop_cycles.c.id == cycle.id)
                .values(lease_owner=owner, lease_until=until)
            )

    def event(
        self,
        kind: str,
        actor: str,
        message: str,
        payload: Mapping[str, Any] | None = None,
        *,
        subject: str | None = None,
    ) -> None:
        with self.db.write() as conn:
            self._event(conn, kind, actor, message, dict(payload or {}), subject=subject)

    # -- helpers ------------------------------------------------------------------------------
    def _event(
        self,
        conn: Connection,
        kind: str,
        actor: str,
        message: str,
        payload: dict[str, Any],
        *,
        subject: str | None,
    ) -> None:
        record_event(
            conn,
            project=self.project,
            kind=kind,
            actor=actor,
            message=message,
            subject=subject,
            payload={"model_name": self.model_name, **payload},
        )

    def _ensure_state(self) -> None:
        with self.db.read() as conn:
            found = conn.execute(
                select(loop_state.c.project).where(loop_state.c.project == self.project)
            ).first()
        if found is not None:
            return
        try:
            with self.db.write() as conn:
                conn.execute(
                    insert(loop_state).values(
                        project=self.project, paused=False, state={}, revision=0, updated_at=_now()
                    )
                )
        except IntegrityError:
            pass  # created by someone else meanwhile


def _cycle(row: RowMapping) -> Cycle:
    started = _utc(row["started_at"])
    updated = _utc(row["updated_at"])
    assert started is not None and updated is not None
    return Cycle(
        id=int(row["id"]),
        model_name=row["model_name"],
        status=row["status"],
        trigger=row["trigger"],
        evidence=dict(row["evidence"] or {}),
        champion_version=row["champion_version"],
        dataset_version=row["dataset_version"],
        run_id=row["run_id"],
        challenger_version=row["challenger_version"],
        rollout_id=row["rollout_id"],
        figures=dict(row["figures"] or {}),
        decision=row["decision"],
        reason=row["reason"],
        approved_by=row["approved_by"],
        started_at=started,
        updated_at=updated,
        ended_at=_utc(row["ended_at"]),
        lease_owner=row["lease_owner"],
        lease_until=_utc(row["lease_until"]),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
