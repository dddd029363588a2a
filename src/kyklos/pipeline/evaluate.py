"""Evaluation metrics, one implementation per name in :mod:`kyklos.config.metrics`.

Classification metrics work for binary targets and, where scikit-learn supports it, multiclass
targets (macro averages; ``roc_auc`` one-vs-rest). For a binary target ``y_score`` is the
probability of the positive class (the larger label, as in ``estimator.classes_[1]``) and the
label metrics use ``y_score >= threshold``; for a multiclass target ``y_score`` holds one column
per class in sorted label order (``predict_proba``). ``calibration_error`` is the expected
calibration error over 10 equal-width probability bins (top-label confidence for multiclass).

A metric that is undefined for the data (``roc_auc`` when the test part holds a single class)
is ``nan``.

>>> compute_metrics("regression", [1.0, 2.0, 4.0], y_pred=[1.0, 2.0, 2.0], metrics=["mae"])
{'mae': 0.6666666666666666}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from kyklos.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "CALIBRATION_BINS",
    "CLASSIFICATION_IMPLEMENTATIONS",
    "REGRESSION_IMPLEMENTATIONS",
    "compute_metrics",
    "expected_calibration_error",
    "predict_for_eval",
]

CALIBRATION_BINS = 10


class _Data:
    """The arrays one metric needs, prepared once per :func:`compute_metrics` call."""

    def __init__(
        self, y_true: Any, y_pred: Any, y_score: Any, threshold: float, labels: Any
    ) -> None:
        import numpy as np

        self.y_true = np.asarray(y_true)
        self.y_pred = np.asarray(y_pred)
        self.y_score = None if y_score is None else np.asarray(y_score, dtype=float)
        if labels is not None:
            self.labels = np.asarray(labels)
        else:
            self.labels = np.unique(np.concatenate([self.y_true, self.y_pred]))
        if self.y_score is not None and self.y_score.ndim == 2:
            if self.y_score.shape[1] != max(len(self.labels), 2):
                raise DataError(
                    f"y_score has {self.y_score.shape[1]} columns but there are "
                    f"{len(self.labels)} labels ({list(self.labels)[:10]}). "
                    "Hint: pass labels=model.classes_"
                )
            self.binary = self.y_score.shape[1] == 2
            if self.binary:
                self.y_score = self.y_score[:, 1]
        else:
            self.binary = len(self.labels) <= 2
        if self.binary:
            if len(self.labels) == 2:
                self.negative, self.positive = self.labels[0], self.labels[1]
            else:  # one label seen: guess the other side (pass labels= to be exact)
                self.negative, self.positive = _pair(self.labels[0] if len(self.labels) else 0)
            if self.y_score is not None:
                if self.y_score.ndim != 1:
                    raise DataError("a binary y_score must be one column (the positive class)")
                self.y_pred = np.where(self.y_score >= threshold, self.positive, self.negative)
            self.y_true_bin = (self.y_true == self.positive).astype(int)
        elif self.y_score is not None and self.y_score.ndim != 2:
            raise DataError(
                "a multiclass y_score must have one column per label (predict_proba output)"
            )

    def score(self, metric: str) -> npt.NDArray[np.float64]:
        if self.y_score is None:
            raise ConfigError(
                f"metric {metric!r} needs predicted probabilities, but the estimator has no "
                "predict_proba. Hint: remove it from evaluate.metrics, or use an estimator with "
                "predict_proba"
            )
        return self.y_score


def _pair(only: Any) -> tuple[Any, Any]:
    """(negative, positive) when a single label was seen."""
    if isinstance(only, str):
        return only, f"not {only}"
    return (only, 1) if only == 0 else (0, only)


def _single_class(data: _Data) -> bool:
    import numpy as np

    return len(np.unique(data.y_true)) < 2


def _accuracy(d: _Data) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(d.y_true, d.y_pred))


def _balanced_accuracy(d: _Data) -> float:
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "y_pred contains classes not in y_true"
        return float(balanced_accuracy_score(d.y_true, d.y_pred))


def _prf(name: str) -> Callable[[_Data], float]:
    def metric(d: _Data) -> float:
        from sklearn import metrics

        fn = getattr(metrics, f"{name}_score")
        if d.binary:
            return float(
                fn(d.y_true, d.y_pred, pos_label=d.positive, average="binary", zero_division=0)
            )
        return float(fn(d.y_true, d.y_pred, average="macro", zero_division=0, labels=d.labels))

    metric.__name__ = f"_{name}"
    return metric


def _roc_auc(d: _Data) -> float:
    from sklearn.metrics import roc_auc_score

    score = d.score("roc_auc")
    if _single_class(d):
        return math.nan
    if d.binary:
        return float(roc_auc_score(d.y_true_bin, score))
    try:
        return float(
            roc_auc_score(d.y_true, score, multi_class="ovr", average="macro", labels=d.labels)
        )
    except ValueError:  # a class missing from the test part
        return math.nan


def _average_precision(d: _Data) -> float:
    from sklearn.metrics import average_precision_score
    from sklearn.preprocessing import label_binarize

    score = d.score("average_precision")
    if d.binary:
        if d.y_true_bin.sum() == 0:
            return math.nan
        return float(average_precision_score(d.y_true_bin, score))
    return float(
        average_precision_score(label_binarize(d.y_true, classes=d.labels), score, average="macro")
    )


def _brier(d: _Data) -> float:
    import numpy as np
    from sklearn.preprocessing import label_binarize

    score = d.score("brier")
    if d.binary:
        return float(np.mean((score - d.y_true_bin) ** 2))
    onehot = label_binarize(d.y_true, classes=d.labels)
    return float(np.mean(np.sum((score - onehot) ** 2, axis=1)))


def _log_loss(d: _Data) -> float:
    from sklearn.metrics import log_loss

    score = d.score("log_loss")
    if d.binary:
        return float(log_loss(d.y_true_bin, score, labels=[0, 1]))
    return float(log_loss(d.y_true, score, labels=d.labels))


def _calibration_error(d: _Data) -> float:
    score = d.score("calibration_error")
    if d.binary:
        return expected_calibration_error(d.y_true_bin, score)
    confidence = score.max(axis=1)
    correct = (d.labels[score.argmax(axis=1)] == d.y_true).astype(int)
    return expected_calibration_error(correct, confidence)


def expected_calibration_error(y_true: Any, y_prob: Any, *, bins: int = CALIBRATION_BINS) -> float:
    """ECE: the share-weighted mean of ``|observed rate - mean probability|`` over equal-width bins.

    >>> expected_calibration_error([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3])
    0.175
    """
    import numpy as np

    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_prob, dtype=float)
    if len(p) == 0:
        return math.nan
    if (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must lie in [0, 1]")
    # Bin i holds p in [i/bins, (i+1)/bins); p == 1 goes into the last bin.
    index = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    sum_p = np.bincount(index, weights=p, minlength=bins)
    sum_y = np.bincount(index, weights=y, minlength=bins)
    filled = counts > 0
    gaps = np.abs(sum_y[filled] - sum_p[filled])  # = count * |rate - mean p|
    return float(round(gaps.sum() / len(p), 15))


def _mae(y_true: Any, y_pred: Any) -> float:
    from sklearn.metrics import mean_absolute_error

    return float(mean_absolute_error(y_true, y_pred))


def _mape(y_true: Any, y_pred: Any) -> float:
    from sklearn.metrics import mean_absolute_percentage_error

    return float(mean_absolute_percentage_error(y_true, y_pred))


def _median_ae(y_true: Any, y_pred: Any) -> float:
    from sklearn.metrics import median_absolute_error

    return float(median_absolute_error(y_true, y_pred))


def _r2(y_true: Any, y_pred: Any) -> float:
    from sklearn.metrics import r2_score

    if len(y_true) < 2:
        return math.nan
    return float(r2_score(y_true, y_pred))


def _rmse(y_true: Any, y_pred: Any) -> float:
    from sklearn.metrics import root_mean_squared_error

    return float(root_mean_squared_error(y_true, y_pred))


CLASSIFICATION_IMPLEMENTATIONS: dict[str, Callable[[_Data], float]] = {
    "accuracy": _accuracy,
    "average_precision": _average_precision,
    "balanced_accuracy": _balanced_accuracy,
    "brier": _brier,
    "calibration_error": _calibration_error,
    "f1": _prf("f1"),
    "log_loss": _log_loss,
    "precision": _prf("precision"),
    "recall": _prf("recall"),
    "roc_auc": _roc_auc,
}

REGRESSION_IMPLEMENTATIONS: dict[str, Callable[[Any, Any], float]] = {
    "mae": _mae,
    "mape": _mape,
    "median_ae": _median_ae,
    "r2": _r2,
    "rmse": _rmse,
}


def compute_metrics(
    task: str,
    y_true: Any,
    *,
    y_pred: Any,
    y_score: Any = None,
    metrics: Sequence[str],
    threshold: float = 0.5,
    labels: Any = None,
) -> dict[str, float]:
    """The named metrics of predictions against the truth, as plain floats.

    ``labels`` are the classes in the order of ``y_score``'s columns (``model.classes_``); by
    default the sorted labels seen in ``y_true`` and ``y_pred``. Pass them whenever the test
    part may lack a class.

    Raises :class:`~kyklos.errors.ConfigError` for an unknown metric, a metric of the other task,
    or a probability metric without ``y_score``.
    """
    if task == "classification":
        table: dict[str, Any] = CLASSIFICATION_IMPLEMENTATIONS
        other: dict[str, Any] = REGRESSION_IMPLEMENTATIONS
    elif task == "regression":
        table, other = REGRESSION_IMPLEMENTATIONS, CLASSIFICATION_IMPLEMENTATIONS
    else:
        raise ConfigError(f"task {task!r} is unknown; expected classification or regression")
    for name in metrics:
        if name in other:
            raise ConfigError(
                f"metric {name!r} is not a {task} metric; choose from {', '.join(table)}"
            )
        if name not in table:
            raise ConfigError(f"metric {name!r} is unknown; {task} metrics: {', '.join(table)}")
    if task == "regression":
        import numpy as np

        truth = np.asarray(y_true, dtype=float)
        pred = np.asarray(y_pred, dtype=float)
        return {name: REGRESSION_IMPLEMENTATIONS[name](truth, pred) for name in metrics}
    data = _Data(y_true, y_pred, y_score, threshold, labels)
    return {name: CLASSIFICATION_IMPLEMENTATIONS[name](data) for name in metrics}


def predict_for_eval(model: Any, X: Any, task: str) -> tuple[Any, Any]:
    """``(y_pred, y_score)``: labels or values, and for classifiers the probabilities.

    ``y_score`` is the positive-class column for a binary classifier, the full
    ``predict_proba`` matrix for a multiclass one, and None without ``predict_proba``.
    """
    y_pred = model.predict(X)
    if task != "classification" or not hasattr(model, "predict_proba"):
        return y_pred, None
    try:
        proba = model.predict_proba(X)
    except AttributeError:  # e.g. SVC(probability=False) exposes the method but refuses
        return y_pred, None
    if proba.ndim == 2 and proba.shape[1] == 2:
        return y_pred, proba[:, 1]
    return y_pred, proba
