"""The generated Prometheus alert-rules file: structure, promtool's checks, and promtool unit tests
that feed it the real gauges of a check and expect exactly the alerts kyklos itself fires."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kyklos.config.project import ALERT_SIGNALS, AlertsConfig
from kyklos.monitoring.metrics import GAUGES, MonitorMetrics
from kyklos.monitoring.prometheus_rules import SIGNAL_QUERIES, prometheus_rules
from kyklos.monitoring.results import CheckResult
from kyklos.monitoring.signals import parse_condition, signals_of

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="needs promtool (Debian package 'prometheus'; not installable by pip)"
)
RULES: list[dict[str, Any]] = [
    {"name": "dataset drift", "when": "dataset_drift > 0", "severity": "warning"},
    {"name": "drift share", "when": "share_drifted >= 0.3", "severity": "warning"},
    {"name": "feature far off", "when": "max_feature_drift > 5", "cooldown": "1h"},
    {"name": "prediction drift", "when": "prediction_drift > 0", "severity": "critical"},
    {"name": "auc drop", "when": "performance_drop > 0.03", "severity": "critical"},
    {"name": "quality errors", "when": "quality_errors >= 1", "cooldown": "90s"},
    {"name": "many issues", "when": "quality_issues > 4"},
    {"name": "few issues", "when": "quality_issues < 1", "severity": "info"},
]
CONFIG = AlertsConfig.model_validate({"rules": RULES})


def test_rules_file_structure() -> None:
    doc = yaml.safe_load(prometheus_rules(CONFIG, model="flights", stale_after="2h"))
    (group,) = doc["groups"]
    assert group["name"] == "kyklos-flights"
    rules = group["rules"]
    assert len(rules) == len(RULES) + 1
    for rule, source in zip(rules, RULES, strict=False):
        assert re.fullmatch(r"Kyklos[A-Za-z0-9]+", rule["alert"])
        assert 'model="flights"' in rule["expr"]
        assert rule["for"] == "1m"
        assert rule["labels"]["severity"] == source.get("severity", "warning")
        assert rule["labels"]["kyklos_rule"] == source["name"]
        assert rule["annotations"]["kyklos_cooldown"] == source.get("cooldown", "30m")
        assert "{{ $labels.version }}" in rule["annotations"]["summary"]
        for name in re.findall(r"kyklos_[a-z_]+", rule["expr"]):
            assert name in GAUGES, name
    assert rules[-1]["alert"] == "KyklosMonitorStale"
    assert rules[-1]["expr"].endswith("> 7200")
    assert set(SIGNAL_QUERIES) == set(ALERT_SIGNALS)
    assert len({r["alert"] for r in rules}) == len(rules)


def test_names_durations_and_quoting() -> None:
    config = AlertsConfig.model_validate(
        {"rules": [{"name": "x {{y}}", "when": "quality_issues > 0"}, {"name": "x-y", "when": "quality_issues > 1"}]}
    )  # fmt: skip
    text = prometheus_rules(config, model='we"ird\\name', for_="1.5m", group="g")
    doc = yaml.safe_load(text)
    first, second = doc["groups"][0]["rules"]
    assert (first["alert"], second["alert"]) == ("KyklosXY", "KyklosXY2")
    assert first["for"] == "1m30s"
    assert 'model="we\\"ird\\\\name"' in first["expr"]
    assert first["labels"]["kyklos_rule"] == 'x {{ "{{" }}y{{ "}}" }}'  # literal in a template
    assert doc["groups"][0]["name"] == "g"
    empty = yaml.safe_load(prometheus_rules(AlertsConfig(), model="flights"))
    assert empty["groups"][0]["rules"] == []


@needs_promtool
@pytest.mark.parametrize("stale", [None, "2h"], ids=["rules", "rules-and-stale"])
def test_promtool_accepts_the_file(tmp_path: Path, stale: str | None) -> None:
    path = tmp_path / "kyklos-rules.yml"
    path.write_text(prometheus_rules(CONFIG, model="flights", stale_after=stale, for_="90s"))
    done = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(RULES) + (stale is not None)} rules found" in done.stdout


@needs_promtool
def test_promtool_rejects_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: a broken expression is refused."""
    text = prometheus_rules(CONFIG, model="flights").replace("> 0.03", "> > 0.03")
    path = tmp_path / "broken.yml"
    path.write_text(text)
    done = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0


def _input_series(result: CheckResult, model: str, version: str) -> list[dict[str, str]]:
    registry = CollectorRegistry()
    MonitorMetrics(registry).update(result, model=model, version=version, now=0.0)
    out = []
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            number = "NaN" if sample.value != sample.value else repr(sample.value)
            out.append({"series": f"{sample.name}{{{labels}}}", "values": f"{number}x10"})
    return out


def _expected_alerts(result: CheckResult, model: str, version: str) -> dict[str, list[Any]]:
    """What kyklos's own evaluation says, in the labels Prometheus attaches."""
    signals = signals_of(result)
    expected: dict[str, list[Any]] = {}
    for rule, alert in zip(RULES, ("KyklosDatasetDrift", "KyklosDriftShare",
                                   "KyklosFeatureFarOff", "KyklosPredictionDrift",
                                   "KyklosAucDrop", "KyklosQualityErrors",
                                   "KyklosManyIssues", "KyklosFewIssues"), strict=True):  # fmt: skip
        cond = parse_condition(rule["when"])
        if not cond.holds(signals[cond.signal]):
            expected[alert] = []
            continue
        labels = {
            "model": model,
            "version": version,
            "severity": rule.get("severity", "warning"),
            "kyklos_rule": rule["name"],
            "signal": cond.signal,
        }
        if cond.signal == "performance_drop":
            assert result.performance is not None
            labels["metric"] = result.performance.metric
        expected[alert] = [{"exp_labels": labels}]
    return expected


@needs_promtool
@pytest.mark.parametrize("which", ["drifted", "calm"], ids=["drifted", "calm"])
def test_prometheus_fires_what_kyklos_fires(
    tmp_path: Path, which: str, request: pytest.FixtureRequest
) -> None:
    """promtool's rule unit tests, fed the real gauges of a check: the generated rules fire
    exactly the alerts that kyklos's own evaluation fires for the same check."""
    result: CheckResult = request.getfixturevalue(which)
    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(prometheus_rules(CONFIG, model="flights"))
    expected = _expected_alerts(result, "flights", "3")
    fired = {name for name, alerts in expected.items() if alerts}
    if which == "drifted":
        assert {"KyklosDatasetDrift", "KyklosAucDrop", "KyklosQualityErrors"} <= fired
    else:
        assert fired == {"KyklosFewIssues"}
    # promtool compares annotations too; its unit tests are about which alerts fire with which
    # labels, so the annotations (checked by `promtool check rules` above) are left out here
    doc = yaml.safe_load(rules_path.read_text())
    for rule in doc["groups"][0]["rules"]:
        rule["annotations"] = {}
    rules_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    tests = {
        "rule_files": [rules_path.name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": _input_series(result, "flights", "3"),
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": name, "exp_alerts": alerts}
                    for name, alerts in expected.items()
                ],
            }
        ],
    }
    test_path = tmp_path / "tests.yml"
    test_path.write_text(yaml.safe_dump(tests, sort_keys=False))
    done = subprocess.run(
        [str(PROMTOOL), "test", "rules", test_path.name],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
