"""Promotion, rollback and the alias history (semantics, on SQLite; backends in test_alias_backends)."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select

from kyklos.errors import GateFailed, NotFoundError, RegistryError
from kyklos.registry import (
    ModelRegistry,
    clear_alias,
    history,
    promote,
    rollback,
    set_alias,
    sync_mlflow_aliases,
)
from kyklos.store.schema import alias_history, events

from .conftest import MLFLOW_IMPORT_WARNINGS, RegisterFn

pytestmark = list(MLFLOW_IMPORT_WARNINGS)


def mlflow_aliases(registry: ModelRegistry) -> dict[str, int]:
    model = registry.tracker.client.get_registered_model(registry.model_name)
    return {alias: int(version) for alias, version in model.aliases.items()}


def champion_of(registry: ModelRegistry) -> int | None:
    champion = registry.champion()
    return champion.version if champion else None


def test_promote_rollback_is_a_stack(registry: ModelRegistry, register: RegisterFn) -> None:
    for _ in range(4):
        register()
    steps = []
    for ref in (1, 2, 3):
        change = promote(registry, ref, actor="alice", reason=f"ship v{ref}")
        steps.append((change.action, change.from_version, change.to_version))
        assert mlflow_aliases(registry) == {"champion": ref}
    for expected in (2, 1):
        change = rollback(registry, actor="bob", reason="worse in production")
        steps.append((change.action, change.from_version, change.to_version))
        assert champion_of(registry) == expected
        assert mlflow_aliases(registry) == {"champion": expected}
    with pytest.raises(RegistryError, match="nothing to roll back to: v1 is the first champion"):
        rollback(registry, reason="again")
    promote(registry, 4, reason="new model")
    rollback(registry, reason="v4 is bad")  # back to v1, not to v2 or v3
    assert champion_of(registry) == 1
    assert steps == [
        ("promote", None, 1),
        ("promote", 1, 2),
        ("promote", 2, 3),
        ("rollback", 3, 2),
        ("rollback", 2, 1),
    ]
    recorded = history(registry.db, "flights")
    assert [(c.from_version, c.to_version) for c in recorded][-2:] == [(1, 4), (4, 1)]
    assert [c.actor for c in recorded[:5]] == ["alice"] * 3 + ["bob"] * 2
    assert recorded[3].reason == "worse in production"
    assert all(c.at.tzinfo is not None for c in recorded)
    for before, after in itertools.pairwise(recorded):
        assert after.from_version == before.to_version


def test_rollback_without_a_champion(registry: ModelRegistry, register: RegisterFn) -> None:
    register()
    with pytest.raises(RegistryError, match="has no champion, so there is nothing to roll back"):
        rollback(registry, reason="x")


def test_failed_gates_refuse_promotion(registry: ModelRegistry, register: RegisterFn) -> None:
    register(roc_auc=0.9)
    failing = register(roc_auc=0.7)
    promote(registry, 1, reason="first")
    with pytest.raises(
        GateFailed, match=r"v2 of 'flights' failed its gates: roc_auc >= 0.80 .*--force"
    ):
        promote(registry, failing.version, reason="try")
    with pytest.raises(GateFailed, match="needs a reason"):
        promote(registry, failing.version, force=True, reason="  ")
    assert champion_of(registry) == 1
    assert len(history(registry.db, "flights")) == 1
    with registry.db.read() as conn:
        refused = (
            conn.execute(select(events).where(events.c.kind == "promotion.refused"))
            .mappings()
            .all()
        )
    assert len(refused) == 2 - 1  # the reason-less force is refused before anything is recorded
    assert refused[0]["payload"]["failed_gates"][0]["gate"] == "roc_auc >= 0.80"

    change = promote(
        registry, failing.version, force=True, reason="hotfix: v1 leaks a feature", actor="carol"
    )
    assert change.forced is True
    last = history(registry.db, "flights")[-1]
    assert (last.to_version, last.forced, last.reason, last.actor) == (
        2,
        True,
        "hotfix: v1 leaks a feature",
        "carol",
    )
    with registry.db.read() as conn:
        message = (
            conn.execute(select(events.c.message).where(events.c.kind == "alias.promote"))
            .scalars()
            .all()[-1]
        )
    assert "forced past failed gates" in message


def test_force_on_a_passing_version_is_not_recorded_as_forced(
    registry: ModelRegistry, register: RegisterFn
) -> None:
    register()
    assert promote(registry, 1, force=True, reason="").forced is False


def test_promoting_the_challenger_clears_it(registry: ModelRegistry, register: RegisterFn) -> None:
    register()
    register()
    promote(registry, 1, reason="first")
    set_alias(registry, 2, alias="challenger", reason="candidate")
    assert registry.get(2).aliases == ("challenger",)
    assert mlflow_aliases(registry) == {"champion": 1, "challenger": 2}
    promote(registry, 2, reason="won the canary")
    assert registry.aliases() == {"champion": 2}
    assert mlflow_aliases(registry) == {"champion": 2}
    last = history(registry.db, "flights", alias="challenger")[-1]
    assert (last.action, last.from_version, last.to_version) == ("clear", 2, None)
    assert last.reason == "v2 became the champion"


def test_promoting_the_current_champion_changes_nothing(
    registry: ModelRegistry, register: RegisterFn
) -> None:
    register()
    promote(registry, 1, reason="first")
    again = promote(registry, "v1", reason="again")
    assert again.action == "unchanged" and again.changed is False and again.id is None
    assert len(history(registry.db, "flights")) == 1


def test_challenger_must_differ_from_champion(
    registry: ModelRegistry, register: RegisterFn
) -> None:
    register()
    promote(registry, 1, reason="first")
    with pytest.raises(RegistryError, match="v1 is the champion"):
        set_alias(registry, 1, alias="challenger")
    with pytest.raises(RegistryError, match="v1 is the champion"):
        promote(registry, 1, alias="challenger")


def test_alias_rules(registry: ModelRegistry, register: RegisterFn) -> None:
    register()
    with pytest.raises(RegistryError, match="only by promotion or rollback"):
        set_alias(registry, 1, alias="champion")
    with pytest.raises(RegistryError, match="cannot be cleared"):
        clear_alias(registry, "champion")
    for bad in ("latest", "v2", "Has Space", ""):
        with pytest.raises(RegistryError, match="not a valid alias name"):
            set_alias(registry, 1, alias=bad)
    with pytest.raises(NotFoundError, match="existing versions: v1"):
        promote(registry, 9, reason="x")


def test_clear_challenger(registry: ModelRegistry, register: RegisterFn) -> None:
    register()
    register()
    promote(registry, 1, reason="first")
    set_alias(registry, 2, reason="candidate")
    change = clear_alias(registry, reason="lost the canary")
    assert (change.action, change.from_version, change.to_version) == ("clear", 2, None)
    assert mlflow_aliases(registry) == {"champion": 1}
    assert clear_alias(registry).action == "unchanged"


def test_actor_defaults_to_the_environment(
    registry: ModelRegistry, register: RegisterFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    register()
    monkeypatch.setenv("KYKLOS_ACTOR", "ci-bot")
    assert promote(registry, 1, reason="nightly").actor == "ci-bot"
    assert history(registry.db, "flights")[0].actor == "ci-bot"


def test_sync_repairs_the_mlflow_mirror(registry: ModelRegistry, register: RegisterFn) -> None:
    register()
    register()
    promote(registry, 1, reason="first")
    registry.tracker.client.set_registered_model_alias("flights", "champion", "2")  # by hand
    assert sync_mlflow_aliases(registry) == {"champion": 1, "challenger": None}
    assert mlflow_aliases(registry) == {"champion": 1}


def test_mlflow_failure_rolls_the_db_back(registry: ModelRegistry, register: RegisterFn) -> None:
    register()
    registry.tracker.client.delete_model_version("flights", "1")  # MLflow will refuse the alias
    with pytest.raises(RegistryError, match="mirror alias 'champion'"):
        promote(registry, 1, reason="first")
    assert registry.aliases() == {}
    with registry.db.read() as conn:
        assert conn.execute(select(alias_history)).first() is None
