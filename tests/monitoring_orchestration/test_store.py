"""Stored monitor results and the cursor: migration 0002, round trips, compare-and-set."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from kyklos.errors import MonitorError, NotFoundError
from kyklos.monitoring.results import (
    CheckResult,
    Distribution,
    FeatureDrift,
    PerformanceResult,
    QualityIssue,
    WindowSpec,
)
from kyklos.monitoring.store import MonitorStore, decode_json, encode_json
from kyklos.store import open_db
from kyklos.store.db import HEAD_REVISION
from kyklos.store.schema import metadata

T0 = dt.datetime(2013, 6, 1, tzinfo=dt.UTC)


def _result(version: int | None = 3, *, hour: int = 0, drifted: bool = True) -> CheckResult:
    feature = FeatureDrift(
        feature="temp",
        kind="numeric",
        method="ks",
        statistic=math.inf,  # non-finite values must survive PostgreSQL's JSON
        threshold=0.05,
        drifted=drifted,
        p_value=math.nan,
        reference=Distribution("numeric", (1.0, 2.0, 3.0), edges=(0.0, 1.0)),
        current=Distribution("numeric", (3.0, 2.0, 1.0), edges=(0.0, 1.0), missing=2),
    )
    return CheckResult(
        window=WindowSpec(
            T0 + dt.timedelta(hours=hour), T0 + dt.timedelta(hours=hour + 1), 1000, version, "w"
        ),
        n_reference=5000,
        features=(feature,),
        share_drifted=1.0 if drifted else 0.0,
        dataset_drift=drifted,
        drift_share_threshold=0.3,
        quality=(QualityIssue("temp", "out_of_range", 12, "12 above the max"),),
        performance=PerformanceResult(
            10, {"roc_auc": 0.7}, {"roc_auc": 0.8}, "roc_auc", 0.1, 0.03, True
        ),
        seconds=0.01,
    )


def _same(a: CheckResult, b: CheckResult) -> bool:
    left, right = a.to_dict(), b.to_dict()
    return encode_json(left) == encode_json(right)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'kyklos.db'}"


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_migration_creates_exactly_the_schema_tables(
    backend: str, request: pytest.FixtureRequest, sqlite_url: str
) -> None:
    url = sqlite_url if backend == "sqlite" else request.getfixturevalue("pg_url")
    db = open_db(url)
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.engine.connect() as conn:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        diff = [
            change
            for change in compare_metadata(MigrationContext.configure(conn), metadata)
            # column comments (PostgreSQL only) are documentation; migrations do not set them
            if not (isinstance(change, list) and change[0][0] == "modify_comment")
        ]
        columns = {c["name"] for c in inspect(conn).get_columns("monitor_results")}
    assert revision == HEAD_REVISION
    assert diff == []
    assert {"window_start", "window_end", "verdict", "share_drifted", "result"} <= columns


def test_a_0001_database_is_upgraded(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    from kyklos.store.db import _MIGRATIONS, close_all

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    with engine.connect() as conn:
        assert not inspect(conn).has_table("monitor_results")
    engine.dispose()
    store = MonitorStore(open_db(url), project="p", model_name="p")
    assert store.save(_result()).id == 1
    close_all()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_results_round_trip_newest_first(
    backend: str, request: pytest.FixtureRequest, sqlite_url: str
) -> None:
    url = sqlite_url if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = MonitorStore(open_db(url), project="p", model_name="m")
    other = MonitorStore(open_db(url), project="p", model_name="other")
    first = store.save(_result(3, hour=0))
    second = store.save(_result(4, hour=1, drifted=False))
    other.save(_result(3))
    listed = store.list()
    assert [s.id for s in listed] == [second.id, first.id]
    assert _same(listed[1].result, first.result)
    back = listed[1].result.features[0]
    assert math.isinf(back.statistic) and back.p_value is not None and math.isnan(back.p_value)
    assert listed[1].result.window.start == T0
    assert listed[1].created_at.tzinfo is not None
    assert [s.id for s in store.list(version=4)] == [second.id]
    assert [s.id for s in store.list(limit=1)] == [second.id]
    assert store.get(first.id).verdict == "degraded"
    assert [r.window.model_version for r in store.history(3)] == [3]
    assert store.history(3, before=first.id) == []
    with pytest.raises(NotFoundError, match="no monitor result 999"):
        store.get(999)
    summary = first.summary()
    assert summary["drifted_features"] == ["temp"] and summary["window"] == "w"


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_commit_is_compare_and_set(
    backend: str, request: pytest.FixtureRequest, sqlite_url: str
) -> None:
    url = sqlite_url if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = MonitorStore(open_db(url), project="p", model_name="m")
    assert store.state() is None
    store.commit(expected=None, state={"n": 1})
    stored = store.commit(expected={"n": 1}, state={"n": 2}, result=_result())
    assert stored is not None and store.state() == {"n": 2}
    with pytest.raises(MonitorError, match="moved the cursor"):
        store.commit(expected={"n": 1}, state={"n": 3}, result=_result())
    with pytest.raises(MonitorError, match="moved the cursor"):
        store.commit(expected=None, state={"n": 3})
    assert store.state() == {"n": 2}
    assert len(store.list()) == 1  # the refused result was not stored
    store.reset()
    assert store.state() is None


def test_json_encoding_round_trips_non_finite_numbers() -> None:
    data = {"a": [1.0, math.inf, -math.inf], "b": {"c": math.nan}, "s": "NaN"}
    encoded = encode_json(data)
    assert encoded["s"] == "NaN" and encoded["a"][1] == {"$float": "inf"}
    back = decode_json(encoded)
    assert back["a"][:2] == [1.0, math.inf] and back["a"][2] == -math.inf
    assert math.isnan(back["b"]["c"]) and back["s"] == "NaN"
