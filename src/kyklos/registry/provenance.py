"""Where a run came from: the git commit, the environment's package versions, the actor.

Everything here is cheap (one ``git`` subprocess, ``importlib.metadata`` look-ups) and never
raises for a missing git or a folder outside a repository: provenance is recorded when it can be,
and reported as absent otherwise.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from kyklos.config.actor import current_actor

__all__ = [
    "ENVIRONMENT_PACKAGES",
    "OPTIONAL_PACKAGES",
    "GitState",
    "current_actor",
    "environment",
    "git_state",
    "run_context_tags",
]

ENVIRONMENT_PACKAGES = (
    "kyklos",
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
    "pyarrow",
    "mlflow",
)
OPTIONAL_PACKAGES = ("lightgbm", "xgboost")


@dataclass(frozen=True)
class GitState:
    """The code a run was trained from: the commit (None before the first commit), whether
    tracked files had uncommitted changes, and the branch (None when detached)."""

    commit: str | None
    dirty: bool
    branch: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def git_state(path: str | Path = ".") -> GitState | None:
    """The git state of the repository around ``path``; None when it is not in a repository
    (or git is not installed).

    One ``git status --porcelain=v2 --branch`` call. Untracked files do not make the tree dirty:
    only changes to tracked files change what the code of the run was.
    """
    git = shutil.which("git")
    if git is None:
        return None
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    try:
        done = subprocess.run(
            [
                git,
                "-C",
                str(folder),
                "status",
                "--porcelain=v2",
                "--branch",
                "--untracked-files=no",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    commit: str | None = None
    branch: str | None = None
    dirty = False
    for line in done.stdout.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.removeprefix("# branch.oid ").strip()
            commit = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line.removeprefix("# branch.head ").strip()
            branch = None if head == "(detached)" else head
        elif line and not line.startswith("#"):
            dirty = True
    return GitState(commit=commit, dirty=dirty, branch=branch)


def environment() -> dict[str, str]:
    """Python version, platform and the versions of the packages a model depends on.

    Optional packages (lightgbm, xgboost) are listed only when installed.
    """
    env = {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }
    for name in ENVIRONMENT_PACKAGES:
        env[name] = _version(name) or "not installed"
    for name in OPTIONAL_PACKAGES:
        version = _version(name)
        if version is not None:
            env[name] = version
    return env


def run_context_tags(
    *, git: GitState | None, source: str | None = None, actor: str | None = None
) -> dict[str, str]:
    """MLflow's standard run tags (user, source, git commit and branch) plus ``kyklos.git.dirty``.

    The MLflow UI shows these in the run's overview (the fluent API sets them implicitly; a
    :class:`~kyklos.registry.tracking.Tracker` run gets them from here).
    """
    tags = {
        "mlflow.user": current_actor(actor),
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": source or (sys.argv[0] if sys.argv and sys.argv[0] else "kyklos"),
    }
    if git is not None:
        if git.commit:
            tags["mlflow.source.git.commit"] = git.commit
        if git.branch:
            tags["mlflow.source.git.branch"] = git.branch
        tags["kyklos.git.dirty"] = "true" if git.dirty else "false"
    return tags


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
