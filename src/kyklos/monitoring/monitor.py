"""The monitor: one window of data checked against a model version's reference profile.

:class:`Monitor` follows scikit-learn's contract: the keyword-only constructor arguments are
its configuration, stored unchanged; :meth:`Monitor.fit` takes a reference (the profile stored
with a model version, or any :class:`~kyklos.data.profile.TableProfile`) and sets the state
ending in ``_``; :meth:`Monitor.check` judges one window and returns a
:class:`~kyklos.monitoring.results.CheckResult`:

* data drift of every feature (:func:`~kyklos.monitoring.drift.check_drift`),
* data quality (:func:`~kyklos.monitoring.quality.check_quality`),
* prediction drift, when the window's predictions are given
  (:func:`~kyklos.monitoring.drift.prediction_drift`),
* live performance, when labels are given
  (:func:`~kyklos.monitoring.performance.check_performance`).

>>> import pyarrow as pa
>>> from kyklos.data.profile import profile_table
>>> monitor = Monitor().fit(profile_table(pa.table({"x": [float(i) for i in range(100)]})))
>>> monitor.check(pa.table({"x": [float(i) for i in range(50, 150)]})).verdict
'drift'

:meth:`Monitor.check_log_window` reads a window of prediction-log records (``f.<feature>``
columns, ``prediction``, ``score`` and a joined ``label``); the incremental monitor over the
log lives in :mod:`kyklos.monitoring.incremental`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kyklos.config.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS
from kyklos.config.project import DriftConfig, PerformanceConfig
from kyklos.data.profile import PROFILE_FORMAT, TableProfile
from kyklos.errors import DataError, MonitorError
from kyklos.monitoring.drift import check_drift, prediction_drift
from kyklos.monitoring.performance import check_performance
from kyklos.monitoring.quality import check_quality
from kyklos.monitoring.results import CheckResult, FeatureDrift, PerformanceResult, WindowSpec

__all__ = ["FEATURE_PREFIX", "Monitor", "infer_task_from_metrics", "log_window_spec"]

FEATURE_PREFIX = "f."
_DEFAULT_DRIFT = DriftConfig()
_DEFAULT_PERFORMANCE = PerformanceConfig()


class Monitor:
    """Checks windows of data against one reference.

    ``drift`` and ``performance`` are the project's ``monitor.drift`` / ``monitor.performance``
    sections; ``task`` (``classification`` or ``regression``) defaults to what the reference
    metrics tell; ``features`` to every column of the reference profile. ``missing_jump`` is
    the missing-rate rise that counts as a quality issue; ``decision_threshold`` turns binary
    scores into labels for label metrics.
    """

    def __init__(
        self,
        *,
        drift: DriftConfig = _DEFAULT_DRIFT,
        performance: PerformanceConfig = _DEFAULT_PERFORMANCE,
        task: str | None = None,
        features: Sequence[str] | None = None,
        missing_jump: float = 0.1,
        decision_threshold: float = 0.5,
    ) -> None:
        self.drift = drift
        self.performance = performance
        self.task = task
        self.features = features
        self.missing_jump = missing_jump
        self.decision_threshold = decision_threshold

    def __repr__(self) -> str:
        fitted = "fitted" if hasattr(self, "reference_") else "not fitted"
        return f"Monitor(task={self.task!r}, features={self.features!r}) [{fitted}]"

    # -- fit ----------------------------------------------------------------------------------
    def fit(
        self,
        profile: Mapping[str, Any] | TableProfile,
        *,
        metrics: Mapping[str, float] | None = None,
        predictions: TableProfile | Mapping[str, Any] | None = None,
    ) -> Self:
        """Take the reference: a model version's stored profile (``{"features": ...,
        "predictions": ..., "metrics": ...}``), a :class:`TableProfile` or its dict.

        ``metrics`` and ``predictions`` override (or supply, for a bare table profile) the
        reference metrics and the prediction profile. Sets ``reference_``,
        ``prediction_reference_``, ``reference_metrics_``, ``features_`` and ``task_``.
        """
        prediction_ref: Any = None
        reference_metrics: Mapping[str, Any] = {}
        if isinstance(profile, TableProfile):
            reference = profile
        elif isinstance(profile, Mapping) and "features" in profile:
            reference = _as_profile(profile["features"], "profile['features']")
            prediction_ref = profile.get("predictions")
            reference_metrics = profile.get("metrics") or {}
        elif isinstance(profile, Mapping) and profile.get("format") == PROFILE_FORMAT:
            reference = _as_profile(profile, "profile")
        else:
            raise MonitorError(
                f"cannot fit a Monitor on {type(profile).__name__}: expected a model version's "
                "profile ({'features', 'predictions', 'metrics'}), a TableProfile or its dict. "
                "Hint: ModelRegistry.get('champion').profile"
            )
        if predictions is not None:
            prediction_ref = predictions
        if metrics is not None:
            reference_metrics = metrics
        features = list(self.features) if self.features is not None else reference.names
        unknown = [f for f in features if f not in reference]
        if unknown:
            raise MonitorError(
                f"Monitor(features=...) names {unknown}, which the reference profile does not "
                f"have; it has {reference.names}. Hint: check the names, or the model version"
            )
        if not features:
            raise MonitorError("the reference profile has no columns to monitor")
        self.reference_ = reference
        self.prediction_reference_: TableProfile | None = (
            None if prediction_ref is None else _as_profile(prediction_ref, "the predictions")
        )
        self.reference_metrics_ = {
            str(k): float(v) for k, v in reference_metrics.items() if _is_number(v)
        }
        self.features_ = features
        self.task_ = self.task or infer_task_from_metrics(self.reference_metrics_)
        return self

    # -- check --------------------------------------------------------------------------------
    def check(
        self,
        current: Any,
        *,
        predictions: Any = None,
        y_true: Any = None,
        y_pred: Any = None,
        y_score: Any = None,
        window: WindowSpec | None = None,
    ) -> CheckResult:
        """Check one window: ``current`` holds the features (a ``pyarrow.Table`` or a pandas
        DataFrame); ``predictions`` are what the prediction profile holds (positive-class
        probabilities of a binary classifier, values of a regressor); ``y_true`` the labels of
        the labelled rows, with their ``y_pred`` and (optional) ``y_score``."""
        if not hasattr(self, "reference_"):
            raise MonitorError(
                "this Monitor is not fitted yet: call fit(profile) with a reference profile "
                "before check(). Hint: Monitor(...).fit(ModelRegistry.get('champion').profile)"
            )
        started = time.perf_counter()
        table = _as_table(current)
        drifts, share, dataset_drift = check_drift(
            self.reference_, table, config=self.drift, features=self.features_
        )
        quality = check_quality(
            self.reference_, table, features=self.features_, missing_jump=self.missing_jump
        )
        prediction = self._prediction_drift(predictions)
        performance = self._performance(y_true, y_pred, y_score)
        return CheckResult(
            window=window if window is not None else WindowSpec(None, None, table.num_rows),
            n_reference=self.reference_.n_rows,
            features=tuple(drifts),
            share_drifted=float(share),
            dataset_drift=bool(dataset_drift),
            drift_share_threshold=self.drift.share_of_features,
            quality=tuple(quality),
            prediction=prediction,
            performance=performance,
            seconds=time.perf_counter() - started,
        )

    def check_log_window(
        self, records: pa.Table, *, window: WindowSpec | None = None
    ) -> CheckResult:
        """Check a window of prediction-log records: ``f.<feature>`` columns are the features,
        ``score`` (binary classifiers) or ``prediction`` (regressors) the predictions, and a
        joined ``label`` column (null while unlabelled) the truth of the labelled rows."""
        features = {
            name[len(FEATURE_PREFIX) :]: records.column(name)
            for name in records.column_names
            if name.startswith(FEATURE_PREFIX)
        }
        if not features:
            raise MonitorError(
                "the prediction-log records have no f.<feature> columns, so there is nothing to "
                "check. Hint: the server logs the model's inputs as f.<name> columns"
            )
        current = pa.table(features)
        predictions = self._log_predictions(records)
        y_true = y_pred = y_score = None
        if "label" in records.column_names and "prediction" in records.column_names:
            labelled = records.filter(pc.is_valid(records.column("label")))
            if labelled.num_rows:
                y_true = _floats(labelled.column("label"))
                y_pred = _floats(labelled.column("prediction"))
                if "score" in labelled.column_names and labelled.column("score").null_count == 0:
                    y_score = _floats(labelled.column("score"))
        return self.check(
            current,
            predictions=predictions,
            y_true=y_true,
            y_pred=y_pred,
            y_score=y_score,
            window=window if window is not None else log_window_spec(records),
        )

    # -- internals ----------------------------------------------------------------------------
    def _prediction_drift(self, predictions: Any) -> FeatureDrift | None:
        if predictions is None:
            return None
        if self.prediction_reference_ is None:
            raise MonitorError(
                "predictions were given, but the reference has no prediction profile. Hint: "
                "fit on a model version's profile, or pass fit(..., predictions=TableProfile)"
            )
        values = np.asarray(predictions)
        if values.size == 0:
            return None
        return prediction_drift(self.prediction_reference_, values, config=self.drift)

    def _performance(self, y_true: Any, y_pred: Any, y_score: Any) -> PerformanceResult | None:
        if y_true is None or len(y_true) == 0:
            return None
        task = self.task_
        if task is None:
            raise MonitorError(
                "labels were given, but the task is unknown. Hint: Monitor(task='classification'"
                " or 'regression'), or fit on a profile with reference metrics"
            )
        metric = self.performance.metric
        allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
        if metric not in allowed:
            raise MonitorError(
                f"monitor.performance.metric: got {metric!r}, which is not a {task} metric; "
                f"choose from {', '.join(allowed)}"
            )
        if y_pred is None:
            if y_score is None or task != "classification":
                raise MonitorError("labels were given without y_pred (or y_score) to compare")
            scores = np.asarray(y_score, dtype=np.float64)
            y_pred = (scores >= self.decision_threshold).astype(np.float64)
        metrics = [m for m in self.reference_metrics_ if m in allowed] or [metric]
        return check_performance(
            task,
            y_true,
            y_pred=y_pred,
            y_score=y_score,
            reference_metrics=self.reference_metrics_,
            metrics=metrics,
            metric=metric,
            max_drop=self.performance.max_drop,
            threshold=self.decision_threshold,
        )

    def _log_predictions(self, records: pa.Table) -> np.ndarray | None:
        if self.prediction_reference_ is None:
            return None
        if "score" in records.column_names:
            scores = records.column("score")
            if scores.null_count < len(scores):
                return _floats(scores.drop_null())
        if self.task_ == "classification" or "prediction" not in records.column_names:
            # the profile of a classifier holds probabilities; labels are not comparable
            return None
        return _floats(records.column("prediction").drop_null())


def log_window_spec(records: pa.Table, *, label: str = "") -> WindowSpec:
    """The :class:`WindowSpec` of a table of log records: first and last ``ts``, row count,
    and the model version when all rows share one."""
    from kyklos.monitoring.window import from_micros, to_micros

    start = end = None
    if "ts" in records.column_names and records.num_rows:
        times = to_micros(records.column("ts"))
        start, end = from_micros(int(times.min())), from_micros(int(times.max()))
    version = None
    if "version" in records.column_names and records.num_rows:
        versions = pc.unique(records.column("version").drop_null()).to_pylist()
        version = int(versions[0]) if len(versions) == 1 else None
    return WindowSpec(start, end, records.num_rows, model_version=version, label=label)


def infer_task_from_metrics(metrics: Mapping[str, Any]) -> str | None:
    """``classification`` or ``regression`` by the names of reference metrics, else None.

    >>> infer_task_from_metrics({"roc_auc": 0.8}), infer_task_from_metrics({"rmse": 2.0})
    ('classification', 'regression')
    """
    names = set(metrics)
    if names & set(CLASSIFICATION_METRICS):
        return "classification"
    if names & set(REGRESSION_METRICS):
        return "regression"
    return None


def _as_profile(value: Any, what: str) -> TableProfile:
    if isinstance(value, TableProfile):
        return value
    if isinstance(value, Mapping):
        try:
            return TableProfile.from_dict(value)
        except (DataError, KeyError, TypeError, ValueError) as exc:
            raise MonitorError(f"{what} is not a readable reference profile: {exc}") from exc
    raise MonitorError(f"{what}: got {type(value).__name__}, expected a TableProfile or its dict")


def _as_table(current: Any) -> pa.Table:
    if isinstance(current, pa.Table):
        return current
    if isinstance(current, pa.RecordBatch):
        return pa.Table.from_batches([current])
    if hasattr(current, "columns") and hasattr(current, "dtypes"):  # a pandas DataFrame
        try:
            return pa.Table.from_pandas(current, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise MonitorError(f"cannot read the DataFrame as a table: {exc}") from exc
    raise MonitorError(
        f"check() takes a pyarrow.Table or a pandas DataFrame, got {type(current).__name__}"
    )


def _floats(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
