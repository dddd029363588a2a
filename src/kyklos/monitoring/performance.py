"""Live performance of a window's labelled rows against the model version's reference metrics.

The metrics are the project's own (``evaluate.metrics``), computed by the same code as at
training time (:func:`kyklos.pipeline.evaluate.compute_metrics`), so a live ROC AUC and the one
the registry stored are the same function of their inputs. The watched metric
(``monitor.performance.metric``) degrades when it falls more than ``max_drop`` below its
reference value — or, for a metric where lower is better (log loss, calibration error, MAE,
RMSE, ...; :data:`kyklos.config.metrics.HIGHER_IS_BETTER`), rises more than ``max_drop`` above.

Metrics that need probabilities are skipped when the window has none (``y_score=None``),
unless the watched metric needs them (then :class:`~kyklos.errors.MonitorError`). Metrics that
are undefined on the window (ROC AUC on rows of a single class) are left out of the result;
if that is the watched one, ``drop`` is None and the window does not count as degraded.

>>> result = check_performance(
...     "regression", [1.0, 2.0, 3.0], y_pred=[1.5, 2.5, 3.5],
...     reference_metrics={"mae": 0.2}, metrics=["mae"], metric="mae", max_drop=0.1)
>>> result.metrics, round(result.drop, 2), result.degraded
({'mae': 0.5}, 0.3, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from kyklos.config.metrics import HIGHER_IS_BETTER
from kyklos.errors import MonitorError
from kyklos.monitoring.results import PerformanceResult

__all__ = ["SCORE_METRICS", "check_performance", "metric_drop"]

SCORE_METRICS = frozenset(
    {"average_precision", "brier", "calibration_error", "log_loss", "roc_auc"}
)


def metric_drop(metric: str, reference: float, current: float) -> float:
    """How much worse ``current`` is than ``reference`` (positive = worse), by the metric's
    direction.

    >>> round(metric_drop("roc_auc", 0.80, 0.75), 2), round(metric_drop("rmse", 2.0, 2.5), 2)
    (0.05, 0.5)
    """
    higher = HIGHER_IS_BETTER.get(metric)
    if higher is None:
        raise MonitorError(
            f"metric {metric!r} is unknown; known metrics: {', '.join(sorted(HIGHER_IS_BETTER))}. "
            "Hint: set monitor.performance.metric to one of the project's evaluate.metrics"
        )
    return reference - current if higher else current - reference


def check_performance(
    task: str,
    y_true: Any,
    *,
    y_pred: Any,
    y_score: Any = None,
    reference_metrics: Mapping[str, float],
    metrics: Sequence[str],
    metric: str,
    max_drop: float,
    threshold: float = 0.5,
) -> PerformanceResult:
    """Metrics of the labelled rows (``y_true`` against ``y_pred`` / ``y_score``) and the
    verdict on the watched ``metric``: degraded when its drop exceeds ``max_drop``."""
    import numpy as np

    from kyklos.pipeline.evaluate import compute_metrics

    metric_drop(metric, 0.0, 0.0)  # an unknown watched metric fails here, with the names
    n_labelled = len(y_true)
    if len(y_pred) != n_labelled or (y_score is not None and len(y_score) != n_labelled):
        raise MonitorError(
            f"performance needs one prediction per label: {n_labelled} labels, "
            f"{len(y_pred)} predictions"
            + ("" if y_score is None else f", {len(y_score)} scores")
            + ". Hint: join labels to predictions by request id"
        )
    if metric in SCORE_METRICS and y_score is None and n_labelled:
        raise MonitorError(
            f"monitor.performance.metric {metric!r} needs predicted probabilities, but the "
            "window has none. Hint: log the model's probabilities, or watch a label metric "
            "such as f1 or accuracy"
        )
    wanted = list(dict.fromkeys([*metrics, metric]))
    if y_score is None:
        wanted = [m for m in wanted if m not in SCORE_METRICS]
    values: dict[str, float] = {}
    if n_labelled:
        computed = compute_metrics(
            task,
            np.asarray(y_true),
            y_pred=np.asarray(y_pred),
            y_score=None if y_score is None else np.asarray(y_score),
            metrics=wanted,
            threshold=threshold,
        )
        values = {k: float(v) for k, v in computed.items() if math.isfinite(v)}
    reference = {
        str(k): float(v)
        for k, v in reference_metrics.items()
        if isinstance(v, int | float) and math.isfinite(float(v))
    }
    drop: float | None = None
    if metric in values and metric in reference:
        drop = metric_drop(metric, reference[metric], values[metric])
    return PerformanceResult(
        n_labelled=n_labelled,
        metrics=values,
        reference=reference,
        metric=metric,
        drop=drop,
        max_drop=max_drop,
        degraded=drop is not None and drop > max_drop,
    )
