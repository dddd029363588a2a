"""Alias changes on SQLite and the real PostgreSQL: append-only history, concurrent promotions
from threads and from separate processes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError

from kyklos.errors import StoreError
from kyklos.registry import ModelRegistry, history, promote, rollback
from kyklos.store import Database, open_db
from kyklos.store.schema import alias_history

from .conftest import MLFLOW_IMPORT_WARNINGS, RegisterFn
from .promote_worker import run as worker_run

pytestmark = list(MLFLOW_IMPORT_WARNINGS)
WORKER = Path(__file__).with_name("promote_worker.py")


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    ids=["sqlite", "postgres"],
)
def db(request: pytest.FixtureRequest, sqlite_url: str) -> Database:
    """Overrides the SQLite-only ``db`` of conftest: these tests run on both backends."""
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("pg_url")
    return open_db(url)


def assert_consistent(registry: ModelRegistry) -> None:
    """One champion, the same in the DB and in MLflow, and an unbroken history chain."""
    for alias in ("champion", "challenger"):
        changes = history(registry.db, registry.model_name, alias=alias)
        previous = None
        for change in changes:
            assert change.from_version == previous, (alias, change)
            previous = change.to_version
        assert registry.aliases().get(alias) == previous
    stack: list[int] = []
    for change in history(registry.db, registry.model_name, alias="champion"):
        if change.action == "rollback":
            assert change.to_version == stack[-2], change
            stack.pop()
        else:
            stack.append(change.to_version)  # type: ignore[arg-type]
    mlflow_model = registry.tracker.client.get_registered_model(registry.model_name)
    assert {a: int(v) for a, v in mlflow_model.aliases.items()} == registry.aliases()
    with registry.db.read() as conn:
        champions = conn.execute(
            text("SELECT count(*) FROM aliases WHERE alias = 'champion' AND version IS NOT NULL")
        ).scalar_one()
    assert champions == 1


def test_history_is_append_only(registry: ModelRegistry, register: RegisterFn) -> None:
    register()
    register()
    promote(registry, 1, reason="first")
    promote(registry, 2, reason="second")
    for statement in (
        update(alias_history).values(reason="rewritten"),
        delete(alias_history),
    ):
        with (
            pytest.raises((DBAPIError, StoreError), match="append-only"),
            registry.db.write() as conn,
        ):
            conn.execute(statement)
    assert [c.reason for c in history(registry.db, "flights")] == ["first", "second"]


def test_stack_semantics(registry: ModelRegistry, register: RegisterFn) -> None:
    for _ in range(3):
        register()
    for ref in (1, 2, 3, 1):
        promote(registry, ref, reason="x")
    assert [rollback(registry, reason="r").to_version for _ in range(3)] == [3, 2, 1]
    assert_consistent(registry)


def test_concurrent_promotions_from_threads(registry: ModelRegistry, register: RegisterFn) -> None:
    versions = [register().version for _ in range(4)]
    promote(registry, versions[0], reason="start")
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(actor: str) -> None:
        try:
            barrier.wait()
            worker_run(registry, actor, 8, versions, seed=len(actor) * 7 + ord(actor[-1]))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"thread-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len(history(registry.db, "flights")) > 4
    assert_consistent(registry)


def test_concurrent_promotions_from_processes(
    registry: ModelRegistry, register: RegisterFn, tmp_path: Path
) -> None:
    versions = [register().version for _ in range(3)]
    promote(registry, versions[0], reason="start")
    start = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                registry.db.url,
                registry.tracker.tracking_uri,
                f"proc-{i}",
                str(start),
                "8",
                *map(str, versions),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    start.touch()
    changed: dict[str, int] = {}
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        changed[f"proc-{i}"] = int(out.split()[-1])
    recorded = [c.actor for c in history(registry.db, "flights")]
    # every change a process made is in the history under its name, and nothing else is
    assert {actor: recorded.count(actor) for actor in changed} == changed
    assert sum(changed.values()) > 0
    assert_consistent(registry)
