"""What a monitor check produces: plain, frozen, JSON-able value objects.

These are the contract between the statistics (:mod:`kyklos.monitoring.drift`,
:mod:`kyklos.monitoring.quality`, :mod:`kyklos.monitoring.performance`), the orchestration
(:mod:`kyklos.monitoring.monitor`), the storage in the metadata DB, the HTML/JSON report, the
Prometheus gauges and the alert rules. Everything a report shows is in here, so a report never
needs raw rows: distributions travel as histograms (numeric: bin ``edges`` and ``counts``;
categorical: ``categories`` and ``counts``, the last category being ``"__other__"`` when present).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "CheckResult",
    "Distribution",
    "FeatureDrift",
    "PerformanceResult",
    "QualityIssue",
    "WindowSpec",
]

RESULT_FORMAT = "kyklos.monitor/1"


@dataclass(frozen=True)
class Distribution:
    """A histogram: numeric (``edges``, ``len(edges) + 1`` open-ended ``counts``) or
    categorical (``categories`` and their ``counts``)."""

    kind: str  # "numeric" | "categorical"
    counts: tuple[float, ...]
    edges: tuple[float, ...] | None = None
    categories: tuple[str, ...] | None = None
    missing: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Distribution:
        return cls(
            kind=data["kind"],
            counts=tuple(data["counts"]),
            edges=tuple(data["edges"]) if data.get("edges") is not None else None,
            categories=tuple(data["categories"]) if data.get("categories") is not None else None,
            missing=int(data.get("missing", 0)),
        )


@dataclass(frozen=True)
class FeatureDrift:
    """The drift verdict of one feature (or of the predictions, ``feature="__prediction__"``)."""

    feature: str
    kind: str  # "numeric" | "categorical"
    method: str  # a name from the statistics table: ks, chi2, psi, jensenshannon, wasserstein
    statistic: float  # the method's statistic (distance, index or test statistic)
    threshold: float
    drifted: bool
    p_value: float | None = None  # for tests (ks, chi2): drifted means p_value < threshold
    importance: float | None = None  # weight in the dataset decision, when known
    reference: Distribution | None = None
    current: Distribution | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reference"] = self.reference.to_dict() if self.reference else None
        data["current"] = self.current.to_dict() if self.current else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureDrift:
        return cls(
            feature=data["feature"],
            kind=data["kind"],
            method=data["method"],
            statistic=float(data["statistic"]),
            threshold=float(data["threshold"]),
            drifted=bool(data["drifted"]),
            p_value=data.get("p_value"),
            importance=data.get("importance"),
            reference=Distribution.from_dict(data["reference"]) if data.get("reference") else None,
            current=Distribution.from_dict(data["current"]) if data.get("current") else None,
        )


@dataclass(frozen=True)
class QualityIssue:
    """A data-quality finding on one feature, with counts."""

    feature: str
    kind: str  # missing_rate_jump | out_of_range | new_category | type_violation | constant
    count: int  # rows affected in the current window
    detail: str  # one human sentence: "missing rate 0.02 → 0.31 (reference → current)"
    severity: str = "warning"  # warning | error

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityIssue:
        return cls(**data)


@dataclass(frozen=True)
class PerformanceResult:
    """Live performance on the labelled rows of a window against the reference metrics."""

    n_labelled: int
    metrics: dict[str, float]
    reference: dict[str, float]
    metric: str  # the watched metric (monitor.performance.metric)
    drop: float | None  # reference - current for higher-is-better metrics (current - ref otherwise)
    max_drop: float
    degraded: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PerformanceResult:
        return cls(**data)


@dataclass(frozen=True)
class WindowSpec:
    """Which rows a check covered."""

    start: dt.datetime | None
    end: dt.datetime | None
    n_rows: int
    model_version: int | None = None
    label: str = ""  # e.g. "rows 0–999" or "2013-06-01 00:00 → 01:00"

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "n_rows": self.n_rows,
            "model_version": self.model_version,
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowSpec:
        return cls(
            start=dt.datetime.fromisoformat(data["start"]) if data.get("start") else None,
            end=dt.datetime.fromisoformat(data["end"]) if data.get("end") else None,
            n_rows=int(data["n_rows"]),
            model_version=data.get("model_version"),
            label=data.get("label", ""),
        )


@dataclass(frozen=True)
class CheckResult:
    """One monitor check of one window: the summary verdict first, then the details."""

    window: WindowSpec
    n_reference: int
    features: tuple[FeatureDrift, ...]  # sorted by drift, most drifted first
    share_drifted: float
    dataset_drift: bool
    drift_share_threshold: float
    quality: tuple[QualityIssue, ...] = ()
    prediction: FeatureDrift | None = None
    performance: PerformanceResult | None = None
    seconds: float = 0.0
    format: str = field(default=RESULT_FORMAT)

    @property
    def verdict(self) -> str:
        """``drift``, ``degraded``, ``quality`` or ``ok`` — the first line of every report."""
        if self.performance is not None and self.performance.degraded:
            return "degraded"
        if self.dataset_drift or (self.prediction is not None and self.prediction.drifted):
            return "drift"
        if any(q.severity == "error" for q in self.quality):
            return "quality"
        return "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "verdict": self.verdict,
            "window": self.window.to_dict(),
            "n_reference": self.n_reference,
            "share_drifted": self.share_drifted,
            "dataset_drift": self.dataset_drift,
            "drift_share_threshold": self.drift_share_threshold,
            "features": [f.to_dict() for f in self.features],
            "quality": [q.to_dict() for q in self.quality],
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "performance": self.performance.to_dict() if self.performance else None,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(
            window=WindowSpec.from_dict(data["window"]),
            n_reference=int(data["n_reference"]),
            features=tuple(FeatureDrift.from_dict(f) for f in data["features"]),
            share_drifted=float(data["share_drifted"]),
            dataset_drift=bool(data["dataset_drift"]),
            drift_share_threshold=float(data["drift_share_threshold"]),
            quality=tuple(QualityIssue.from_dict(q) for q in data.get("quality", [])),
            prediction=FeatureDrift.from_dict(data["prediction"])
            if data.get("prediction")
            else None,
            performance=(
                PerformanceResult.from_dict(data["performance"])
                if data.get("performance")
                else None
            ),
            seconds=float(data.get("seconds", 0.0)),
            format=data.get("format", RESULT_FORMAT),
        )
