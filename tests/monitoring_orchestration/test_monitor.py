"""The Monitor: the scikit-learn contract, real drift on the flights data, log records."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from kyklos.config.project import DriftConfig, PerformanceConfig
from kyklos.data.profile import profile_table
from kyklos.errors import MonitorError
from kyklos.monitoring.monitor import Monitor
from kyklos.monitoring.results import CheckResult, WindowSpec

from .conftest import months

FEATURES = [
    "month",
    "day",
    "hour",
    "sched_dep_time",
    "distance",
    "temp",
    "dewp",
    "humid",
    "wind_speed",
    "pressure",
    "visib",
    "carrier",
    "origin",
]


@pytest.fixture(scope="module")
def winter_profile(flights: pa.Table) -> object:
    return profile_table(months(flights, 1, 2).select(FEATURES))


def test_check_before_fit_says_not_fitted() -> None:
    with pytest.raises(MonitorError, match="not fitted"):
        Monitor().check(pa.table({"x": [1.0]}))


def test_constructor_stores_its_arguments_unchanged() -> None:
    drift = DriftConfig(method="psi", share_of_features=0.5)
    features = ("a", "b")
    monitor = Monitor(drift=drift, task="regression", features=features)
    assert monitor.drift is drift and monitor.features is features
    assert monitor.task == "regression"
    assert not hasattr(monitor, "reference_")
    with pytest.raises(TypeError):
        Monitor(drift)  # type: ignore[misc]


def test_fit_takes_a_model_version_profile() -> None:
    features = profile_table(pa.table({"x": np.arange(100.0), "c": ["a", "b"] * 50}))
    predictions = profile_table(pa.table({"prediction": np.linspace(0, 1, 100)}))
    monitor = Monitor().fit(
        {
            "features": features.to_dict(),
            "predictions": predictions.to_dict(),
            "metrics": {"roc_auc": 0.8, "f1": 0.5},
        }
    )
    assert monitor.reference_.names == ["x", "c"]
    assert monitor.prediction_reference_ is not None
    assert monitor.reference_metrics_ == {"roc_auc": 0.8, "f1": 0.5}
    assert monitor.task_ == "classification"
    assert monitor.features_ == ["x", "c"]


@pytest.mark.parametrize(
    "bad",
    [{"nothing": 1}, {"features": {"format": "other"}}, 42],
    ids=["unknown-mapping", "bad-profile", "number"],
)
def test_fit_refuses_what_is_not_a_profile(bad: object) -> None:
    with pytest.raises(MonitorError):
        Monitor().fit(bad)  # type: ignore[arg-type]


def test_fit_refuses_unknown_features() -> None:
    reference = profile_table(pa.table({"x": [1.0, 2.0]}))
    with pytest.raises(MonitorError, match=r"\['y'\]"):
        Monitor(features=["x", "y"]).fit(reference)


def test_winter_reference_flags_summer_flights(flights: pa.Table, winter_profile: object) -> None:
    monitor = Monitor().fit(winter_profile)  # type: ignore[arg-type]
    summer = months(flights, 6, 7).select(FEATURES)
    result = monitor.check(summer)
    assert isinstance(result, CheckResult)
    assert result.verdict == "drift" and result.dataset_drift
    drifted = {f.feature for f in result.features if f.drifted}
    assert {"temp", "dewp", "month"} <= drifted
    assert result.features[0].drifted  # most drifted first
    assert result.window.n_rows == summer.num_rows
    assert result.n_reference == months(flights, 1, 2).num_rows
    assert result.prediction is None and result.performance is None
    assert any(q.feature == "temp" and q.kind == "out_of_range" for q in result.quality)


def test_winter_reference_accepts_winter_flights(flights: pa.Table, winter_profile: object) -> None:
    winter = months(flights, 1, 2).select(FEATURES)
    sample = winter.take(pa.array(np.arange(1, winter.num_rows, 7)))
    result = Monitor().fit(winter_profile).check(sample.to_pandas())  # type: ignore[arg-type]
    assert not result.dataset_drift
    assert result.share_drifted < 0.3


def _log_records(n: int, *, shift: float, labels: bool) -> pa.Table:
    rng = np.random.default_rng(1)
    score = np.clip(rng.uniform(0, 1, n) + shift, 0, 1)
    late = (rng.uniform(0, 1, n) < score).astype(float)
    label = pa.array([v if (labels and i % 2 == 0) else None for i, v in enumerate(late)])
    return pa.table(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "row": pa.array(np.zeros(n, np.int32)),
            "ts": pa.array(np.arange(n, dtype=np.int64) * 1_000_000, pa.timestamp("us", tz="UTC")),
            "version": pa.array(np.full(n, 4, np.int32)),
            "prediction": (score >= 0.5).astype(float),
            "score": score,
            "f.x": rng.normal(shift * 10, 1.0, n),
            "f.colour": rng.choice(["red", "blue"], n),
            "label": label,
        }
    )


def _log_monitor() -> Monitor:
    rng = np.random.default_rng(0)
    reference = profile_table(
        pa.table({"x": rng.normal(0, 1, 5000), "colour": rng.choice(["red", "blue"], 5000)})
    )
    predictions = profile_table(pa.table({"prediction": rng.uniform(0, 1, 5000)}))
    return Monitor(performance=PerformanceConfig(metric="roc_auc", max_drop=0.05)).fit(
        {
            "features": reference.to_dict(),
            "predictions": predictions.to_dict(),
            "metrics": {"roc_auc": 0.99, "accuracy": 0.9},
        }
    )


def test_check_log_window_maps_features_scores_and_labels() -> None:
    records = _log_records(2000, shift=0.0, labels=True)
    result = _log_monitor().check_log_window(records)
    assert {f.feature for f in result.features} == {"x", "colour"}
    assert not result.dataset_drift
    assert result.prediction is not None and not result.prediction.drifted
    assert result.performance is not None
    assert result.performance.n_labelled == 1000
    assert set(result.performance.metrics) == {"roc_auc", "accuracy"}
    assert result.performance.degraded  # 0.99 was the reference
    assert result.verdict == "degraded"
    assert result.window.model_version == 4 and result.window.n_rows == 2000
    assert result.window.start is not None and result.window.end is not None


def test_check_log_window_drift_and_no_labels() -> None:
    records = _log_records(2000, shift=0.4, labels=False)
    window = WindowSpec(None, None, 2000, model_version=4, label="w")
    result = _log_monitor().check_log_window(records, window=window)
    assert result.window is window
    assert {f.feature for f in result.features if f.drifted} == {"x"}
    assert result.prediction is not None and result.prediction.drifted
    assert result.performance is None
    assert result.verdict == "drift"


def test_check_log_window_needs_feature_columns() -> None:
    records = _log_records(10, shift=0.0, labels=False).drop_columns(["f.x", "f.colour"])
    with pytest.raises(MonitorError, match=r"f\.<feature>"):
        _log_monitor().check_log_window(records)


def test_labels_need_a_task_and_a_metric_of_that_task() -> None:
    reference = profile_table(pa.table({"x": np.arange(100.0)}))
    y = np.array([0.0, 1.0, 1.0, 0.0])
    with pytest.raises(MonitorError, match="task is unknown"):
        Monitor().fit(reference).check(pa.table({"x": np.arange(4.0)}), y_true=y, y_pred=y)
    regression = Monitor(task="regression").fit(reference)
    with pytest.raises(MonitorError, match="not a regression metric"):
        regression.check(pa.table({"x": np.arange(4.0)}), y_true=y, y_pred=y)


def test_predictions_need_a_prediction_profile() -> None:
    monitor = Monitor().fit(profile_table(pa.table({"x": np.arange(100.0)})))
    with pytest.raises(MonitorError, match="no prediction profile"):
        monitor.check(pa.table({"x": np.arange(4.0)}), predictions=np.arange(4.0))


def test_performance_from_scores_alone() -> None:
    reference = profile_table(pa.table({"x": np.arange(100.0)}))
    monitor = Monitor(task="classification", performance=PerformanceConfig(metric="roc_auc"))
    monitor.fit(reference, metrics={"roc_auc": 0.5})
    score = np.array([0.1, 0.9, 0.8, 0.3])
    y = np.array([0.0, 1.0, 1.0, 0.0])
    result = monitor.check(pa.table({"x": np.arange(4.0)}), y_true=y, y_score=score)
    assert result.performance is not None
    assert result.performance.metrics["roc_auc"] == pytest.approx(1.0)
    assert not result.performance.degraded
