"""The numbers alert rules compare: one value per name in :data:`~kyklos.config.project.ALERT_SIGNALS`.

The same numbers drive three consumers, so they agree with each other by construction: kyklos's
own alert rules (:mod:`kyklos.monitoring.alerts`), the Prometheus gauges
(:mod:`kyklos.monitoring.metrics`) and the generated Prometheus alert rules
(:mod:`kyklos.monitoring.prometheus_rules`).

========================  =====================================================================
signal                    value
========================  =====================================================================
``dataset_drift``         1 when the dataset-level decision says drift, else 0
``share_drifted``         share (0–1) of features flagged as drifted (importance-weighted when
                          the monitor weighs by importance)
``max_feature_drift``     the largest :func:`drift_ratio` over the features (0 without features);
                          above 1 means at least one feature is past its threshold
``prediction_drift``      1 when the model's outputs drifted, 0 when not, NaN without predictions
``performance_drop``      the watched metric's drop against the reference (positive = worse),
                          NaN until labelled rows arrive
``quality_errors``        number of quality issues of severity ``error``
``quality_issues``        number of quality issues of any severity
========================  =====================================================================

A NaN signal makes every comparison false: a rule on ``performance_drop`` stays silent until
labels arrive.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from kyklos.config.project import ALERT_SIGNALS
from kyklos.errors import ConfigError
from kyklos.monitoring.results import CheckResult, FeatureDrift

__all__ = ["Condition", "drift_ratio", "parse_condition", "signals_of", "sort_by_drift"]

_TINY_P = 1e-300
_CONDITION = re.compile(r"\s*([a-z_]+)\s*(>=|>|<=|<)\s*(-?\d+(?:\.\d+)?)\s*")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def drift_ratio(feature: FeatureDrift) -> float:
    """How far a feature is from its threshold, comparable across methods; ``> 1`` is drifted.

    * distances and indices (PSI, Jensen–Shannon, Wasserstein): ``statistic / threshold``;
    * tests with a p-value (KS, chi²): ``log(p_value) / log(threshold)``, so p = threshold gives
      1 and every factor of 10 below the threshold adds ``1 / -log10(threshold)``. p is floored
      at 1e-300 so that the ratio stays finite (and JSON-able): p = 0 at threshold 0.05 gives
      230.6. This is the statistics' own ``Statistic.severity`` except for that floor.

    >>> round(drift_ratio(FeatureDrift("a", "numeric", "psi", 0.3, 0.2, True)), 3)
    1.5
    >>> round(drift_ratio(FeatureDrift("b", "numeric", "ks", 0.1, 0.05, True, p_value=0.0025)), 3)
    2.0
    """
    if feature.p_value is not None:
        p = float(feature.p_value)
        if math.isnan(p):
            return math.nan
        if not 0.0 < feature.threshold < 1.0:
            return 1.0 - p
        return math.log(min(max(p, _TINY_P), 1.0)) / math.log(feature.threshold)
    statistic = float(feature.statistic)
    if math.isnan(statistic):
        return math.nan
    if feature.threshold > 0:
        return statistic / feature.threshold
    return math.inf if statistic > 0 else 0.0


def sort_by_drift(features: tuple[FeatureDrift, ...]) -> list[FeatureDrift]:
    """Drifted features first, then by :func:`drift_ratio` (largest first), then by name."""

    def key(f: FeatureDrift) -> tuple[bool, float, str]:
        ratio = drift_ratio(f)
        return (not f.drifted, -ratio if not math.isnan(ratio) else math.inf, f.feature)

    return sorted(features, key=key)


def signals_of(result: CheckResult) -> dict[str, float]:
    """Every signal of :data:`~kyklos.config.project.ALERT_SIGNALS` for one check (see the table above)."""
    ratios = [r for r in (drift_ratio(f) for f in result.features) if not math.isnan(r)]
    prediction = result.prediction
    performance = result.performance
    drop = performance.drop if performance is not None else None
    values = {
        "dataset_drift": 1.0 if result.dataset_drift else 0.0,
        "max_feature_drift": max(ratios, default=0.0),
        "performance_drop": float(drop) if drop is not None else math.nan,
        "prediction_drift": (
            math.nan if prediction is None else (1.0 if prediction.drifted else 0.0)
        ),
        "quality_errors": float(sum(1 for q in result.quality if q.severity == "error")),
        "quality_issues": float(len(result.quality)),
        "share_drifted": float(result.share_drifted),
    }
    return {name: values[name] for name in ALERT_SIGNALS}


@dataclass(frozen=True)
class Condition:
    """A parsed ``when``: ``share_drifted > 0.3`` is ``Condition("share_drifted", ">", 0.3)``."""

    signal: str
    op: str
    threshold: float

    def holds(self, value: float) -> bool:
        """Whether ``value`` meets the condition (never for NaN)."""
        return not math.isnan(value) and _OPERATORS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.signal} {self.op} {self.threshold:g}"


def parse_condition(when: str) -> Condition:
    """Parse an alert rule's ``when`` (already validated by the project file).

    >>> parse_condition("performance_drop >= 0.03")
    Condition(signal='performance_drop', op='>=', threshold=0.03)
    """
    match = _CONDITION.fullmatch(when)
    if match is None or match.group(1) not in ALERT_SIGNALS:
        raise ConfigError(
            f"monitor.alerts.rules[].when: got {when!r}, expected 'SIGNAL OP NUMBER' with SIGNAL "
            f"one of {list(ALERT_SIGNALS)}. Hint: e.g. 'share_drifted > 0.3'"
        )
    return Condition(match.group(1), match.group(2), float(match.group(3)))
