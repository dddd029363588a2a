"""`kyklos monitor rules`: the Prometheus alert-rules file of a project, from the CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kyklos.cli.app import app

PROJECT = """\
name: flights
data: {source: data/flights.parquet, target: late}
monitor:
  alerts:
    rules:
      - {name: drift, when: "share_drifted > 0.3", cooldown: 30m}
      - {name: auc-drop, when: "performance_drop >= 0.03", severity: critical}
"""


def test_rules_are_written_and_pass_promtool(tmp_path: Path) -> None:
    (tmp_path / "kyklos.yaml").write_text(PROJECT)
    out = tmp_path / "rules.yml"
    result = CliRunner().invoke(app, ["-p", str(tmp_path), "monitor", "rules", "-o", str(out)])
    assert result.exit_code == 0, result.output
    rules = [r for g in yaml.safe_load(out.read_text())["groups"] for r in g["rules"]]
    assert len(rules) == 2
    assert {r["labels"]["severity"] for r in rules} == {"warning", "critical"}
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    checked = subprocess.run([promtool, "check", "rules", str(out)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
