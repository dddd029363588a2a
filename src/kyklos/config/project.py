"""The project file ``kyklos.yaml``, modelled with pydantic.

Validation happens here, at the edge; everything inside kyklos receives these frozen models.
Sections for later parts of the loop (``serve``, ``monitor``, ``retrain``) are modelled now so that
a project file written today keeps validating as features land.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kyklos.config.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS

__all__ = [
    "ALERT_SIGNALS",
    "AlertRule",
    "AlertsConfig",
    "DataConfig",
    "EvaluateConfig",
    "ModelConfig",
    "MonitorConfig",
    "PipelineConfig",
    "PreprocessingConfig",
    "ProjectConfig",
    "RegistryConfig",
    "RetrainConfig",
    "ServeConfig",
    "SplitConfig",
    "StepConfig",
    "StoreConfig",
    "TrackingConfig",
    "infer_task",
    "infer_task_of",
    "parse_duration",
]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration like ``90s``, ``10m``, ``2h`` or ``1d``.

    >>> parse_duration("10m")
    600.0
    """
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit: 500ms, 30s, 10m, 2h, 1d"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    """Where the training table comes from and which column is the target."""

    source: str = Field(description="CSV or Parquet path (relative to the project) or URI")
    target: str = Field(description="the column to predict")
    time_column: str | None = Field(None, description="orders rows for time splits and windows")
    features: list[str] | None = Field(None, description="feature columns; default: all others")
    drop: list[str] = Field(default_factory=list, description="columns never used as features")
    name: str | None = Field(None, description="dataset name; default: the project name")


class PreprocessingConfig(_Section):
    """Preprocessing fitted inside the model's sklearn Pipeline (so serving cannot skew)."""

    numeric_impute: Literal["median", "mean", "most_frequent", "constant"] = "median"
    scale: bool = True
    categorical_impute: Literal["most_frequent", "constant"] = "constant"
    encode: Literal["onehot", "ordinal"] = "onehot"
    max_categories: int | None = Field(30, ge=2)
    unknown: Literal["ignore", "error"] = "ignore"


class ModelConfig(_Section):
    """The estimator, by import path, with its parameters and the seed."""

    estimator: str = "sklearn.ensemble.HistGradientBoostingClassifier"
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 42
    task: Literal["auto", "classification", "regression"] = "auto"
    preprocessing: PreprocessingConfig = Field(default_factory=PreprocessingConfig)

    @field_validator("estimator")
    @classmethod
    def _import_path(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+", value):
            raise ValueError(
                "expected an import path like 'sklearn.linear_model.LogisticRegression'"
            )
        return value


class SplitConfig(_Section):
    """How the test split is cut: by time (needs ``data.time_column``), at random, or stratified."""

    method: Literal["time", "random", "stratified"] = "random"
    test_size: float = Field(0.2, gt=0.0, lt=1.0)


class EvaluateConfig(_Section):
    """Metrics computed on the test split; gates may use only these."""

    metrics: list[str] = Field(default_factory=lambda: ["roc_auc", "accuracy", "f1"])
    split: SplitConfig = Field(default_factory=SplitConfig)
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="decision threshold (binary)")
    plots: bool = True

    @field_validator("metrics")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        known = set(CLASSIFICATION_METRICS) | set(REGRESSION_METRICS)
        unknown = [m for m in value if m not in known]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(known)}")
        if not value:
            raise ValueError("list at least one metric")
        return value


class StepConfig(_Section):
    """A user step: a plain Python function, by ``module:function`` or ``file.py:function``."""

    function: str
    name: str | None = None
    after: Literal["load", "validate", "split", "train", "evaluate"] = "validate"
    params: dict[str, Any] = Field(default_factory=dict)
    retries: int = Field(0, ge=0, le=10)

    @field_validator("function")
    @classmethod
    def _ref(cls, value: str) -> str:
        if value.count(":") != 1 or not all(value.split(":")):
            raise ValueError("expected 'module:function' or 'file.py:function'")
        return value


class PipelineConfig(_Section):
    """User steps and caching."""

    steps: list[StepConfig] = Field(default_factory=list)
    cache: bool = True


