"""Monitor results as Prometheus gauges (served on the kyklos server's ``/metrics``).

Every gauge carries ``model`` and ``version`` labels; per-feature gauges add ``feature`` and
``method``. Two ways to publish them:

* :class:`StoredResultsCollector` reads the newest *stored* result of each model version from
  the metadata DB at scrape time (cached for a few seconds). ``kyklos serve`` registers one in
  its registry, so the gauges follow ``kyklos monitor run`` wherever it runs (a cron job, the
  loop controller, another machine on the same database).
* :class:`MonitorMetrics` holds gauges that a process updates itself after each check
  (:meth:`MonitorMetrics.update` replaces the series of one model version with those of the
  newest check, removing the label sets of features, quality issues or metrics that the newest
  check no longer has, so a scrape never shows a stale feature).

Both expose the same series for the same result; register only one of them per registry.

=============================================  ==================================================
gauge                                          value
=============================================  ==================================================
``kyklos_drift_score``                         the drift method's statistic per feature
``kyklos_drift_threshold``                     the threshold it is compared with
``kyklos_drift_p_value``                       the p-value (tests only: ks, chi2)
``kyklos_feature_drift_ratio``                 :func:`~kyklos.monitoring.signals.drift_ratio`
``kyklos_feature_drifted``                     1 drifted, 0 not
``kyklos_dataset_drift_share``                 share of drifted features
``kyklos_dataset_drift_share_threshold``       the share above which the dataset drifted
``kyklos_dataset_drift``                       1 dataset drift, 0 not
``kyklos_prediction_drift_score``              the statistic of the predictions' drift
``kyklos_prediction_drifted``                  1 the predictions drifted, 0 not
``kyklos_quality_issues``                      rows affected, per feature and issue kind
``kyklos_quality_issue_count``                 number of issues per severity (warning, error)
``kyklos_live_metric``                         live performance on the labelled rows, per metric
``kyklos_reference_metric``                    the reference (evaluation) value, per metric
``kyklos_performance_drop``                    the watched metric's drop (positive = worse)
``kyklos_performance_degraded``                1 when the drop exceeds ``max_drop``
``kyklos_live_labelled_rows``                  labelled rows behind the live metrics
``kyklos_monitor_window_rows``                 rows in the checked window
``kyklos_monitor_check_seconds``               how long the check took
``kyklos_monitor_last_check_timestamp_seconds``  Unix time of the update
=============================================  ==================================================
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily

from kyklos.errors import KyklosError
from kyklos.monitoring.results import CheckResult
from kyklos.monitoring.signals import drift_ratio

if TYPE_CHECKING:
    from kyklos.monitoring.store import MonitorStore

__all__ = ["GAUGES", "MonitorMetrics", "StoredResultsCollector"]

log = logging.getLogger("kyklos.monitoring")

_MV = ("model", "version")
_FEATURE = (*_MV, "feature", "method")

GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "kyklos_drift_score": ("Drift statistic of a feature (method's own scale).", _FEATURE),
    "kyklos_drift_threshold": ("Threshold the drift statistic is compared with.", _FEATURE),
    "kyklos_drift_p_value": ("p-value of a feature's drift test (ks, chi2).", _FEATURE),
    "kyklos_feature_drift_ratio": (
        "Drift relative to the threshold, comparable across methods; above 1 is drifted.",
        _FEATURE,
    ),
    "kyklos_feature_drifted": ("1 when the feature drifted, else 0.", _FEATURE),
    "kyklos_dataset_drift_share": ("Share of drifted features (0-1).", _MV),
    "kyklos_dataset_drift_share_threshold": ("Share of drifted features that is drift.", _MV),
    "kyklos_dataset_drift": ("1 when the dataset drifted, else 0.", _MV),
    "kyklos_prediction_drift_score": (
        "Drift statistic of the model's predictions.",
        (*_MV, "method"),
    ),
    "kyklos_prediction_drifted": ("1 when the predictions drifted, else 0.", _MV),
    "kyklos_quality_issues": (
        "Rows affected by a data-quality issue in the window.",
        (*_MV, "feature", "kind"),
    ),
    "kyklos_quality_issue_count": ("Number of data-quality issues.", (*_MV, "severity")),
    "kyklos_live_metric": ("Live performance on the window's labelled rows.", (*_MV, "metric")),
    "kyklos_reference_metric": ("Reference (evaluation) value of a metric.", (*_MV, "metric")),
    "kyklos_performance_drop": (
        "Drop of the watched metric against the reference; positive is worse.",
        (*_MV, "metric"),
    ),
    "kyklos_performance_degraded": ("1 when the drop exceeds max_drop, else 0.", _MV),
    "kyklos_live_labelled_rows": ("Labelled rows behind the live metrics.", _MV),
    "kyklos_monitor_window_rows": ("Rows in the last checked window.", _MV),
    "kyklos_monitor_check_seconds": ("Seconds the last check took.", _MV),
    "kyklos_monitor_last_check_timestamp_seconds": ("Unix time of the last check.", _MV),
}

_Series = dict[str, dict[tuple[str, ...], float]]


class MonitorMetrics:
    """The monitor gauges, registered once in ``registry`` (default: a new private one).

    Thread-safe: the server may scrape while a check updates.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._gauges = {
            name: Gauge(name, doc, labels, registry=self.registry)
            for name, (doc, labels) in GAUGES.items()
        }
        self._seen: dict[tuple[str, str], dict[str, set[tuple[str, ...]]]] = {}
        self._lock = threading.Lock()

    def update(
        self,
        result: CheckResult,
        *,
        model: str,
        version: int | str | None = None,
        now: float | None = None,
    ) -> None:
        """Publish ``result`` as the current state of ``model`` ``version`` (default: the
        window's model version); series the result no longer has are removed."""
        if version is None:
            version = result.window.model_version
        key = (model, "" if version is None else str(version))
        series = _series_of(result, key, time.time() if now is None else now)
        with self._lock:
            previous = self._seen.get(key, {})
            for name, gauge in self._gauges.items():
                new = series.get(name, {})
                for labels in previous.get(name, set()) - new.keys():
                    gauge.remove(*labels)
                for labels, value in new.items():
                    gauge.labels(*labels).set(value)
            self._seen[key] = {name: set(values) for name, values in series.items() if values}

    def remove(self, *, model: str, version: int | str | None) -> None:
        """Drop every series of ``model`` ``version`` (e.g. after it stopped serving)."""
        key = (model, "" if version is None else str(version))
        with self._lock:
            for name, labelsets in self._seen.pop(key, {}).items():
                for labels in labelsets:
                    self._gauges[name].remove(*labels)

    def versions(self) -> list[tuple[str, str]]:
        """The (model, version) pairs currently published."""
        with self._lock:
            return sorted(self._seen)


