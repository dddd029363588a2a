"""Aliases (``champion``, ``challenger``), promotion, rollback and their append-only history.

The source of truth is kyklos's metadata DB: the ``aliases`` table holds each alias's version
and a ``revision``, and every change is a compare-and-set on that revision plus an
``alias_history`` row (and an ``events`` row) **in the same transaction**. Inside that
transaction, once the compare-and-set has won, the change is mirrored to the MLflow registry's
alias, so MLflow sees the changes in the order the DB committed them; if MLflow refuses, the
transaction rolls back and nothing changed.

Concurrency: two promotions at once never leave two champions or a broken history. The loser
of a compare-and-set **retries on fresh state** (a promotion says "make v5 the champion", which
is still meaningful after someone else's change, and the history stays a chain in which each
change's ``from_version`` is the previous change's ``to_version``). After
:data:`MAX_ATTEMPTS` lost races it raises :class:`~kyklos.errors.ConflictError`. On SQLite,
write transactions start with ``BEGIN IMMEDIATE`` and already serialise; on PostgreSQL the
compare-and-set does the work. Two rollbacks at once therefore go back two steps: each one is
applied, in order, to the state the other left.

Rollback follows a stack: promotions push the new champion, rollbacks pop. Rolling back twice
goes two champions back (v1 → v2 → v3, rollback → v2, rollback → v1), not back and forth.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from kyklos.errors import ConflictError, GateFailed, RegistryError
from kyklos.registry.models import as_utc
from kyklos.registry.provenance import current_actor
from kyklos.store import Database
from kyklos.store.events import record_event
from kyklos.store.schema import alias_history, aliases

if TYPE_CHECKING:
    from kyklos.registry.models import ModelRegistry, ModelVersion

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "MAX_ATTEMPTS",
    "AliasChange",
    "clear_alias",
    "history",
    "promote",
    "rollback",
    "set_alias",
    "sync_mlflow_aliases",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
MAX_ATTEMPTS = 20
NO_REASON = "(no reason given)"
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class AliasChange:
    """One change of an alias, as recorded in ``alias_history``.

    ``action`` is ``promote``, ``rollback``, ``set`` or ``clear``; ``unchanged`` (with
    ``id=None``) is returned, not recorded, when the alias already pointed at the version.
    ``forced`` is True when a promotion overrode failed gates.
    """

    id: int | None
    model_name: str
    alias: str
    from_version: int | None
    to_version: int | None
    action: str
    actor: str
    reason: str
    forced: bool
    at: dt.datetime

    @property
    def changed(self) -> bool:
        return self.id is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model_name": self.model_name,
            "alias": self.alias,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "action": self.action,
            "actor": self.actor,
            "reason": self.reason,
            "forced": self.forced,
            "at": self.at.isoformat(),
        }


def promote(
    registry: ModelRegistry,
    version_ref: int | str,
    *,
    alias: str = CHAMPION,
    actor: str | None = None,
    reason: str = "",
    force: bool = False,
) -> AliasChange:
    """Point ``alias`` (default ``champion``) at a version that passed its gates.

    A version that failed its gates is refused with :class:`~kyklos.errors.GateFailed` unless
    ``force=True`` and a non-empty ``reason`` are given (recorded with ``forced=True``).
    Promoting the challenger to champion clears the challenger alias (recorded too). Promoting
    the version that already holds the alias changes nothing and returns ``action="unchanged"``.
    """
    _check_alias(alias)
    who = current_actor(actor)
    target = registry.get(version_ref)
    forced = False
    if not target.gates_passed:
        failed = "; ".join(f"{r.gate} ({r.reason})" for r in target.gate_report.failed)
        if not force:
            _record_refusal(registry, target, alias, who, failed)
            raise GateFailed(
                f"v{target.version} of {registry.model_name!r} failed its gates: {failed}. "
                f"Hint: promote a version that passed, or pass --force with --reason TEXT "
                "to override (recorded in the alias history)"
            )
        if not reason.strip():
            raise GateFailed(
                f"forcing v{target.version} past its failed gates needs a reason. "
                "Hint: add --reason 'why this is safe' (it is recorded in the alias history)"
            )
        forced = True

    decide = _moving_to(registry, alias, target.version)

    change = _change(
        registry,
        alias,
        decide,
        action="promote" if alias == CHAMPION else "set",
        actor=who,
        reason=reason.strip() or NO_REASON,
        forced=forced,
    )
    if alias == CHAMPION and change.changed:
        _end_rollout_of(registry, target.version, who)
    return change


def _end_rollout_of(registry: ModelRegistry, version: int, actor: str) -> None:
    """Promoting the challenger of an active rollout ends that rollout as promoted."""
    from kyklos.errors import NotFoundError
    from kyklos.registry.rollouts import active_rollout, end_rollout

    rollout = active_rollout(registry.db, registry.model_name)
    if rollout is None or rollout.challenger_version != version:
        return
    with contextlib.suppress(NotFoundError):  # ended by someone else meanwhile
        end_rollout(
            registry,
            "promoted",
            actor=actor,
            reason=f"v{version} promoted to champion",
            clear_challenger=False,
        )


def rollback(registry: ModelRegistry, *, actor: str | None = None, reason: str = "") -> AliasChange:
    """Give the champion alias back to the previous champion, in one step, recorded.

    Stack semantics over the history: promotions push, rollbacks pop, so a second rollback goes
    one further back. Raises :class:`~kyklos.errors.RegistryError` when there is no previous
    champion to return to.
    """

    def decide(conn: Connection, current: int | None) -> int | None:
        stack = _champion_stack(conn, registry.model_name)
        if current is None:
            raise RegistryError(
                f"model {registry.model_name!r} has no champion, so there is nothing to roll back. "
                "Hint: promote a version with `kyklos models promote VERSION`"
            )
        if len(stack) < 2:
            raise RegistryError(
                f"nothing to roll back to: v{current} is the first champion of "
                f"{registry.model_name!r} (or every earlier one was already rolled back). "
                "Hint: promote another version with `kyklos models promote VERSION`"
            )
        return stack[-2]

    return _change(
        registry,
        CHAMPION,
        decide,
        action="rollback",
        actor=current_actor(actor),
        reason=reason.strip() or NO_REASON,
        forced=False,
    )


def set_alias(
    registry: ModelRegistry,
    version_ref: int | str,
    *,
    alias: str = CHALLENGER,
    actor: str | None = None,
    reason: str = "",
) -> AliasChange:
    """Point a non-champion alias (``challenger`` by default) at a version, recorded as ``set``.

    Gates are not checked here (use :func:`promote` for that); the champion changes only
    through :func:`promote` and :func:`rollback`.
    """
    _check_alias(alias)
    if alias == CHAMPION:
        raise RegistryError(
            "the champion alias changes only by promotion or rollback. "
            "Hint: use promote(...) / `kyklos models promote`"
        )
    target = registry.get(version_ref)

    decide = _moving_to(registry, alias, target.version)

    return _change(
        registry,
        alias,
        decide,
        action="set",
        actor=current_actor(actor),
        reason=reason.strip() or NO_REASON,
        forced=False,
    )


def _moving_to(
    registry: ModelRegistry, alias: str, version: int
) -> Callable[[Connection, int | None], int | None]:
    """The decision of promote/set_alias: move ``alias`` to ``version``, except that the
    champion's version cannot also become the challenger."""

    def decide(conn: Connection, current: int | None) -> int | None:
        if alias == CHALLENGER and _alias_version(conn, registry.model_name, CHAMPION) == version:
            raise RegistryError(
                f"v{version} is the champion of {registry.model_name!r}; a challenger "
                "must be another version"
            )
        return version

    return decide


