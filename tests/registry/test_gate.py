"""Gates: absolute, relative to the champion, skipped without a champion, bad gates."""

from __future__ import annotations

import math

import pytest

from kyklos.errors import GateError
from kyklos.registry import GateReport, evaluate_gates

GATES = [
    "roc_auc >= 0.80",
    "roc_auc >= champion.roc_auc - 0.005",
    "log_loss <= champion.log_loss * 1.02",
]


@pytest.mark.parametrize(
    ("metrics", "champion", "expected"),
    [
        (
            {"roc_auc": 0.85, "log_loss": 0.40},
            {"roc_auc": 0.852, "log_loss": 0.40},
            [True, True, True],
        ),
        ({"roc_auc": 0.79, "log_loss": 0.40}, None, [False, None, None]),
        ({"roc_auc": 0.85, "log_loss": 0.40}, None, [True, None, None]),
        (
            {"roc_auc": 0.84, "log_loss": 0.40},
            {"roc_auc": 0.86, "log_loss": 0.40},
            [True, False, True],
        ),
        (
            {"roc_auc": 0.86, "log_loss": 0.50},
            {"roc_auc": 0.86, "log_loss": 0.40},
            [True, True, False],
        ),
    ],
    ids=[
        "all-pass",
        "absolute-fails-no-champion",
        "no-champion-skips",
        "worse-than-champion",
        "lower-is-better",
    ],
)
def test_gate_outcomes(
    metrics: dict[str, float], champion: dict[str, float] | None, expected: list[bool | None]
) -> None:
    report = evaluate_gates(GATES, metrics, champion)
    assert [r.passed for r in report.results] == expected
    assert report.passed is (False not in expected)


def test_relative_threshold_and_reason() -> None:
    report = evaluate_gates(GATES[1:2], {"roc_auc": 0.84}, {"roc_auc": 0.86})
    (result,) = report.results
    assert result.threshold == pytest.approx(0.855)
    assert result.value == 0.84
    assert result.reason == "failed: roc_auc = 0.84, needs >= 0.855"
    assert report.failed == (result,)
    assert "roc_auc >= champion.roc_auc - 0.005" in report.summary()


def test_skipped_gates_do_not_fail_and_say_why() -> None:
    report = evaluate_gates(GATES[1:], {"roc_auc": 0.8, "log_loss": 0.4}, None)
    assert report.passed is True
    assert {r.reason for r in report.results} == {"skipped: no champion"}
    assert report.summary() == "0 passed, 2 skipped"


def test_champion_without_the_metric_skips() -> None:
    report = evaluate_gates(GATES[2:], {"log_loss": 0.4}, {"roc_auc": 0.8})
    assert report.results[0].passed is None
    assert "champion has no log_loss" in report.results[0].reason


def test_gate_on_a_metric_the_run_did_not_compute() -> None:
    with pytest.raises(GateError, match=r"'f1'.*computed: roc_auc.*evaluate.metrics"):
        evaluate_gates(["f1 >= 0.5"], {"roc_auc": 0.9}, None)


@pytest.mark.parametrize(
    "gate", ["roc_auc == 0.8", "roc_auc >=", "0.8 <= roc_auc"], ids=["eq", "cut", "reversed"]
)
def test_malformed_gate(gate: str) -> None:
    with pytest.raises(GateError, match="malformed"):
        evaluate_gates([gate], {"roc_auc": 0.9}, None)


def test_nan_metric_fails_its_gate() -> None:
    report = evaluate_gates(["roc_auc >= 0.5"], {"roc_auc": math.nan}, None)
    assert report.passed is False
    assert report.results[0].reason == "failed: the value is NaN"
    assert report.to_dict()["results"][0]["value"] is None  # JSON has no NaN


def test_report_round_trips_through_json() -> None:
    report = evaluate_gates(
        GATES, {"roc_auc": 0.84, "log_loss": 0.4}, {"roc_auc": 0.86, "log_loss": 0.4}
    )
    assert GateReport.from_dict(report.to_dict()) == report


def test_no_gates_pass() -> None:
    report = evaluate_gates([], {"roc_auc": 0.1}, None)
    assert report.passed is True and report.summary() == "no gates"
