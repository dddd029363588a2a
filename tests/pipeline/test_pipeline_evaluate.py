"""Evaluation metrics against scikit-learn on known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression, Ridge

from kyklos.config.metrics import CLASSIFICATION_METRICS, HIGHER_IS_BETTER, REGRESSION_METRICS
from kyklos.errors import ConfigError
from kyklos.pipeline.evaluate import (
    CLASSIFICATION_IMPLEMENTATIONS,
    REGRESSION_IMPLEMENTATIONS,
    compute_metrics,
    expected_calibration_error,
    predict_for_eval,
)

Y_TRUE = np.array([0, 0, 1, 1, 0, 1, 1, 0, 1, 0])
SCORE = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.6, 0.55, 0.7, 0.05])
Y_PRED = (SCORE >= 0.5).astype(int)


def test_implementations_match_the_configured_names() -> None:
    assert set(CLASSIFICATION_IMPLEMENTATIONS) == set(CLASSIFICATION_METRICS)
    assert set(REGRESSION_IMPLEMENTATIONS) == set(REGRESSION_METRICS)
    assert set(HIGHER_IS_BETTER) == set(CLASSIFICATION_METRICS) | set(REGRESSION_METRICS)


def _ece(y: np.ndarray, p: np.ndarray) -> float:
    total = 0.0
    for low in np.arange(10) / 10:
        mask = (p >= low) & ((p < low + 0.1) if low < 0.9 else (p <= 1.0))
        if mask.any():
            total += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return total


def test_binary_metrics_equal_sklearn() -> None:
    got = compute_metrics(
        "classification", Y_TRUE, y_pred=Y_PRED, y_score=SCORE, metrics=CLASSIFICATION_METRICS
    )
    expected = {
        "accuracy": skm.accuracy_score(Y_TRUE, Y_PRED),
        "average_precision": skm.average_precision_score(Y_TRUE, SCORE),
        "balanced_accuracy": skm.balanced_accuracy_score(Y_TRUE, Y_PRED),
        "brier": skm.brier_score_loss(Y_TRUE, SCORE),
        "calibration_error": _ece(Y_TRUE, SCORE),
        "f1": skm.f1_score(Y_TRUE, Y_PRED),
        "log_loss": skm.log_loss(Y_TRUE, SCORE),
        "precision": skm.precision_score(Y_TRUE, Y_PRED),
        "recall": skm.recall_score(Y_TRUE, Y_PRED),
        "roc_auc": skm.roc_auc_score(Y_TRUE, SCORE),
    }
    assert got == pytest.approx(expected, abs=1e-12)
    assert all(type(v) is float for v in got.values())
    assert got["accuracy"] == 0.8  # known value: two mistakes in ten


def test_calibration_error_known_values() -> None:
    assert expected_calibration_error([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3]) == pytest.approx(0.175)
    assert expected_calibration_error([1, 1], [1.0, 1.0]) == 0.0
    assert expected_calibration_error([0, 0], [1.0, 1.0]) == 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([0], [1.5])


def test_threshold_moves_the_label_metrics() -> None:
    low = compute_metrics(
        "classification",
        Y_TRUE,
        y_pred=Y_PRED,
        y_score=SCORE,
        metrics=["recall", "roc_auc"],
        threshold=0.3,
    )
    default = compute_metrics(
        "classification", Y_TRUE, y_pred=Y_PRED, y_score=SCORE, metrics=["recall", "roc_auc"]
    )
    assert low["recall"] == 1.0 > default["recall"]
    assert low["roc_auc"] == default["roc_auc"]


def test_string_labels_use_the_larger_label_as_positive() -> None:
    truth = np.where(Y_TRUE == 1, "yes", "no")
    pred = np.where(Y_PRED == 1, "yes", "no")
    got = compute_metrics(
        "classification", truth, y_pred=pred, y_score=SCORE, metrics=["f1", "roc_auc", "log_loss"]
    )
    assert got["f1"] == pytest.approx(skm.f1_score(Y_TRUE, Y_PRED))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(Y_TRUE, SCORE))
    assert got["log_loss"] == pytest.approx(skm.log_loss(Y_TRUE, SCORE))


def test_multiclass_metrics_equal_sklearn() -> None:
    rng = np.random.RandomState(0)
    truth = rng.choice(["a", "b", "c"], size=60)
    proba = rng.dirichlet([1, 1, 1], size=60)
    proba[np.arange(60), np.searchsorted(["a", "b", "c"], truth)] += 0.5
    proba /= proba.sum(axis=1, keepdims=True)
    labels = np.array(["a", "b", "c"])
    pred = labels[proba.argmax(axis=1)]
    got = compute_metrics(
        "classification",
        truth,
        y_pred=pred,
        y_score=proba,
        metrics=CLASSIFICATION_METRICS,
        labels=labels,
    )
    onehot = (truth[:, None] == labels).astype(int)
    expected = {
        "accuracy": skm.accuracy_score(truth, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(truth, pred),
        "f1": skm.f1_score(truth, pred, average="macro"),
        "precision": skm.precision_score(truth, pred, average="macro"),
        "recall": skm.recall_score(truth, pred, average="macro"),
        "roc_auc": skm.roc_auc_score(truth, proba, multi_class="ovr", average="macro"),
        "average_precision": skm.average_precision_score(onehot, proba, average="macro"),
        "log_loss": skm.log_loss(truth, proba, labels=labels),
        "brier": float(np.mean(np.sum((proba - onehot) ** 2, axis=1))),
        "calibration_error": _ece((pred == truth).astype(int), proba.max(axis=1)),
    }
    assert got == pytest.approx(expected, abs=1e-12)


def test_multiclass_scores_need_matching_labels() -> None:
    from kyklos.errors import DataError

    with pytest.raises(DataError, match=r"pass labels=model\.classes_"):
        compute_metrics(
            "classification",
            ["a", "b"],
            y_pred=["a", "b"],
            y_score=np.full((2, 3), 1 / 3),
            metrics=["log_loss"],
        )


def test_regression_metrics_equal_sklearn() -> None:
    truth = np.array([3.0, -0.5, 2.0, 7.0, 4.2])
    pred = np.array([2.5, 0.0, 2.0, 8.0, 4.0])
    got = compute_metrics("regression", truth, y_pred=pred, metrics=REGRESSION_METRICS)
    assert got == pytest.approx(
        {
            "mae": skm.mean_absolute_error(truth, pred),
            "mape": skm.mean_absolute_percentage_error(truth, pred),
            "median_ae": skm.median_absolute_error(truth, pred),
            "r2": skm.r2_score(truth, pred),
            "rmse": math.sqrt(skm.mean_squared_error(truth, pred)),
        },
        abs=1e-12,
    )
    assert got["mae"] == pytest.approx(0.44)
    assert got["median_ae"] == 0.5


def test_undefined_metrics_are_nan() -> None:
    got = compute_metrics(
        "classification",
        [1, 1, 1],
        y_pred=[1, 0, 1],
        y_score=[0.9, 0.2, 0.8],
        metrics=["roc_auc", "accuracy"],
    )
    assert math.isnan(got["roc_auc"])
    assert got["accuracy"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("task", "names", "score", "expected"),
    [
        ("classification", ["rmse"], SCORE, r"metric 'rmse' is not a classification metric"),
        ("regression", ["roc_auc"], None, r"metric 'roc_auc' is not a regression metric"),
        ("classification", ["auc"], SCORE, r"metric 'auc' is unknown"),
        ("classification", ["log_loss"], None, r"'log_loss' needs predicted probabilities"),
        ("clustering", ["accuracy"], None, r"task 'clustering' is unknown"),
    ],
    ids=["wrong-task", "wrong-task-regression", "unknown", "needs-scores", "task"],
)
def test_metric_errors(task: str, names: list[str], score: object, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        compute_metrics(task, Y_TRUE, y_pred=Y_PRED, y_score=score, metrics=names)


def test_predict_for_eval() -> None:
    X = np.arange(40, dtype=float).reshape(20, 2)
    y = (X[:, 0] > 18).astype(int)
    clf = LogisticRegression().fit(X, y)
    pred, score = predict_for_eval(clf, X, "classification")
    assert score.shape == (20,)
    assert np.array_equal(score, clf.predict_proba(X)[:, 1])
    assert np.array_equal(pred, clf.predict(X))
    y3 = np.repeat([0, 1, 2], [7, 7, 6])
    _, score3 = predict_for_eval(LogisticRegression().fit(X, y3), X, "classification")
    assert score3.shape == (20, 3)
    reg_pred, reg_score = predict_for_eval(Ridge().fit(X, X[:, 0]), X, "regression")
    assert reg_score is None and reg_pred.shape == (20,)
