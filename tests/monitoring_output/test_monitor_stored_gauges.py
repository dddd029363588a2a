"""The monitor gauges read from stored results at scrape time (what ``kyklos serve`` exposes)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from kyklos.monitoring.metrics import MonitorMetrics, StoredResultsCollector
from kyklos.monitoring.results import CheckResult
from kyklos.monitoring.store import MonitorStore
from kyklos.store import open_db
from kyklos.store.db import close_all

from .test_monitor_metrics import Samples, scrape, series, value

MODEL = "flights"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MonitorStore]:
    yield MonitorStore(
        open_db(f"sqlite:///{tmp_path / 'kyklos.db'}"), project="p", model_name=MODEL
    )
    close_all()


def _for(result: CheckResult, version: int) -> CheckResult:
    return dataclasses.replace(
        result, window=dataclasses.replace(result.window, model_version=version)
    )


def _without_time(samples: Samples) -> Samples:
    return {k: v for k, v in samples.items() if "timestamp" not in k[0]}


def test_the_newest_stored_result_of_each_version_is_exposed(
    store: MonitorStore, drifted: CheckResult, calm: CheckResult
) -> None:
    store.save(_for(calm, 1))
    newest_v1 = store.save(_for(drifted, 1))
    v2 = store.save(_for(calm, 2))
    registry = CollectorRegistry()
    registry.register(StoredResultsCollector(store, clock=Clock()))
    s = scrape(registry)

    # the same series MonitorMetrics publishes for the same results, stamped with storage time
    pushed = CollectorRegistry()
    metrics = MonitorMetrics(pushed)
    metrics.update(newest_v1.result, model=MODEL, version=1)
    metrics.update(v2.result, model=MODEL, version=2)
    assert _without_time(s) == _without_time(scrape(pushed))
    assert value(
        s, "kyklos_monitor_last_check_timestamp_seconds", model=MODEL, version="1"
    ) == pytest.approx(newest_v1.created_at.timestamp())
    assert value(s, "kyklos_dataset_drift", model=MODEL, version="1") == 1.0
    assert value(s, "kyklos_dataset_drift", model=MODEL, version="2") == 0.0


def test_the_store_is_read_at_most_every_max_age_seconds(
    store: MonitorStore, drifted: CheckResult, calm: CheckResult
) -> None:
    clock = Clock()
    collector = StoredResultsCollector(store, max_age=5.0, clock=clock)
    registry = CollectorRegistry()
    registry.register(collector)
    assert series(scrape(registry), "kyklos_dataset_drift") == {}  # nothing stored yet

    store.save(_for(calm, 1))
    clock.now += 4.9
    assert series(scrape(registry), "kyklos_dataset_drift") == {}  # cached
    clock.now += 0.1
    assert value(scrape(registry), "kyklos_dataset_drift", model=MODEL, version="1") == 0.0

    store.save(_for(drifted, 1))
    assert value(scrape(registry), "kyklos_dataset_drift", model=MODEL, version="1") == 0.0
    clock.now += 5.0
    assert value(scrape(registry), "kyklos_dataset_drift", model=MODEL, version="1") == 1.0


def test_only_the_most_recently_checked_versions(store: MonitorStore, calm: CheckResult) -> None:
    for version in (1, 2, 3, 2):
        store.save(_for(calm, version))
    assert [s.model_version for s in store.latest()] == [2, 3, 1]
    registry = CollectorRegistry()
    registry.register(StoredResultsCollector(store, versions=2, clock=Clock()))
    shown = series(scrape(registry), "kyklos_dataset_drift")
    assert sorted(dict(labels)["version"] for labels in shown) == ["2", "3"]


def test_a_second_set_of_the_same_gauges_is_refused(store: MonitorStore) -> None:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StoredResultsCollector(store))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        MonitorMetrics(registry)


def test_a_failing_read_keeps_the_last_gauges(
    store: MonitorStore, drifted: CheckResult, caplog: pytest.LogCaptureFixture
) -> None:
    store.save(_for(drifted, 1))
    clock = Clock()
    registry = CollectorRegistry()
    registry.register(StoredResultsCollector(store, clock=clock))
    before = scrape(registry)
    with store.db.engine.begin() as conn:
        conn.execute(text("DROP TABLE monitor_results"))
    clock.now += 60
    with caplog.at_level(logging.WARNING, logger="kyklos.monitoring"):
        assert scrape(registry) == before
    assert "keeping the last ones" in caplog.text
