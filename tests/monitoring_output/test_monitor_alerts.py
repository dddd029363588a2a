"""Alert rules: signals, cool-down kept in the event log, delivery to a real local webhook."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from kyklos.config.project import AlertsConfig
from kyklos.monitoring.alerts import AlertManager, signals_of
from kyklos.monitoring.results import CheckResult, FeatureDrift
from kyklos.monitoring.signals import drift_ratio, parse_condition
from kyklos.store import Database, open_db
from kyklos.store.db import close_all
from kyklos.store.schema import events

T0 = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
RULES = [
    {"name": "dataset drift", "when": "share_drifted > 0.3", "severity": "warning", "cooldown": "30m"},
    {"name": "auc drop", "when": "performance_drop >= 0.03", "severity": "critical", "cooldown": "2h"},
    {"name": "quality", "when": "quality_errors > 0", "cooldown": "10m"},
    {"name": "predictions", "when": "prediction_drift > 0", "cooldown": "30m"},
    {"name": "very far", "when": "max_feature_drift > 1000000", "cooldown": "30m"},
]  # fmt: skip


class Webhook:
    """A real HTTP server on 127.0.0.1 that records JSON POSTs and answers ``status``."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append(json.loads(body))
                hook.headers.append(dict(self.headers))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    yield open_db(f"sqlite:///{tmp_path / 'kyklos.db'}")
    close_all()


def config(webhook: str | None, rules: list[dict[str, Any]] = RULES) -> AlertsConfig:
    return AlertsConfig.model_validate({"webhook": webhook, "rules": rules})


def alert_events(db: Database, kind: str = "alert.fired") -> list[Any]:
    with db.read() as conn:
        return list(conn.execute(select(events).where(events.c.kind == kind).order_by(events.c.id)))


def test_signals_of_a_check(drifted: CheckResult, calm: CheckResult) -> None:
    s = signals_of(drifted)
    assert s["dataset_drift"] == 1.0
    assert s["share_drifted"] == drifted.share_drifted
    assert s["max_feature_drift"] == max(drift_ratio(f) for f in drifted.features) > 1
    assert s["prediction_drift"] == 1.0
    assert drifted.performance is not None
    assert s["performance_drop"] == drifted.performance.drop
    assert s["quality_errors"] == 2.0
    assert s["quality_issues"] == 5.0
    quiet = signals_of(dataclasses.replace(calm, prediction=None, performance=None))
    assert quiet["dataset_drift"] == 0.0 and quiet["quality_issues"] == 0.0
    assert quiet["max_feature_drift"] < 1
    assert math.isnan(quiet["prediction_drift"]) and math.isnan(quiet["performance_drop"])
    assert not parse_condition("performance_drop >= 0").holds(quiet["performance_drop"])


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        (FeatureDrift("a", "numeric", "psi", 0.3, 0.2, True), 1.5),
        (FeatureDrift("b", "numeric", "ks", 0.2, 0.05, True, p_value=0.05), 1.0),
        (FeatureDrift("c", "numeric", "ks", 0.2, 0.05, False, p_value=1.0), 0.0),
        (FeatureDrift("d", "categorical", "chi2", 9e9, 0.05, True, p_value=0.0), 230.6),
        (FeatureDrift("e", "numeric", "psi", 0.1, 0.0, True), math.inf),
    ],
    ids=["distance", "test-at-threshold", "test-p1", "test-p0", "zero-threshold"],
)
def test_drift_ratio(feature: FeatureDrift, expected: float) -> None:
    assert drift_ratio(feature) == pytest.approx(expected, rel=1e-3)


def test_rules_fire_to_event_log_and_webhook_then_cool_down(
    db: Database, webhook: Webhook, drifted: CheckResult
) -> None:
    manager = AlertManager(db, project="flights", config=config(webhook.url))
    fired = manager.evaluate(drifted, model="flights", now=T0)
    assert sorted(a.rule for a in fired) == ["auc drop", "dataset drift", "predictions", "quality"]
    assert all(a.delivered is True and a.error is None for a in fired)
    assert all(a.version == 3 for a in fired)  # the window's model version
    assert len(webhook.received) == 4
    by_rule = {p["rule"]: p for p in webhook.received}
    auc = by_rule["auc drop"]
    assert auc["kind"] == "kyklos.alert" and auc["project"] == "flights"
    assert auc["severity"] == "critical" and auc["signal"] == "performance_drop"
    assert auc["value"] == pytest.approx(0.049) and auc["threshold"] == 0.03
    assert auc["window"]["n_rows"] == 2000 and auc["model"] == "flights"
    assert auc["text"].startswith("[kyklos flights] alert auc drop (critical) on flights v3")
    assert set(auc["signals"]) == set(signals_of(drifted))
    assert webhook.headers[0]["Content-Type"] == "application/json"
    rows = alert_events(db)
    assert [r.subject for r in rows] == [f"flights alert {a.rule}" for a in fired]
    assert {r.id for r in rows} == {a.event_id for a in fired}
    assert rows[0].actor == "kyklos-monitor" and rows[0].project == "flights"
    assert rows[0].payload["window"]["label"] == drifted.window.label

    # inside every cool-down: nothing fires, nothing is sent, nothing is recorded
    assert manager.evaluate(drifted, model="flights", now=T0 + dt.timedelta(minutes=9)) == []
    assert len(webhook.received) == 4 and len(alert_events(db)) == 4
    # 10 min later only the 10-minute rule is due again; a restarted manager knows the history
    restarted = AlertManager(db, project="flights", config=config(webhook.url))
    again = restarted.evaluate(drifted, model="flights", now=T0 + dt.timedelta(minutes=10))
    assert [a.rule for a in again] == ["quality"]
    assert restarted.last_fired(model="flights", rule="quality") == T0 + dt.timedelta(minutes=10)
    later = restarted.evaluate(drifted, model="flights", now=T0 + dt.timedelta(minutes=30))
    assert sorted(a.rule for a in later) == ["dataset drift", "predictions", "quality"]
    assert len(alert_events(db)) == 8 and len(webhook.received) == 8
    # the cool-down is per model: another model of the project fires at once
    other = restarted.evaluate(drifted, model="flights-b", now=T0 + dt.timedelta(minutes=32))
    assert len(other) == 4