class StoredResultsCollector:
    """The monitor gauges of the newest stored result of each model version of ``store``,
    read when Prometheus scrapes (a custom collector: ``registry.register(collector)``).

    The DB is read at most once every ``max_age`` seconds (one query for the newest row of
    each version); scrapes in between reuse the gauges, so a scrape stays cheap. At most
    ``versions`` model versions are shown, the most recently checked first.
    ``kyklos_monitor_last_check_timestamp_seconds`` is when the result was stored. When the
    read fails (the DB is unreachable, a result does not decode), the previous gauges stay
    and the failure is logged: ``/metrics`` keeps answering. ``clock`` is for tests.
    """

    def __init__(
        self,
        store: MonitorStore,
        *,
        max_age: float = 5.0,
        versions: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.max_age = max_age
        self.versions = versions
        self._clock = clock
        self._series: _Series = {}
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def describe(self) -> list[GaugeMetricFamily]:
        """The gauge names (so a registry refuses a second collector of the same names)."""
        return [
            GaugeMetricFamily(name, doc, labels=labels) for name, (doc, labels) in GAUGES.items()
        ]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        series = self.refresh()
        for name, (doc, labels) in GAUGES.items():
            values = series.get(name)
            if not values:
                continue
            family = GaugeMetricFamily(name, doc, labels=labels)
            for labelvalues, value in values.items():
                family.add_metric(labelvalues, value)
            yield family

    def refresh(self, *, force: bool = False) -> _Series:
        """The series to expose, read again from the store when older than ``max_age``."""
        from sqlalchemy.exc import SQLAlchemyError

        with self._lock:
            now = self._clock()
            if not force and self._read_at is not None and now - self._read_at < self.max_age:
                return self._series
            self._read_at = now
            try:
                stored = self.store.latest(versions=self.versions)
            except (KyklosError, SQLAlchemyError, KeyError, TypeError, ValueError) as exc:
                log.warning(
                    "monitor gauges: reading %r failed, keeping the last ones: %s", self.store, exc
                )
                return self._series
            series: _Series = {name: {} for name in GAUGES}
            for item in stored:
                version = "" if item.model_version is None else str(item.model_version)
                key = (item.model_name, version)
                found = _series_of(item.result, key, item.created_at.timestamp())
                for name, values in found.items():
                    series[name].update(values)
            self._series = series
            return series


def _series_of(result: CheckResult, key: tuple[str, str], now: float) -> _Series:
    out: _Series = {name: {} for name in GAUGES}

    def put(name: str, labels: Iterable[str], value: float, *, add: bool = False) -> None:
        full = (*key, *labels)
        out[name][full] = out[name].get(full, 0.0) + value if add else value

    for f in result.features:
        labels = (f.feature, f.method)
        put("kyklos_drift_score", labels, f.statistic)
        put("kyklos_drift_threshold", labels, f.threshold)
        if f.p_value is not None:
            put("kyklos_drift_p_value", labels, f.p_value)
        put("kyklos_feature_drift_ratio", labels, drift_ratio(f))
        put("kyklos_feature_drifted", labels, 1.0 if f.drifted else 0.0)
    put("kyklos_dataset_drift_share", (), result.share_drifted)
    put("kyklos_dataset_drift_share_threshold", (), result.drift_share_threshold)
    put("kyklos_dataset_drift", (), 1.0 if result.dataset_drift else 0.0)
    if result.prediction is not None:
        put(
            "kyklos_prediction_drift_score",
            (result.prediction.method,),
            result.prediction.statistic,
        )
        put("kyklos_prediction_drifted", (), 1.0 if result.prediction.drifted else 0.0)
    for severity in ("warning", "error"):
        put("kyklos_quality_issue_count", (severity,), 0.0)
    for q in result.quality:
        put("kyklos_quality_issues", (q.feature, q.kind), float(q.count), add=True)
        put("kyklos_quality_issue_count", (q.severity,), 1.0, add=True)
    perf = result.performance
    if perf is not None:
        for metric, value in perf.metrics.items():
            put("kyklos_live_metric", (metric,), value)
        for metric, value in perf.reference.items():
            put("kyklos_reference_metric", (metric,), value)
        if perf.drop is not None:
            put("kyklos_performance_drop", (perf.metric,), perf.drop)
        put("kyklos_performance_degraded", (), 1.0 if perf.degraded else 0.0)
        put("kyklos_live_labelled_rows", (), float(perf.n_labelled))
    put("kyklos_monitor_window_rows", (), float(result.window.n_rows))
    put("kyklos_monitor_check_seconds", (), result.seconds)
    put("kyklos_monitor_last_check_timestamp_seconds", (), now)
    return out