def clear_alias(
    registry: ModelRegistry, alias: str = CHALLENGER, *, actor: str | None = None, reason: str = ""
) -> AliasChange:
    """Remove a non-champion alias (e.g. a rejected challenger), recorded as ``clear``."""
    _check_alias(alias)
    if alias == CHAMPION:
        raise RegistryError(
            "the champion cannot be cleared. Hint: promote another version, or roll back"
        )
    return _change(
        registry,
        alias,
        lambda conn, current: None,
        action="clear",
        actor=current_actor(actor),
        reason=reason.strip() or NO_REASON,
        forced=False,
    )


def history(db: Database, model_name: str, *, alias: str | None = None) -> list[AliasChange]:
    """Every recorded alias change of ``model_name`` (optionally of one alias), oldest first."""
    query = select(alias_history).where(alias_history.c.model_name == model_name)
    if alias is not None:
        query = query.where(alias_history.c.alias == alias)
    with db.read() as conn:
        rows = conn.execute(query.order_by(alias_history.c.id)).mappings().all()
    return [
        AliasChange(
            id=int(r["id"]),
            model_name=str(r["model_name"]),
            alias=str(r["alias"]),
            from_version=r["from_version"],
            to_version=r["to_version"],
            action=str(r["action"]),
            actor=str(r["actor"]),
            reason=str(r["reason"]),
            forced=bool(r["forced"]),
            at=as_utc(r["at"]),
        )
        for r in rows
    ]


