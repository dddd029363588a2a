"""Monitor results as Prometheus gauges (served on the kyklos server's ``/metrics``).

Every gauge carries ``model`` and ``version`` labels; per-feature gauges add ``feature`` and
``method``. :meth:`MonitorMetrics.update` replaces the series of one model version with those of
the newest check, removing the label sets of features (or quality issues, or metrics) that the
newest check no longer has, so a scrape never shows a stale feature.

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

import threading
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge

from kyklos.monitoring.results import CheckResult
from kyklos.monitoring.signals import drift_ratio

__all__ = ["GAUGES", "MonitorMetrics"]

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
