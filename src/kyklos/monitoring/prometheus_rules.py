"""A Prometheus alert-rules file from ``monitor.alerts``, for teams running Prometheus.

Each kyklos rule becomes one alerting rule over the gauges of :mod:`kyklos.monitoring.metrics`,
with the same meaning as kyklos's own evaluation (:mod:`kyklos.monitoring.alerts`):

=====================  ===========================================================================
signal                 PromQL (``M`` = ``model="<model>"``)
=====================  ===========================================================================
``dataset_drift``      ``kyklos_dataset_drift{M}``
``share_drifted``      ``kyklos_dataset_drift_share{M}``
``max_feature_drift``  ``max by (model, version) (kyklos_feature_drift_ratio{M})``
``prediction_drift``   ``kyklos_prediction_drifted{M}``
``performance_drop``   ``kyklos_performance_drop{M}``
``quality_errors``     ``sum by (model, version) (kyklos_quality_issue_count{M, severity="error"})``
``quality_issues``     ``sum by (model, version) (kyklos_quality_issue_count{M})``
=====================  ===========================================================================

kyklos's ``cooldown`` has no equivalent inside a rule file: it is written into each rule's
annotations; set Alertmanager's ``repeat_interval`` to it. Validate the file with
``promtool check rules FILE`` (Debian package ``prometheus``).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from kyklos.config.project import ALERT_SIGNALS, AlertsConfig, parse_duration
from kyklos.monitoring.signals import parse_condition

__all__ = ["SIGNAL_QUERIES", "prometheus_rules"]

SIGNAL_QUERIES: dict[str, str] = {
    "dataset_drift": "kyklos_dataset_drift{M}",
    "share_drifted": "kyklos_dataset_drift_share{M}",
    "max_feature_drift": "max by (model, version) (kyklos_feature_drift_ratio{M})",
    "prediction_drift": "kyklos_prediction_drifted{M}",
    "performance_drop": "kyklos_performance_drop{M}",
    "quality_errors": 'sum by (model, version) (kyklos_quality_issue_count{M, severity="error"})',
    "quality_issues": "sum by (model, version) (kyklos_quality_issue_count{M})",
}
assert set(SIGNAL_QUERIES) == set(ALERT_SIGNALS)

_DESCRIBE = {
    "dataset_drift": "dataset drift (1 = drifted)",
    "share_drifted": "share of drifted features",
    "max_feature_drift": "largest feature drift relative to its threshold",
    "prediction_drift": "prediction drift (1 = drifted)",
    "performance_drop": "drop of the watched metric against the reference",
    "quality_errors": "data-quality errors",
    "quality_issues": "data-quality issues",
}


def prometheus_rules(
    config: AlertsConfig,
    *,
    model: str,
    for_: str = "1m",
    stale_after: str | None = None,
    group: str | None = None,
) -> str:
    """The rules file (YAML) for ``model``: one group, one alerting rule per kyklos rule.

    ``for_`` is how long a condition must hold before Prometheus fires; ``stale_after`` adds a
    ``KyklosMonitorStale`` rule that fires when no check was published for that long.
    """
    matcher = f'model="{_promql_string(model)}"'
    rules: list[dict[str, Any]] = []
    taken: set[str] = set()
    for rule in config.rules:
        cond = parse_condition(rule.when)
        query = SIGNAL_QUERIES[cond.signal].replace("{M", "{" + matcher)
        alert = _alert_name(rule.name, taken)
        what = _DESCRIBE[cond.signal]
        rules.append(
            {
                "alert": alert,
                "expr": f"({query}) {cond.op} {cond.threshold:g}",
                "for": _prom_duration(for_),
                "labels": {
                    "severity": rule.severity,
                    "kyklos_rule": _literal(rule.name),
                    "signal": cond.signal,
                },
                "annotations": {
                    "summary": (
                        "{{ $labels.model }} v{{ $labels.version }}: "
                        f'{what} = {{{{ printf "%.4g" $value }}}} (rule: {_literal(str(cond))})'
                    ),
                    "description": (
                        f"kyklos alert rule {_literal(rule.name)} ({_literal(rule.when)}) holds "
                        "for model {{ $labels.model }} version {{ $labels.version }}. "
                        "See `kyklos monitor show` and the window's report."
                    ),
                    "kyklos_cooldown": rule.cooldown,
                },
            }
        )
    if stale_after is not None:
        seconds = parse_duration(stale_after)
        rules.append(
            {
                "alert": _alert_name("monitor stale", taken),
                "expr": (
                    f"time() - kyklos_monitor_last_check_timestamp_seconds{{{matcher}}} "
                    f"> {seconds:g}"
                ),
                "for": _prom_duration(for_),
                "labels": {"severity": "warning", "kyklos_rule": "monitor_stale"},
                "annotations": {
                    "summary": (
                        "{{ $labels.model }} v{{ $labels.version }}: no monitor check for "
                        '{{ printf "%.0f" $value }} s'
                    ),
                    "description": (
                        f"No monitor check was published for more than {stale_after}. "
                        "Hint: is `kyklos monitor run` (or the server's loop) running?"
                    ),
                },
            }
        )
    document = {"groups": [{"name": group or f"kyklos-{model}", "rules": rules}]}
    header = (
        f"# Prometheus alert rules for kyklos model {model!r}, generated from monitor.alerts\n"
        "# in kyklos.yaml. Check with: promtool check rules FILE\n"
        "# kyklos cool-downs are in each rule's annotations: use them as Alertmanager's\n"
        "# repeat_interval.\n"
    )
    return header + yaml.safe_dump(
        document, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000
    )


def _alert_name(name: str, taken: set[str]) -> str:
    """``Kyklos`` + the rule name in CamelCase (a valid Prometheus metric name), unique."""
    words = re.findall(r"[A-Za-z0-9]+", name)
    base = "Kyklos" + "".join(w[:1].upper() + w[1:] for w in words)
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}{n}", n + 1
    taken.add(candidate)
    return candidate


def _promql_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _literal(value: str) -> str:
    """``value`` safe inside a Prometheus template (labels and annotations are templated)."""
    return re.sub(r"\{\{|\}\}", lambda m: '{{ "' + m.group(0) + '" }}', value)


def _prom_duration(text: str) -> str:
    """A kyklos duration (``90s``, ``1.5m``) in Prometheus syntax (``1m30s``)."""
    ms = round(parse_duration(text) * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    if ms:
        parts.append(f"{ms}ms")
    return "".join(parts)
