"""Names of the evaluation metrics a project may ask for, by task.

The implementations live in :mod:`kyklos.pipeline.evaluate`; a test keeps both in sync.
For every metric we also record whether higher is better, which gates and reports use.
"""

from __future__ import annotations

__all__ = ["CLASSIFICATION_METRICS", "HIGHER_IS_BETTER", "REGRESSION_METRICS", "TASKS"]

TASKS = ("classification", "regression")

CLASSIFICATION_METRICS: tuple[str, ...] = (
    "accuracy",
    "average_precision",
    "balanced_accuracy",
    "brier",
    "calibration_error",
    "f1",
    "log_loss",
    "precision",
    "recall",
    "roc_auc",
)

REGRESSION_METRICS: tuple[str, ...] = (
    "mae",
    "mape",
    "median_ae",
    "r2",
    "rmse",
)

HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "average_precision": True,
    "balanced_accuracy": True,
    "brier": False,
    "calibration_error": False,
    "f1": True,
    "log_loss": False,
    "precision": True,
    "recall": True,
    "roc_auc": True,
    "mae": False,
    "mape": False,
    "median_ae": False,
    "r2": True,
    "rmse": False,
}
