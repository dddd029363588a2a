"""Gates: the rules a model version must pass to move forward.

A gate is one line of ``gates:`` in ``kyklos.yaml`` (syntax in :mod:`kyklos.config.gates`):
absolute (``roc_auc >= 0.80``) or relative to the champion
(``roc_auc >= champion.roc_auc - 0.005``). A relative gate with no champion to compare against
is *skipped* (``passed=None``) and does not fail the report: the first model of a project has
nothing to beat.

>>> report = evaluate_gates(["roc_auc >= 0.8", "roc_auc >= champion.roc_auc"], {"roc_auc": 0.83}, None)
>>> report.passed, [r.passed for r in report.results]
(True, [True, None])
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kyklos.config.gates import GateSyntaxError, parse_gate
from kyklos.errors import GateError

__all__ = ["GateReport", "GateResult", "evaluate_gates"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate: ``passed`` is True/False, or None when it was skipped."""

    gate: str
    metric: str
    op: str
    value: float | None
    threshold: float | None
    passed: bool | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "metric": self.metric,
            "op": self.op,
            "value": _json_float(self.value),
            "threshold": _json_float(self.threshold),
            "passed": self.passed,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        return cls(
            gate=str(data["gate"]),
            metric=str(data["metric"]),
            op=str(data["op"]),
            value=None if data.get("value") is None else float(data["value"]),
            threshold=None if data.get("threshold") is None else float(data["threshold"]),
            passed=data.get("passed"),
            reason=str(data.get("reason", "")),
        )


@dataclass(frozen=True)
class GateReport:
    """Every gate's result; ``passed`` is True when no gate failed (skipped gates do not fail)."""

    results: tuple[GateResult, ...]
    passed: bool

    @property
    def failed(self) -> tuple[GateResult, ...]:
        return tuple(r for r in self.results if r.passed is False)

    def summary(self) -> str:
        """One line: ``2 passed, 1 skipped`` or the failed gates with their values."""
        if self.failed:
            return "; ".join(f"{r.gate} ({r.reason})" for r in self.failed)
        passed = sum(1 for r in self.results if r.passed)
        skipped = sum(1 for r in self.results if r.passed is None)
        text = f"{passed} passed" if self.results else "no gates"
        return f"{text}, {skipped} skipped" if skipped else text

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "results": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateReport:
        return cls(
            results=tuple(GateResult.from_dict(r) for r in data.get("results", ())),
            passed=bool(data.get("passed", True)),
        )


def evaluate_gates(
    gates: Sequence[str],
    metrics: Mapping[str, float],
    champion: Mapping[str, float] | None,
) -> GateReport:
    """Evaluate every gate on the candidate's ``metrics`` (and the ``champion``'s, if any).

    Raises :class:`~kyklos.errors.GateError` for a malformed gate or a gate whose metric the
    candidate did not compute (``kyklos.yaml`` validation catches both earlier).
    """
    results = tuple(_evaluate(text, metrics, champion) for text in gates)
    return GateReport(results=results, passed=all(r.passed is not False for r in results))


def _evaluate(
    text: str, metrics: Mapping[str, float], champion: Mapping[str, float] | None
) -> GateResult:
    try:
        gate = parse_gate(text)
    except GateSyntaxError as exc:
        raise GateError(f"gate {text!r} is malformed: {exc}") from None
    if gate.metric not in metrics:
        computed = ", ".join(sorted(metrics)) or "none"
        raise GateError(
            f"gate {gate.text!r} uses the metric {gate.metric!r}, which the run did not compute "
            f"(computed: {computed}). Hint: add {gate.metric!r} to evaluate.metrics in kyklos.yaml"
        )
    value = float(metrics[gate.metric])
    if gate.relative and champion is None:
        return GateResult(
            gate.text, gate.metric, gate.op, value, None, None, "skipped: no champion"
        )
    if gate.relative and champion is not None:
        missing = sorted(m for m in gate.champion_metrics if m not in champion)
        if missing:
            return GateResult(
                gate.text,
                gate.metric,
                gate.op,
                value,
                None,
                None,
                f"skipped: the champion has no {', '.join(missing)} metric",
            )
    threshold = gate.threshold(champion)
    assert threshold is not None  # absolute, or relative with a champion
    if math.isnan(value) or math.isnan(threshold):
        return GateResult(
            gate.text, gate.metric, gate.op, value, threshold, False, "failed: the value is NaN"
        )
    passed = _OPS[gate.op](value, threshold)
    verdict = "passed" if passed else "failed"
    reason = f"{verdict}: {gate.metric} = {value:.6g}, needs {gate.op} {threshold:.6g}"
    return GateResult(gate.text, gate.metric, gate.op, value, threshold, passed, reason)


def _json_float(value: float | None) -> float | None:
    """NaN and infinities are not JSON: store them as None."""
    if value is None or not math.isfinite(value):
        return None
    return value
