"""The CI script and the check script: they parse, and CI runs the README's test command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CI = REPO / ".ci" / "run"
CHECK = REPO / "scripts" / "check"
README_COMMAND = re.compile(r"pip install -e '\.\[dev\]'.*pytest")


@pytest.mark.parametrize("script", [CI, CHECK], ids=["ci-run", "scripts-check"])
def test_script_is_executable_bash(script: Path) -> None:
    assert os.access(script, os.X_OK)
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_ci_runs_every_check_in_order_and_fails_fast() -> None:
    text = CI.read_text()
    assert "set -euo pipefail" in text
    order = [
        'bash -euo pipefail -c "$test_command"',
        "ruff check src tests benchmarks",
        "ruff format --check src tests",
        "\nmypy\n",
        "\nlint-imports\n",
    ]
    positions = [text.index(step) for step in order]
    assert positions == sorted(positions)
    assert not re.search(r"\b(curl|wget|git clone)\b", text)


def test_readme_gives_the_test_command_that_ci_runs() -> None:
    match = README_COMMAND.search((REPO / "README.md").read_text())
    assert match, "README.md needs a line: pip install -e '.[dev]' && pytest"


def test_ci_stops_before_installing_when_the_readme_has_no_test_command(tmp_path: Path) -> None:
    (tmp_path / ".ci").mkdir()
    shutil.copy2(CI, tmp_path / ".ci" / "run")
    (tmp_path / "README.md").write_text("# kyklos\n\nRun the tests with pytest.\n")

    done = subprocess.run(
        [str(tmp_path / ".ci" / "run")], capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 1
    assert "README.md has no test command line" in done.stderr
    assert not (tmp_path / ".venv").exists()