def test_nothing_fires_on_a_calm_window(db: Database, webhook: Webhook, calm: CheckResult) -> None:
    manager = AlertManager(db, project="flights", config=config(webhook.url))
    assert manager.evaluate(calm, model="flights", now=T0) == []
    assert webhook.received == [] and alert_events(db) == []


@pytest.mark.parametrize("failure", ["http-500", "refused"], ids=["http-500", "refused"])
def test_a_failing_webhook_is_recorded_not_raised(
    db: Database, webhook: Webhook, drifted: CheckResult, failure: str
) -> None:
    url = webhook.url
    if failure == "http-500":
        webhook.status = 500
    else:
        webhook.close()  # nothing listens on the port any more
        webhook.server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
        webhook.thread = threading.Thread(target=webhook.server.serve_forever, daemon=True)
        webhook.thread.start()
    rules = [{"name": "quality", "when": "quality_errors > 0", "cooldown": "10m"}]
    manager = AlertManager(db, project="flights", config=config(url, rules))
    (alert,) = manager.evaluate(drifted, model="flights", now=T0)
    assert alert.delivered is False
    assert alert.error is not None
    assert ("HTTP 500" in alert.error) if failure == "http-500" else ("refused" in alert.error)
    assert len(alert_events(db)) == 1  # the alert itself is on record
    (failed,) = alert_events(db, "alert.delivery_failed")
    assert failed.payload["fired_event_id"] == alert.event_id
    assert "secret-token" not in failed.message and "secret-token" not in json.dumps(failed.payload)
    # the cool-down counts from the firing, delivered or not
    assert manager.evaluate(drifted, model="flights", now=T0 + dt.timedelta(minutes=1)) == []


def test_without_webhook_alerts_go_to_the_event_log_only(
    db: Database, drifted: CheckResult
) -> None:
    sent: list[Any] = []
    manager = AlertManager(
        db, project="flights", config=config(None), send=lambda url, p: sent.append(p)
    )
    fired = manager.evaluate(drifted, model="flights", version=7)
    assert len(fired) == 4 and all(a.delivered is None for a in fired)
    assert sent == []
    assert {r.payload["version"] for r in alert_events(db)} == {7}


def test_concurrent_evaluators_fire_once(tmp_path: Path, drifted: CheckResult) -> None:
    url = f"sqlite:///{tmp_path / 'kyklos.db'}"
    db = open_db(url)
    rules = [{"name": "quality", "when": "quality_errors > 0", "cooldown": "1h"}]
    results: list[int] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        manager = AlertManager(db, project="flights", config=config(None, rules))
        barrier.wait()
        results.append(len(manager.evaluate(drifted, model="flights", now=T0)))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 0, 0, 1]
    assert len(alert_events(db)) == 1
    close_all()


@pytest.mark.postgres
def test_cool_down_on_postgres(pg_url: str, drifted: CheckResult) -> None:
    db = open_db(pg_url)
    rules = [{"name": "quality", "when": "quality_errors > 0", "cooldown": "1h"}]
    results: list[int] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        manager = AlertManager(db, project="flights", config=config(None, rules))
        barrier.wait()
        results.append(len(manager.evaluate(drifted, model="flights", now=T0)))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 0, 1]
    manager = AlertManager(db, project="flights", config=config(None, rules))
    assert manager.last_fired(model="flights", rule="quality") == T0
    assert manager.evaluate(drifted, model="flights", now=T0 + dt.timedelta(minutes=59)) == []
    assert len(manager.evaluate(drifted, model="flights", now=T0 + dt.timedelta(hours=1))) == 1


@pytest.mark.parametrize(
    ("webhook", "rules", "message"),
    [
        ("file:///etc/passwd", [], "expected an http:// or https:// URL"),
        ("hooks.example.com/x", [], "expected an http:// or https:// URL"),
        (None, [RULES[2], RULES[2]], "rule names must be unique"),
    ],
    ids=["file-url", "relative-url", "duplicate-names"],
)
def test_bad_alert_config_is_refused_when_the_project_is_loaded(
    webhook: str | None, rules: list[dict[str, Any]], message: str
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        AlertsConfig.model_validate({"webhook": webhook, "rules": rules})
