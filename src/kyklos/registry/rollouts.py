"""Rollouts: the challenger's share of live traffic, as the server should route it.

A rollout is one row of the ``rollouts`` table: which challenger version takes part, how
(``shadow``: it sees a copy of every request and its answers are logged, never returned;
``canary``: it answers ``fraction`` of the requests, sticky by routing key), since when, and
how it ended (``promoted``, ``rejected``, ``stopped``). At most one rollout is active per model:
the unique constraint on ``(model_name, active)`` holds it in the database, so two processes
starting one at the same time leave exactly one.

The server polls :func:`active_rollout` together with the champion alias and serves the
challenger arm while it is active. Starting a rollout also points the ``challenger`` alias at
its version; ending it as rejected clears that alias.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from kyklos.config.actor import current_actor
from kyklos.errors import ConflictError, NotFoundError, RegistryError
from kyklos.store.events import record_event
from kyklos.store.schema import rollouts

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, RowMapping

    from kyklos.registry.models import ModelRegistry
    from kyklos.store import Database

__all__ = [
    "ENDINGS",
    "STRATEGIES",
    "Rollout",
    "active_rollout",
    "end_rollout",
    "list_rollouts",
    "start_rollout",
]

STRATEGIES = ("shadow", "canary")
ENDINGS = ("promoted", "rejected", "stopped")


@dataclass(frozen=True)
class Rollout:
    """One rollout (see the module doc)."""

    id: int
    model_name: str
    challenger_version: int
    champion_version: int | None
    strategy: str
    fraction: float
    status: str
    started_at: dt.datetime
    started_by: str
    ended_at: dt.datetime | None = None
    ended_by: str | None = None
    reason: str | None = None
    cycle_id: int | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"

    def to_dict(self) -> dict[str, Any]:
        out = dict(vars(self))
        out["started_at"] = self.started_at.isoformat()
        out["ended_at"] = self.ended_at.isoformat() if self.ended_at else None
        return out


def start_rollout(
    registry: ModelRegistry,
    version_ref: int | str = "challenger",
    *,
    strategy: str = "canary",
    fraction: float = 0.1,
    actor: str | None = None,
    reason: str = "",
    cycle_id: int | None = None,
) -> Rollout:
    """Start routing live traffic to ``version_ref`` (default: the ``challenger`` alias).

    Points the ``challenger`` alias at the version when it is not there yet. Raises
    :class:`~kyklos.errors.ConflictError` when a rollout is already active for the model.
    """
    from kyklos.registry.aliases import set_alias

    if strategy not in STRATEGIES:
        raise RegistryError(
            f"rollout strategy {strategy!r} is unknown; expected one of {', '.join(STRATEGIES)}"
        )
    if not 0.0 <= fraction <= 1.0 or fraction != fraction:
        raise RegistryError(f"rollout fraction {fraction!r} must be between 0 and 1")
    who = current_actor(actor)
    target = registry.get(version_ref)
    champion = registry.champion()
    if champion is None:
        raise RegistryError(
            f"model {registry.model_name!r} has no champion to compare a challenger with. "
            "Hint: promote a first version with `kyklos models promote VERSION`"
        )
    if champion.version == target.version:
        raise RegistryError(
            f"v{target.version} is the champion of {registry.model_name!r}; a rollout needs "
            "another version as challenger"
        )
    current = active_rollout(registry.db, registry.model_name)
    if current is not None:
        raise ConflictError(
            f"a {current.strategy} rollout of v{current.challenger_version} is already active "
            f"for {registry.model_name!r} (since {current.started_at:%Y-%m-%d %H:%M:%S}). "
            "Hint: end it with `kyklos rollout stop` first"
        )
    if registry.aliases().get("challenger") != target.version:
        set_alias(registry, target.version, alias="challenger", actor=who, reason="rollout")
    now = dt.datetime.now(dt.UTC)
    try:
        with registry.db.write() as conn:
            new_id = conn.execute(
                insert(rollouts)
                .values(
                    project=registry.project,
                    model_name=registry.model_name,
                    challenger_version=target.version,
                    champion_version=champion.version,
                    strategy=strategy,
                    fraction=float(fraction),
                    status="active",
                    active=True,
                    started_at=now,
                    started_by=who,
                    reason=reason or None,
                    cycle_id=cycle_id,
                )
                .returning(rollouts.c.id)
            ).scalar_one()
            _event(
                conn,
                registry,
                "rollout.started",
                who,
                f"{strategy} rollout of v{target.version} against champion v{champion.version}"
                + (f" ({fraction:.0%} of requests)" if strategy == "canary" else ""),
                {
                    "rollout_id": new_id,
                    "strategy": strategy,
                    "fraction": fraction,
                    "challenger": target.version,
                    "champion": champion.version,
                    "cycle_id": cycle_id,
                },
            )
    except IntegrityError as exc:
        raise ConflictError(
            f"another rollout became active for {registry.model_name!r} at the same time. "
            "Hint: see it with `kyklos rollout status`"
        ) from exc
    return get_rollout(registry.db, int(new_id))


def end_rollout(
    registry: ModelRegistry,
    status: str = "stopped",
    *,
    actor: str | None = None,
    reason: str = "",
    clear_challenger: bool | None = None,
) -> Rollout:
    """End the active rollout as ``promoted``, ``rejected`` or ``stopped``.

    A rejected rollout clears the ``challenger`` alias (``clear_challenger`` overrides).
    Raises :class:`~kyklos.errors.NotFoundError` when no rollout is active.
    """
    from kyklos.registry.aliases import clear_alias

    if status not in ENDINGS:
        raise RegistryError(f"a rollout ends as one of {', '.join(ENDINGS)}, not {status!r}")
    who = current_actor(actor)
    now = dt.datetime.now(dt.UTC)
    with registry.db.write() as conn:
        row = _active_row(conn, registry.model_name)
        if row is None:
            raise NotFoundError(
                f"no rollout is active for {registry.model_name!r}. "
                "Hint: start one with `kyklos rollout start`"
            )
        conn.execute(
            update(rollouts)
            .where(rollouts.c.id == row.id, rollouts.c.active.is_(True))
            .values(status=status, active=None, ended_at=now, ended_by=who, reason=reason or None)
        )
        _event(
            conn,
            registry,
            f"rollout.{status}",
            who,
            f"{row.strategy} rollout of v{row.challenger_version} {status}"
            + (f": {reason}" if reason else ""),
            {"rollout_id": row.id, "challenger": row.challenger_version, "cycle_id": row.cycle_id},
        )
    clear = status == "rejected" if clear_challenger is None else clear_challenger
    if clear and registry.aliases().get("challenger") == row.challenger_version:
        clear_alias(registry, "challenger", actor=who, reason=reason or f"rollout {status}")
    return get_rollout(registry.db, int(row.id))


def active_rollout(db: Database, model_name: str) -> Rollout | None:
    """The active rollout of ``model_name``, or None (one indexed SELECT)."""
    with db.read() as conn:
        row = _active_row(conn, model_name)
    return _from_row(row) if row is not None else None


def get_rollout(db: Database, rollout_id: int) -> Rollout:
    with db.read() as conn:
        row = conn.execute(select(rollouts).where(rollouts.c.id == rollout_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"rollout {rollout_id} does not exist")
    return _from_row(row)


def list_rollouts(db: Database, model_name: str, *, limit: int = 20) -> list[Rollout]:
    """The latest rollouts of ``model_name``, newest first."""
    with db.read() as conn:
        rows = (
            conn.execute(
                select(rollouts)
                .where(rollouts.c.model_name == model_name)
                .order_by(rollouts.c.id.desc())
                .limit(limit)
            )
            .mappings()
            .all()
        )
    return [_from_row(r) for r in rows]


def _active_row(conn: Connection, model_name: str) -> Any:
    return (
        conn.execute(
            select(rollouts).where(rollouts.c.model_name == model_name, rollouts.c.active.is_(True))
        )
        .mappings()
        .first()
    )


def _from_row(row: RowMapping) -> Rollout:
    from kyklos.registry.models import as_utc

    return Rollout(
        id=int(row["id"]),
        model_name=row["model_name"],
        challenger_version=int(row["challenger_version"]),
        champion_version=row["champion_version"],
        strategy=row["strategy"],
        fraction=float(row["fraction"]),
        status=row["status"],
        started_at=as_utc(row["started_at"]),
        started_by=row["started_by"],
        ended_at=as_utc(row["ended_at"]) if row["ended_at"] is not None else None,
        ended_by=row["ended_by"],
        reason=row["reason"],
        cycle_id=row["cycle_id"],
    )


def _event(
    conn: Connection,
    registry: ModelRegistry,
    kind: str,
    actor: str,
    message: str,
    payload: dict[str, Any],
) -> None:
    record_event(
        conn,
        project=registry.project,
        kind=kind,
        actor=actor,
        message=message,
        subject=f"{registry.model_name} v{payload.get('challenger')}",
        payload={"model_name": registry.model_name, **payload},
    )
