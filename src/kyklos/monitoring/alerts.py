"""Alert rules of ``monitor.alerts``: evaluated on each check, with cool-down, delivered to the
event log and to a webhook.

A rule fires when its condition holds on the check's signals (:func:`signals_of`) and it has not
fired for the same project and model within its ``cooldown``. The cool-down state is the event log
itself (the newest ``alert.fired`` event of the rule), so it survives restarts and holds across
processes: on SQLite the write transaction serialises evaluators, on PostgreSQL a transaction-level
advisory lock per rule does.

Delivery: the ``alert.fired`` event is committed first; then, when ``monitor.alerts.webhook`` is
set, a JSON document is POSTed to it (5 s timeout, one POST per fired alert). A failing webhook
never raises: it is recorded as an ``alert.delivery_failed`` event and reported on the returned
:class:`FiredAlert`. The JSON carries a ``text`` line too, so Slack- and Mattermost-style incoming
webhooks show something readable without an adapter.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, select, text

from kyklos._version import __version__
from kyklos.config.project import AlertRule, AlertsConfig, parse_duration
from kyklos.errors import ConfigError
from kyklos.monitoring.results import CheckResult
from kyklos.monitoring.signals import Condition, parse_condition, signals_of
from kyklos.store.db import Database
from kyklos.store.events import record_event
from kyklos.store.schema import events

__all__ = [
    "ACTOR",
    "AlertManager",
    "FiredAlert",
    "post_json",
    "signals_of",
]

ACTOR = "kyklos-monitor"
FIRED = "alert.fired"
DELIVERY_FAILED = "alert.delivery_failed"
WEBHOOK_TIMEOUT = 5.0

Sender = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class FiredAlert:
    """One alert that fired: what, why, when, and whether the webhook took it."""

    rule: str
    severity: str
    when: str
    signal: str
    value: float
    threshold: float
    model: str
    version: int | str | None
    at: dt.datetime
    message: str
    event_id: int
    window: dict[str, Any]
    delivered: bool | None = None  # None: no webhook configured
    error: str | None = None
    signals: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "when": self.when,
            "signal": self.signal,
            "value": _finite(self.value),
            "threshold": self.threshold,
            "model": self.model,
            "version": self.version,
            "at": self.at.isoformat(),
            "message": self.message,
            "event_id": self.event_id,
            "window": self.window,
            "delivered": self.delivered,
            "error": self.error,
            "signals": self.signals,
        }


def post_json(url: str, payload: dict[str, Any], *, timeout: float = WEBHOOK_TIMEOUT) -> None:
    """POST ``payload`` as JSON to ``url``; raises on a network error or a non-2xx answer."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("webhook URLs must be http:// or https://")
    body = json.dumps(payload, allow_nan=False).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"kyklos/{__version__}"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


