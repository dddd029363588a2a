"""A scaffolded flights project with a pre-migrated MLflow store, per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import kyklos

KYKLOS = str(Path(sys.executable).with_name("kyklos"))


@pytest.fixture
def make_project(tmp_path: Path, _mlflow_template: Path) -> Callable[..., Path]:
    """``make_project(rows=6000, name="p")`` → the folder of a fresh, scaffolded project."""

    def make(rows: int = 6000, name: str = "p") -> Path:
        root = tmp_path / name
        kyklos.init_project(root, rows=rows)
        (root / ".kyklos").mkdir(exist_ok=True)
        shutil.copyfile(_mlflow_template, root / ".kyklos" / "mlflow.db")
        return root

    return make


@pytest.fixture
def project(make_project: Callable[..., Path]) -> Path:
    return make_project()


def cli(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``kyklos`` command in ``root``."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [KYKLOS, *args], cwd=root, capture_output=True, text=True, env=full_env, timeout=240
    )


def edit_yaml(root: Path, old: str, new: str) -> None:
    path = root / "kyklos.yaml"
    text = path.read_text()
    assert old in text, f"{old!r} not in kyklos.yaml"
    path.write_text(text.replace(old, new))
