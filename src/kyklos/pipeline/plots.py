"""Evaluation plots as PNG bytes, ready to log as run artifacts.

Classification: ``roc_curve.png`` and ``pr_curve.png`` (when scores are available; one curve
per class, one-vs-rest, for multiclass targets) and ``confusion_matrix.png``. Regression:
``residuals.png`` and ``predicted_vs_actual.png`` (at most 5,000 points, a seeded sample).

Figures are drawn with Matplotlib's Agg canvas directly (no ``pyplot``, no global state, safe in
threads), small (5×4 in at 100 dpi) and deterministic: the same inputs give the same bytes.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["evaluation_plots"]

_SIZE = (5.0, 4.0)
_DPI = 100
_MAX_POINTS = 5000
_MAX_CLASSES = 10
_MAX_MATRIX = 25


def evaluation_plots(
    task: str, y_true: Any, y_pred: Any, y_score: Any = None, *, labels: Any = None
) -> dict[str, bytes]:
    """PNG images by file name. ``labels`` orders ``y_score``'s columns (``model.classes_``)."""
    import numpy as np

    truth = np.asarray(y_true)
    pred = np.asarray(y_pred)
    if task == "regression":
        return {
            "residuals.png": _residuals(truth.astype(float), pred.astype(float)),
            "predicted_vs_actual.png": _predicted_vs_actual(
                truth.astype(float), pred.astype(float)
            ),
        }
    classes = np.asarray(labels) if labels is not None else np.unique(np.concatenate([truth, pred]))
    plots: dict[str, bytes] = {}
    if y_score is not None and len(truth) > 0:
        score = np.asarray(y_score, dtype=float)
        if score.ndim == 2 and score.shape[1] == 2:
            score = score[:, 1]
        if score.ndim == 1:
            positive = classes[-1] if len(classes) else 1
            curves = [(str(positive), (truth == positive).astype(int), score)]
        else:
            curves = [
                (str(c), (truth == c).astype(int), score[:, i])
                for i, c in enumerate(classes[:_MAX_CLASSES])
            ]
        plots["roc_curve.png"] = _roc(curves)
        plots["pr_curve.png"] = _pr(curves)
    plots["confusion_matrix.png"] = _confusion(truth, pred, classes)
    return plots


def _figure() -> tuple[Figure, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _roc(curves: list[tuple[str, Any, Any]]) -> bytes:
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = _figure()
    for name, y, score in curves:
        if y.min() == y.max():
            continue  # a single class: no curve
        fpr, tpr, _ = roc_curve(y, score)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, score):.3f})", linewidth=1.5)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize="small")
    return _png(fig)


def _pr(curves: list[tuple[str, Any, Any]]) -> bytes:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = _figure()
    for name, y, score in curves:
        if y.sum() == 0:
            continue
        precision, recall, _ = precision_recall_curve(y, score)
        ap = average_precision_score(y, score)
        ax.plot(
            recall, precision, label=f"{name} (AP {ap:.3f})", linewidth=1.5, drawstyle="steps-post"
        )
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize="small")
    return _png(fig)


def _confusion(truth: Any, pred: Any, classes: Any) -> bytes:
    import numpy as np
    from sklearn.metrics import confusion_matrix

    shown = classes[:_MAX_MATRIX]
    matrix = confusion_matrix(truth, pred, labels=shown) if len(shown) else np.zeros((0, 0))
    fig, ax = _figure()
    ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    ticks = np.arange(len(shown))
    names = [str(c) for c in shown]
    ax.set_xticks(ticks, names, rotation=45 if len(shown) > 4 else 0, fontsize="small")
    ax.set_yticks(ticks, names, fontsize="small")
    ax.set(xlabel="predicted", ylabel="actual", title="Confusion matrix")
    if len(shown) <= 10:
        limit = matrix.max() / 2 if matrix.size else 0
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                fontsize="small",
                color="white" if count > limit else "black",
            )
    return _png(fig)


def _sample(*arrays: Any) -> list[Any]:
    import numpy as np

    n = len(arrays[0])
    if n <= _MAX_POINTS:
        return list(arrays)
    keep = np.sort(np.random.RandomState(0).choice(n, _MAX_POINTS, replace=False))
    return [a[keep] for a in arrays]


def _residuals(truth: Any, pred: Any) -> bytes:
    truth, pred = _sample(truth, pred)
    fig, ax = _figure()
    ax.scatter(pred, truth - pred, s=4, alpha=0.4, linewidths=0)
    ax.axhline(0.0, color="grey", linestyle="--", linewidth=0.8)
    ax.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals")
    return _png(fig)


def _predicted_vs_actual(truth: Any, pred: Any) -> bytes:
    truth, pred = _sample(truth, pred)
    fig, ax = _figure()
    ax.scatter(truth, pred, s=4, alpha=0.4, linewidths=0)
    if len(truth):
        low = float(min(truth.min(), pred.min()))
        high = float(max(truth.max(), pred.max()))
        ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=0.8)
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual")
    return _png(fig)
