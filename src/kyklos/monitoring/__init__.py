"""Monitoring: data drift, prediction drift, data quality and delayed-label performance."""

from kyklos.monitoring.results import (
    CheckResult,
    Distribution,
    FeatureDrift,
    PerformanceResult,
    QualityIssue,
    WindowSpec,
)

__all__ = [
    "CheckResult",
    "Distribution",
    "FeatureDrift",
    "PerformanceResult",
    "QualityIssue",
    "WindowSpec",
]