def sync_mlflow_aliases(registry: ModelRegistry) -> dict[str, int | None]:
    """Make MLflow's aliases of the model match the metadata DB (the source of truth).

    Needed only to repair a mirror left behind by a crash between MLflow's update and the DB
    commit; returns the aliases it set (version) or removed (None).
    """
    with registry.db.read() as conn:
        rows = conn.execute(
            select(aliases.c.alias, aliases.c.version).where(
                aliases.c.model_name == registry.model_name
            )
        ).all()
    state = {str(r.alias): (int(r.version) if r.version is not None else None) for r in rows}
    for name, version in state.items():
        _mirror(registry, name, version)
    return state


# -- the compare-and-set --------------------------------------------------------------------
class _LostRace(Exception):
    """The alias changed between our read and our compare-and-set."""


def _change(
    registry: ModelRegistry,
    alias: str,
    decide: Callable[[Connection, int | None], int | None],
    *,
    action: str,
    actor: str,
    reason: str,
    forced: bool,
) -> AliasChange:
    _ensure_rows(
        registry.db, registry.model_name, (alias, CHALLENGER) if alias == CHAMPION else (alias,)
    )
    for attempt in range(MAX_ATTEMPTS):
        mirrored = False
        try:
            with registry.db.write() as conn:
                current, revision = _read(conn, registry.model_name, alias)
                target = decide(conn, current)
                now = dt.datetime.now(dt.UTC)
                if target == current:
                    return AliasChange(
                        None, registry.model_name, alias, current, target, "unchanged",
                        actor, reason, False, now,
                    )  # fmt: skip
                change = _write(
                    conn, registry, alias, revision, current, target,
                    action=action, actor=actor, reason=reason, forced=forced, at=now,
                )  # fmt: skip
                cleared = None
                if alias == CHAMPION and target is not None:
                    cleared = _clear_challenger_if(conn, registry, target, actor=actor, at=now)
                mirrored = True
                _mirror(registry, alias, target)
                if cleared is not None:
                    _mirror(registry, CHALLENGER, None)
            return change
        except _LostRace:
            time.sleep(random.uniform(0.002, 0.01) * (attempt + 1))
        except BaseException:
            if mirrored:  # MLflow may be ahead of the rolled-back DB: put it back
                _best_effort_sync(registry)
            raise
    raise ConflictError(
        f"could not change alias {alias!r} of model {registry.model_name!r}: concurrent changes "
        f"won {MAX_ATTEMPTS} times in a row. Hint: retry; see `kyklos models history`"
    )


def _write(
    conn: Connection,
    registry: ModelRegistry,
    alias: str,
    revision: int,
    current: int | None,
    target: int | None,
    *,
    action: str,
    actor: str,
    reason: str,
    forced: bool,
    at: dt.datetime,
) -> AliasChange:
    won = conn.execute(
        update(aliases)
        .where(
            aliases.c.model_name == registry.model_name,
            aliases.c.alias == alias,
            aliases.c.revision == revision,
        )
        .values(version=target, revision=revision + 1)
    ).rowcount
    if won != 1:
        raise _LostRace
    row_id = conn.execute(
        insert(alias_history)
        .values(
            model_name=registry.model_name,
            alias=alias,
            from_version=current,
            to_version=target,
            action=action,
            actor=actor,
            reason=reason,
            forced=forced,
            at=at,
        )
        .returning(alias_history.c.id)
    ).scalar_one()
    what = {
        "promote": f"promoted v{target} to {alias}",
        "rollback": f"rolled {alias} back from v{current} to v{target}",
        "set": f"set {alias} to v{target}",
        "clear": f"cleared {alias} (was v{current})",
    }.get(action, f"{action} {alias}")
    record_event(
        conn,
        project=registry.project,
        kind=f"alias.{action}",
        actor=actor,
        message=f"{what}{' (forced past failed gates)' if forced else ''}: {reason}",
        subject=f"{registry.model_name} {alias}",
        at=at,
        payload={
            "model_name": registry.model_name,
            "alias": alias,
            "from_version": current,
            "to_version": target,
            "forced": forced,
            "history_id": int(row_id),
        },
    )
    return AliasChange(
        int(row_id), registry.model_name, alias, current, target, action, actor, reason, forced, at
    )