class TrackingConfig(_Section):
    """MLflow tracking; the default is an embedded SQLite store inside ``.kyklos/``."""

    uri: str | None = None
    experiment: str | None = None
    registered_model: str | None = None


class StoreConfig(_Section):
    """kyklos's metadata DB (SQLAlchemy URL) and artifact store (path or fsspec URI)."""

    db: str | None = None
    artifacts: str | None = None


class RegistryConfig(_Section):
    """What a successful run does with its model version.

    ``first``: becomes champion when there is none, challenger otherwise; ``challenger``: always
    challenger; ``never``: registered only.
    """

    promote: Literal["first", "challenger", "never"] = "first"


class BatchingConfig(_Section):
    max_batch_rows: int = Field(64, ge=1)
    max_wait_ms: float = Field(2.0, ge=0.0)


class ServeLogConfig(_Section):
    """The prediction log of ``kyklos serve`` (every answer is committed to it before it is
    sent)."""

    fsync: bool = Field(
        False,
        description="false: an answer is sent once its log record is written to the operating "
        "system (it survives the server being killed, even with SIGKILL, not a power loss or "
        "kernel panic); true: also fdatasync'ed to disk first (survives the machine too, at "
        "one fdatasync per group commit, ~0.8 ms on a VM disk)",
    )


def _optional_duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)
    return value


class RolloutConfig(_Section):
    """How a challenger meets live traffic, and what it must show before promotion."""

    strategy: Literal["none", "shadow", "canary"] = Field(
        "none", description="none: promote on the offline gates alone"
    )
    fraction: float = Field(0.1, ge=0.0, le=1.0, description="canary share of requests")
    min_requests: int = Field(500, ge=0, description="rows the challenger must have answered")
    min_labelled: int = Field(0, ge=0, description="labelled rows needed on each arm")
    duration: str | None = Field(None, description="minimum time the rollout runs")
    metric: str | None = Field(None, description="compared live; default: monitor.performance")
    max_drop: float = Field(
        0.0, ge=0.0, description="how much worse than the champion the challenger may be"
    )

    _duration = field_validator("duration")(_optional_duration)


class ServeConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    log: ServeLogConfig = Field(default_factory=ServeLogConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    runtime: Literal["auto", "sklearn", "onnx"] = Field(
        "auto",
        description="auto: onnxruntime when the version has a checked ONNX export, else "
        "scikit-learn; onnx: fail without one; sklearn: never onnxruntime",
    )


class WindowConfig(_Section):
    """Windows over the prediction log: by row count or by duration, tumbling or sliding."""

    rows: int | None = Field(1000, ge=1)
    duration: str | None = None
    slide: str | int | None = Field(
        None, description="sliding step (rows or duration); None = tumbling"
    )

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


DriftMethod = Literal["ks", "chi2", "psi", "jensenshannon", "wasserstein"]


class DriftConfig(_Section):
    """Drift statistics: per feature type, per feature, thresholds, and the dataset decision.

    ``threshold`` None means each method's own default (KS/chi² p-value 0.05, PSI 0.2,
    Jensen–Shannon 0.1, normalised Wasserstein 0.1).
    """

    method: Literal["auto", "ks", "chi2", "psi", "jensenshannon", "wasserstein"] = "auto"
    numeric: DriftMethod | None = None
    categorical: DriftMethod | None = None
    per_feature: dict[str, DriftMethod] = Field(default_factory=dict)
    threshold: float | None = Field(None, ge=0.0)
    share_of_features: float = Field(0.3, ge=0.0, le=1.0)
    weight_by_importance: bool = False


class PerformanceConfig(_Section):
    metric: str = "roc_auc"
    max_drop: float = Field(0.03, ge=0.0)


ALERT_SIGNALS = (
    "dataset_drift",
    "max_feature_drift",
    "performance_drop",
    "prediction_drift",
    "quality_errors",
    "quality_issues",
    "share_drifted",
)


class AlertRule(_Section):
    """``when`` compares one signal with a number: ``share_drifted > 0.3``,
    ``performance_drop >= 0.03``, ``quality_errors > 0``."""

    name: str
    when: str
    severity: Literal["info", "warning", "critical"] = "warning"
    cooldown: str = "30m"

    @field_validator("when")
    @classmethod
    def _signal(cls, value: str) -> str:
        match = re.fullmatch(r"\s*([a-z_]+)\s*(>=|>|<=|<)\s*(-?\d+(?:\.\d+)?)\s*", value)
        if match is None:
            raise ValueError("expected 'SIGNAL OP NUMBER', e.g. 'share_drifted > 0.3'")
        if match.group(1) not in ALERT_SIGNALS:
            raise ValueError(
                f"unknown signal {match.group(1)!r}; choose from {list(ALERT_SIGNALS)}"
            )
        return value

    @field_validator("cooldown")
    @classmethod
    def _cooldown(cls, value: str) -> str:
        parse_duration(value)
        return value


class AlertsConfig(_Section):
    """Alert rules, delivered to the event log and, when set, to a webhook (JSON POST)."""

    webhook: str | None = None
    rules: list[AlertRule] = Field(default_factory=list)

    @field_validator("webhook")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("rules")
    @classmethod
    def _unique(cls, value: list[AlertRule]) -> list[AlertRule]:
        names = [rule.name for rule in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique; repeated: {duplicates}")
        return value


class MonitorConfig(_Section):
    window: WindowConfig = Field(default_factory=WindowConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    performance: PerformanceConfig = Field(default_factory=PerformanceConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)


class RetrainConfig(_Section):
    """The closed loop's policy: what triggers a retrain, on which data, and how often."""

    on: list[Literal["drift", "prediction_drift", "performance", "schedule", "new_data"]] = Field(
        default_factory=list, description="triggers; empty: the loop only watches promotions"
    )
    schedule: str | None = Field(None, description="cron expression (UTC) for 'schedule'")
    cooldown: str = Field("10m", description="minimum time between two cycles")
    max_per_day: int = Field(4, ge=0, description="retrain budget per 24 hours")
    data: Literal["all", "recent", "reference_and_recent"] = Field(
        "reference_and_recent",
        description="all: every labelled logged row; recent: the last rows; "
        "reference_and_recent: the champion's training data plus the recent rows",
    )
    recent_rows: int = Field(20000, ge=1, description="how many recent labelled rows")
    recent_duration: str | None = Field(None, description="or: labelled rows of the last ...")
    min_labelled: int = Field(200, ge=1, description="labelled recent rows needed to retrain")
    approval: bool = Field(False, description="wait for `kyklos approve CYCLE` to promote")
    rollback_margin: float = Field(
        0.02, ge=0.0, description="roll back when the new champion is worse by more than this"
    )
    watch_labelled: int = Field(200, ge=1, description="labelled rows to judge a new champion")
    watch_duration: str = Field("30m", description="how long a new champion is watched")
    interval: str = Field("5s", description="time between ticks of `kyklos loop`")

    _durations = field_validator("cooldown", "recent_duration", "watch_duration", "interval")(
        _optional_duration
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from croniter import croniter

            if not croniter.is_valid(value):
                raise ValueError(
                    "expected a cron expression of 5 fields, e.g. '0 3 * * *' (03:00 UTC daily)"
                )
        return value


class ProjectConfig(_Section):
    """The whole ``kyklos.yaml``."""

    name: str
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    gates: list[str] = Field(default_factory=list)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "expected a name of letters, digits, '_', '.', '-' starting with a letter"
            )
        return value


def infer_task(config: ProjectConfig) -> str | None:
    """The task from ``model.task`` or the estimator's class name; None when it cannot tell."""
    return infer_task_of(config.model)


def infer_task_of(model: ModelConfig) -> str | None:
    """The task of one model section (see :func:`infer_task`)."""
    if model.task != "auto":
        return model.task
    cls = model.estimator.rsplit(".", 1)[-1]
    if cls.endswith(("Classifier", "LogisticRegression", "SVC", "NB")) or "Classif" in cls:
        return "classification"
    if cls.endswith(("Regressor", "Regression", "SVR", "Lasso", "Ridge", "ElasticNet")):
        return "regression"
    return None