class AlertManager:
    """Evaluates ``config.rules`` on check results of ``project``.

    ``send(url, payload)`` replaces the HTTP POST (default :func:`post_json`); it is called only
    when ``config.webhook`` is set.
    """

    def __init__(
        self,
        db: Database,
        *,
        project: str,
        config: AlertsConfig,
        send: Sender | None = None,
    ) -> None:
        if config.webhook is not None:
            scheme = urllib.parse.urlsplit(config.webhook).scheme
            if scheme not in ("http", "https"):
                raise ConfigError(
                    f"monitor.alerts.webhook: got a {scheme or 'relative'!s} URL, expected "
                    "http:// or https://. Hint: e.g. https://hooks.example.com/kyklos"
                )
        names = [rule.name for rule in config.rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(
                f"monitor.alerts.rules: rule names {duplicates} appear more than once, expected "
                "unique names. Hint: the name keys the cool-down; rename one of them"
            )
        self.db = db
        self.project = project
        self.config = config
        self._send: Sender = send if send is not None else post_json
        self._rules: list[tuple[AlertRule, Condition, float]] = [
            (rule, parse_condition(rule.when), parse_duration(rule.cooldown))
            for rule in config.rules
        ]

    def evaluate(
        self,
        result: CheckResult,
        *,
        model: str,
        version: int | str | None = None,
        now: dt.datetime | None = None,
    ) -> list[FiredAlert]:
        """Fire the rules whose condition holds and whose cool-down has passed.

        ``now`` (default: the current UTC time) is the time the cool-down is measured at and the
        time recorded on the events. ``version`` defaults to the window's model version.
        """
        if not self._rules:
            return []
        now = _aware(now if now is not None else dt.datetime.now(dt.UTC))
        if version is None:
            version = result.window.model_version
        signals = signals_of(result)
        due = [
            (rule, cond, cooldown)
            for rule, cond, cooldown in self._rules
            if cond.holds(signals[cond.signal])
        ]
        if not due:
            return []
        fired: list[FiredAlert] = []
        with self.db.write() as conn:
            for rule, cond, cooldown in due:
                subject = _subject(model, rule.name)
                self._lock(conn, subject)
                last = _last_fired(conn, self.project, subject)
                if last is not None and (now - last).total_seconds() < cooldown:
                    continue
                alert = self._record(conn, rule, cond, signals, result, model, version, now)
                fired.append(alert)
        if self.config.webhook is None:
            return fired
        return [self._deliver(alert, result) for alert in fired]

    def last_fired(self, *, model: str, rule: str) -> dt.datetime | None:
        """When ``rule`` last fired for ``model`` (UTC), or None."""
        with self.db.read() as conn:
            return _last_fired(conn, self.project, _subject(model, rule))

    # -- internals ---------------------------------------------------------------------------

    def _lock(self, conn: Connection, subject: str) -> None:
        if self.db.dialect == "postgresql":
            digest = hashlib.sha256(f"{self.project}\0{subject}".encode()).digest()
            key = int.from_bytes(digest[:8], "big", signed=True)
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    def _record(
        self,
        conn: Connection,
        rule: AlertRule,
        cond: Condition,
        signals: dict[str, float],
        result: CheckResult,
        model: str,
        version: int | str | None,
        now: dt.datetime,
    ) -> FiredAlert:
        value = signals[cond.signal]
        window = result.window.to_dict()
        where = f"{model} v{version}" if version is not None else model
        label = f", window {result.window.label}" if result.window.label else ""
        message = (
            f"alert {rule.name} ({rule.severity}) on {where}: {cond.signal} = {value:.4g}, "
            f"rule {cond}{label}"
        )
        clean = {k: _finite(v) for k, v in signals.items()}
        payload = {
            "rule": rule.name,
            "severity": rule.severity,
            "when": rule.when,
            "signal": cond.signal,
            "op": cond.op,
            "threshold": cond.threshold,
            "value": _finite(value),
            "cooldown": rule.cooldown,
            "model": model,
            "version": version,
            "verdict": result.verdict,
            "window": window,
            "signals": clean,
        }
        event_id = record_event(
            conn,
            project=self.project,
            kind=FIRED,
            actor=ACTOR,
            message=message,
            subject=_subject(model, rule.name),
            payload=payload,
            at=now,
        )
        return FiredAlert(
            rule=rule.name,
            severity=rule.severity,
            when=rule.when,
            signal=cond.signal,
            value=value,
            threshold=cond.threshold,
            model=model,
            version=version,
            at=now,
            message=message,
            event_id=int(event_id),
            window=window,
            signals=clean,
        )

    def _deliver(self, alert: FiredAlert, result: CheckResult) -> FiredAlert:
        url = self.config.webhook
        assert url is not None
        payload = {
            "kind": "kyklos.alert",
            "project": self.project,
            "text": f"[kyklos {self.project}] {alert.message}",
            "verdict": result.verdict,
            **alert.to_dict(),
        }
        payload.pop("delivered")
        payload.pop("error")
        try:
            self._send(url, payload)
        except Exception as exc:  # a broken webhook must not break monitoring
            error = _describe(exc)
            host = urllib.parse.urlsplit(url).netloc  # never log the path: it may hold a token
            with self.db.write() as conn:
                record_event(
                    conn,
                    project=self.project,
                    kind=DELIVERY_FAILED,
                    actor=ACTOR,
                    message=f"alert {alert.rule} not delivered to webhook at {host}: {error}",
                    subject=_subject(alert.model, alert.rule),
                    payload={
                        "rule": alert.rule,
                        "fired_event_id": alert.event_id,
                        "webhook_host": host,
                        "error": error,
                    },
                )
            return replace(alert, delivered=False, error=error)
        return replace(alert, delivered=True)


def _subject(model: str, rule: str) -> str:
    return f"{model} alert {rule}"


def _last_fired(conn: Connection, project: str, subject: str) -> dt.datetime | None:
    last = conn.execute(
        select(events.c.at)
        .where(events.c.project == project, events.c.kind == FIRED, events.c.subject == subject)
        .order_by(events.c.at.desc(), events.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return _aware(last) if last is not None else None


def _aware(moment: dt.datetime) -> dt.datetime:
    """UTC-aware (SQLite hands back naive datetimes, which kyklos stores in UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _describe(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{type(exc.reason).__name__}: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"
