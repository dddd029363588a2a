"""Live performance against the reference metrics: the drop follows each metric's direction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kyklos.errors import ConfigError, MonitorError
from kyklos.monitoring.performance import check_performance

RNG = np.random.default_rng(0)
Y = RNG.integers(0, 2, 2_000)
GOOD = np.clip(Y * 0.6 + RNG.random(2_000) * 0.4, 0, 1)  # separates the classes well
POOR = np.clip(Y * 0.1 + RNG.random(2_000) * 0.9, 0, 1)


def _classification(score: np.ndarray, **kwargs: object):  # type: ignore[no-untyped-def]
    options: dict[str, object] = {
        "reference_metrics": {"roc_auc": 0.95, "log_loss": 0.40, "f1": 0.8},
        "metrics": ["roc_auc", "log_loss", "f1"],
        "metric": "roc_auc",
        "max_drop": 0.03,
    }
    options.update(kwargs)
    return check_performance(
        "classification", Y, y_pred=(score >= 0.5).astype(int), y_score=score, **options
    )


def test_higher_is_better_metric_degrades_when_it_falls() -> None:
    good, poor = _classification(GOOD), _classification(POOR)
    assert good.metrics["roc_auc"] > 0.95 and good.drop is not None and good.drop < 0
    assert good.degraded is False
    assert poor.drop == pytest.approx(0.95 - poor.metrics["roc_auc"])
    assert poor.drop > 0.03 and poor.degraded is True
    assert poor.n_labelled == 2_000
    assert set(poor.metrics) == {"roc_auc", "log_loss", "f1"}


def test_lower_is_better_metric_degrades_when_it_rises() -> None:
    poor = _classification(POOR, metric="log_loss", max_drop=0.05)
    assert poor.drop == pytest.approx(poor.metrics["log_loss"] - 0.40)
    assert poor.degraded is True
    better = _classification(GOOD, metric="log_loss", reference_metrics={"log_loss": 5.0})
    assert better.drop is not None and better.drop < 0 and better.degraded is False


@pytest.mark.parametrize(
    ("metric", "reference", "degraded"),
    [("rmse", 0.5, True), ("rmse", 2.0, False), ("r2", 0.99, True), ("r2", 0.2, False)],
    ids=["rmse-worse", "rmse-better", "r2-worse", "r2-better"],
)
def test_regression_directions(metric: str, reference: float, degraded: bool) -> None:
    y = np.linspace(0, 10, 500)
    pred = y + np.where(np.arange(500) % 2, 1.0, -1.0)  # rmse 1, r2 ≈ 0.88
    result = check_performance(
        "regression",
        y,
        y_pred=pred,
        reference_metrics={metric: reference},
        metrics=["mae", "rmse", "r2"],
        metric=metric,
        max_drop=0.05,
    )
    assert result.metrics["rmse"] == pytest.approx(1.0)
    assert result.degraded is degraded


def test_an_undefined_metric_is_left_out_and_decides_nothing() -> None:
    ones = np.ones(50, dtype=int)
    result = check_performance(
        "classification",
        ones,
        y_pred=ones,
        y_score=np.full(50, 0.9),
        reference_metrics={"roc_auc": 0.9, "accuracy": 0.8},
        metrics=["roc_auc", "accuracy"],
        metric="roc_auc",
        max_drop=0.03,
    )
    assert "roc_auc" not in result.metrics
    assert result.metrics["accuracy"] == 1.0
    assert (result.drop, result.degraded) == (None, False)
    json.dumps(result.to_dict(), allow_nan=False)


def test_no_labels_yet() -> None:
    result = check_performance(
        "classification",
        [],
        y_pred=[],
        y_score=[],
        reference_metrics={"roc_auc": 0.9},
        metrics=["roc_auc"],
        metric="roc_auc",
        max_drop=0.03,
    )
    assert (result.n_labelled, result.metrics, result.drop, result.degraded) == (0, {}, None, False)


def test_label_metrics_without_scores() -> None:
    result = check_performance(
        "classification",
        Y,
        y_pred=(POOR >= 0.5).astype(int),
        reference_metrics={"f1": 0.9, "roc_auc": 0.9},
        metrics=["roc_auc", "f1"],
        metric="f1",
        max_drop=0.03,
    )
    assert set(result.metrics) == {"f1"}
    assert result.degraded is True


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"metric": "roc_auc", "y_score": None}, MonitorError, "needs predicted probabilities"),
        ({"metric": "accuracy_at_k"}, MonitorError, "'accuracy_at_k' is unknown"),
        ({"metrics": ["rmse"]}, ConfigError, "not a classification metric"),
        ({"y_pred": np.zeros(3)}, MonitorError, "2000 labels, 3 predictions"),
    ],
    ids=["watched-needs-scores", "unknown-watched", "wrong-task", "lengths"],
)
def test_bad_input(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    options: dict[str, object] = {
        "y_pred": (GOOD >= 0.5).astype(int),
        "y_score": GOOD,
        "reference_metrics": {"roc_auc": 0.9},
        "metrics": ["roc_auc"],
        "metric": "roc_auc",
        "max_drop": 0.03,
    }
    options.update(kwargs)
    with pytest.raises(error, match=message):
        check_performance("classification", Y, **options)  # type: ignore[arg-type]
