"""Prometheus gauges of monitor results, read back through a real scrape and the text parser."""

from __future__ import annotations

import dataclasses
import math

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kyklos.monitoring.metrics import GAUGES, MonitorMetrics
from kyklos.monitoring.results import CheckResult
from kyklos.monitoring.signals import drift_ratio, signals_of

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def series(samples: Samples, name: str, **match: str) -> dict[frozenset[tuple[str, str]], float]:
    return {
        labels: v
        for (n, labels), v in samples.items()
        if n == name and set(match.items()) <= set(labels)
    }


def test_every_gauge_of_a_check_is_scraped(drifted: CheckResult) -> None:
    registry = CollectorRegistry()
    MonitorMetrics(registry).update(drifted, model="flights", now=1_700_000_000.0)
    s = scrape(registry)
    mv = {"model": "flights", "version": "3"}  # the window's model version by default
    assert value(s, "kyklos_dataset_drift_share", **mv) == drifted.share_drifted
    assert value(s, "kyklos_dataset_drift", **mv) == 1.0
    assert value(s, "kyklos_dataset_drift_share_threshold", **mv) == 0.3
    assert len(series(s, "kyklos_drift_score", **mv)) == 25
    for f in drifted.features:
        labels = {**mv, "feature": f.feature, "method": f.method}
        assert value(s, "kyklos_drift_score", **labels) == f.statistic
        assert value(s, "kyklos_feature_drifted", **labels) == float(f.drifted)
        assert value(s, "kyklos_feature_drift_ratio", **labels) == drift_ratio(f)
        assert value(s, "kyklos_drift_threshold", **labels) == f.threshold
        if f.p_value is None:
            assert ("kyklos_drift_p_value", frozenset(labels.items())) not in s
        else:
            assert value(s, "kyklos_drift_p_value", **labels) == f.p_value
    assert drifted.prediction is not None
    assert value(s, "kyklos_prediction_drift_score", **mv, method="psi") == (
        drifted.prediction.statistic
    )
    assert value(s, "kyklos_prediction_drifted", **mv) == 1.0
    assert value(s, "kyklos_quality_issues", **mv, feature="wind_gust", kind="missing_rate_jump")
    assert value(s, "kyklos_quality_issue_count", **mv, severity="error") == 2.0
    assert value(s, "kyklos_quality_issue_count", **mv, severity="warning") == 3.0
    perf = drifted.performance
    assert perf is not None
    assert value(s, "kyklos_live_metric", **mv, metric="roc_auc") == perf.metrics["roc_auc"]
    assert value(s, "kyklos_reference_metric", **mv, metric="f1") == perf.reference["f1"]
    assert value(s, "kyklos_performance_drop", **mv, metric="roc_auc") == perf.drop
    assert value(s, "kyklos_performance_degraded", **mv) == 1.0
    assert value(s, "kyklos_live_labelled_rows", **mv) == perf.n_labelled
    assert value(s, "kyklos_monitor_window_rows", **mv) == 2000.0
    assert value(s, "kyklos_monitor_check_seconds", **mv) == drifted.seconds
    assert value(s, "kyklos_monitor_last_check_timestamp_seconds", **mv) == 1_700_000_000.0
    assert {name for name, _ in s} == set(GAUGES)


def test_gauges_agree_with_the_alert_signals(drifted: CheckResult) -> None:
    registry = CollectorRegistry()
    MonitorMetrics(registry).update(drifted, model="flights", version=3)
    s = scrape(registry)
    signals = signals_of(drifted)
    assert max(series(s, "kyklos_feature_drift_ratio").values()) == signals["max_feature_drift"]
    assert sum(series(s, "kyklos_quality_issue_count").values()) == signals["quality_issues"]
    assert (
        value(s, "kyklos_prediction_drifted", model="flights", version="3")
        == (signals["prediction_drift"])
    )


def test_update_removes_series_the_newest_check_no_longer_has(
    drifted: CheckResult, calm: CheckResult
) -> None:
    registry = CollectorRegistry()
    metrics = MonitorMetrics(registry)
    metrics.update(drifted, model="flights", version=3)
    renamed = dataclasses.replace(
        calm,
        features=tuple(
            dataclasses.replace(f, feature="dep_hour") if f.feature == "dep_time" else f
            for f in calm.features
        ),
        performance=None,
        prediction=None,
    )
    metrics.update(renamed, model="flights", version=3)
    s = scrape(registry)
    features = {dict(k)["feature"] for k in series(s, "kyklos_drift_score")}
    assert "dep_hour" in features and "dep_time" not in features
    assert len(features) == 25
    for gone in (
        "kyklos_live_metric",
        "kyklos_performance_drop",
        "kyklos_prediction_drifted",
        "kyklos_quality_issues",
    ):
        assert series(s, gone) == {}, gone
    # severities stay published as zeros, so "no errors" is a value, not an absent series
    assert set(series(s, "kyklos_quality_issue_count").values()) == {0.0}


def test_versions_are_separate_and_removable(drifted: CheckResult, calm: CheckResult) -> None:
    registry = CollectorRegistry()
    metrics = MonitorMetrics(registry)
    metrics.update(drifted, model="flights", version=3)
    metrics.update(calm, model="flights", version=4)
    s = scrape(registry)
    assert value(s, "kyklos_dataset_drift", model="flights", version="3") == 1.0
    assert value(s, "kyklos_dataset_drift", model="flights", version="4") == 0.0
    assert metrics.versions() == [("flights", "3"), ("flights", "4")]
    metrics.remove(model="flights", version=3)
    s = scrape(registry)
    assert not any(dict(labels).get("version") == "3" for _, labels in s)
    assert len(series(s, "kyklos_drift_score", version="4")) == 25


def test_non_finite_values_are_exported_as_such(drifted: CheckResult) -> None:
    odd = dataclasses.replace(
        drifted.features[0], statistic=float("nan"), threshold=0.0, p_value=None
    )
    infinite = dataclasses.replace(drifted.features[1], threshold=0.0, p_value=None)
    result = dataclasses.replace(drifted, features=(odd, infinite))
    registry = CollectorRegistry()
    MonitorMetrics(registry).update(result, model="m", version=1)
    s = scrape(registry)
    ratios = {dict(k)["feature"]: v for k, v in series(s, "kyklos_feature_drift_ratio").items()}
    assert math.isnan(ratios[odd.feature])
    assert ratios[infinite.feature] == math.inf