def _clear_challenger_if(
    conn: Connection, registry: ModelRegistry, version: int, *, actor: str, at: dt.datetime
) -> AliasChange | None:
    current, revision = _read(conn, registry.model_name, CHALLENGER)
    if current != version:
        return None
    return _write(
        conn, registry, CHALLENGER, revision, current, None,
        action="clear", actor=actor, reason=f"v{version} became the champion",
        forced=False, at=at,
    )  # fmt: skip


def _read(conn: Connection, model_name: str, alias: str) -> tuple[int | None, int]:
    row = conn.execute(
        select(aliases.c.version, aliases.c.revision).where(
            aliases.c.model_name == model_name, aliases.c.alias == alias
        )
    ).one()
    return (int(row.version) if row.version is not None else None), int(row.revision)


def _alias_version(conn: Connection, model_name: str, alias: str) -> int | None:
    row = conn.execute(
        select(aliases.c.version).where(
            aliases.c.model_name == model_name, aliases.c.alias == alias
        )
    ).first()
    return int(row.version) if row is not None and row.version is not None else None


def _ensure_rows(db: Database, model_name: str, names: tuple[str, ...]) -> None:
    """Create the aliases' rows (unset, revision 0) in their own short transaction, so that every
    change afterwards is a plain compare-and-set UPDATE (no insert races, no lock-order cycles)."""
    with db.read() as conn:
        present = {
            str(r.alias)
            for r in conn.execute(
                select(aliases.c.alias).where(
                    aliases.c.model_name == model_name, aliases.c.alias.in_(names)
                )
            )
        }
    missing = sorted(set(names) - present)
    if not missing:
        return
    with db.write() as conn:
        for name in missing:
            stmt = _insert_ignore(db).values(
                model_name=model_name, alias=name, version=None, revision=0
            )
            conn.execute(stmt)


def _insert_ignore(db: Database) -> Any:
    if db.dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(aliases).on_conflict_do_nothing()
    if db.dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(aliases).on_conflict_do_nothing()
    raise RegistryError(f"unsupported metadata DB dialect {db.dialect!r}; use SQLite or PostgreSQL")


def _champion_stack(conn: Connection, model_name: str) -> list[int]:
    """The champions in order, as promotions pushed them and rollbacks popped them."""
    stack: list[int] = []
    rows = conn.execute(
        select(alias_history.c.action, alias_history.c.to_version)
        .where(alias_history.c.model_name == model_name, alias_history.c.alias == CHAMPION)
        .order_by(alias_history.c.id)
    )
    for r in rows:
        if r.action == "rollback":
            if stack:
                stack.pop()
        elif r.to_version is not None:
            stack.append(int(r.to_version))
    return stack


def _mirror(registry: ModelRegistry, alias: str, version: int | None) -> None:
    from mlflow.exceptions import MlflowException

    client = registry.tracker.client
    with registry.tracker.errors(f"mirror alias {alias!r} of {registry.model_name!r} to"):
        if version is None:
            try:
                client.delete_registered_model_alias(registry.model_name, alias)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
        else:
            client.set_registered_model_alias(registry.model_name, alias, str(version))


def _best_effort_sync(registry: ModelRegistry) -> None:
    try:
        sync_mlflow_aliases(registry)
    except Exception:  # pragma: no cover - the original error is the one to report
        return


def _record_refusal(
    registry: ModelRegistry, target: ModelVersion, alias: str, actor: str, failed: str
) -> None:
    with registry.db.write() as conn:
        record_event(
            conn,
            project=registry.project,
            kind="promotion.refused",
            actor=actor,
            message=f"refused to make v{target.version} {alias}: failed gates: {failed}",
            subject=f"{registry.model_name} v{target.version}",
            payload={
                "model_name": registry.model_name,
                "version": target.version,
                "alias": alias,
                "failed_gates": [r.to_dict() for r in target.gate_report.failed],
            },
        )


def _check_alias(alias: str) -> None:
    if not _ALIAS.match(alias) or alias == "latest" or re.fullmatch(r"v\d+", alias):
        raise RegistryError(
            f"{alias!r} is not a valid alias name: use lowercase letters, digits, '_' or '-', "
            "starting with a letter (not 'latest' or 'v<number>'), e.g. 'champion', 'challenger'"
        )
