"""``kyklos reproduce RUN_ID``: rerun a recorded run and say whether it came out identical.

The rerun uses the recorded dataset version (from the artifact store, never the current file),
the recorded resolved configuration (parameters, seed, split, gates) and, when the project is a
git repository and the recorded commit differs from the working tree, the user steps as they were
at that commit (checked out into a temporary ``git worktree``). Nothing is cached or tracked.

The report compares the metrics (exactly) and the test-split predictions (bitwise, then row by
row) and, when they differ, lists what differs in code (step hashes, commit, dirty tree) and in the
environment (package versions).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from kyklos.config import Project
from kyklos.config.project import ProjectConfig
from kyklos.errors import NotFoundError
from kyklos.pipeline.hooks import Hook
from kyklos.pipeline.runner import Runner
from kyklos.registry.tracking import environment, git_state
from kyklos.store import ArtifactStore, open_db
from kyklos.store.schema import run_inputs, runs

__all__ = ["ReproduceReport", "reproduce_run"]


@dataclass(frozen=True)
class ReproduceReport:
    run_id: str
    dataset_version: str
    identical: bool
    metrics_identical: bool
    predictions_identical: bool
    metrics: dict[str, dict[str, float | None]]
    rows_compared: int
    rows_differing: int
    max_abs_difference: float
    code_differences: list[str] = field(default_factory=list)
    environment_differences: list[dict[str, str | None]] = field(default_factory=list)
    checked_out_commit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "dataset_version": self.dataset_version,
            "identical": self.identical,
            "metrics_identical": self.metrics_identical,
            "predictions_identical": self.predictions_identical,
            "metrics": self.metrics,
            "rows_compared": self.rows_compared,
            "rows_differing": self.rows_differing,
            "max_abs_difference": self.max_abs_difference,
            "code_differences": self.code_differences,
            "environment_differences": self.environment_differences,
            "checked_out_commit": self.checked_out_commit,
        }


def reproduce_run(
    project: Project, run_id: str, *, hooks: tuple[Hook, ...] = ()
) -> ReproduceReport:
    """Rerun ``run_id`` from its recorded inputs and compare."""
    import numpy as np

    from kyklos.data.versions import DatasetStore
    from kyklos.pipeline.project import _storage_key, build_nodes
    from kyklos.pipeline.tracking import predictions_key

    db = open_db(project.db_url)
    with db.read() as conn:
        row = conn.execute(select(runs).where(runs.c.run_id == run_id)).first()
        if row is None:
            known = [
                r.run_id
                for r in conn.execute(
                    select(runs.c.run_id).order_by(runs.c.started_at.desc()).limit(5)
                )
            ]
            raise NotFoundError(
                f"run {run_id!r} is not recorded in {project.name!r}; recent runs: "
                f"{', '.join(known) or 'none'}. Hint: `kyklos models list` shows run ids"
            )
        dataset_id = conn.execute(
            select(run_inputs.c.dataset_version_id).where(run_inputs.c.run_id == run_id)
        ).scalar_one()
    recorded_config = ProjectConfig.model_validate(row.config)
    datasets = DatasetStore.for_project(project)
    version = datasets.get(dataset_id)
    previous = datasets.previous(recorded_config.data.name or recorded_config.name, version.id)
    previous_kinds = (
        {c.name: c.kind for c in previous.schema.columns} if previous is not None else None
    )
    rerun_project = Project(root=project.root, config=recorded_config)
    with _checkout(project.root, row.git_commit, row.git_dirty) as (step_root, checked_out):
        nodes = build_nodes(
            rerun_project,
            artifacts=project.artifacts_uri,
            storage_key=_storage_key(version.digest),
            digest=version.digest,
            previous_kinds=previous_kinds,
            step_root=step_root,
        )
        result = Runner(None, hooks=hooks).run(nodes, use_cache=False)
    evaluation = result.output("evaluate")
    new_metrics = {k: float(v) for k, v in evaluation["metrics"].items()}
    old_metrics = {k: float(v) for k, v in (row.metrics or {}).items()}
    metrics_table = {
        name: {"recorded": old_metrics.get(name), "now": new_metrics.get(name)}
        for name in sorted(set(old_metrics) | set(new_metrics))
    }
    metrics_identical = old_metrics == new_metrics
    new_pred = np.ascontiguousarray(
        np.asarray(
            evaluation["y_score"] if evaluation["y_score"] is not None else evaluation["y_pred"],
            dtype=np.float64,
        )
    )
    store = ArtifactStore(project.artifacts_uri)
    rows_differing = 0
    max_diff = 0.0
    if store.exists(predictions_key(run_id)):
        old_pred = np.load(io.BytesIO(store.get_bytes(predictions_key(run_id))), allow_pickle=False)
        if old_pred.shape == new_pred.shape:
            diff = old_pred != new_pred
            rows = diff.reshape(len(diff), -1).any(axis=1) if diff.ndim > 1 else diff
            rows_differing = int(rows.sum())
            if rows_differing:
                max_diff = float(np.max(np.abs(old_pred - new_pred)))
        else:
            rows_differing = max(len(old_pred), len(new_pred))
    predictions_identical = evaluation["predictions_digest"] == row.predictions_digest
    code_diffs: list[str] = []
    for name, code_hash in sorted((row.step_hashes or {}).items()):
        now = next((n.spec.code_hash for n in nodes if n.name == name), None)
        if now is None:
            code_diffs.append(f"step {name!r} no longer exists")
        elif now != code_hash:
            code_diffs.append(f"step {name!r} code changed ({code_hash[:12]} → {now[:12]})")
    git = git_state(project.root)
    if row.git_commit and git is not None and git.commit and git.commit != row.git_commit:
        where = "checked out for the rerun" if checked_out else "not available: ran today's code"
        code_diffs.append(
            f"git commit {row.git_commit[:12]} recorded, {git.commit[:12]} now ({where})"
        )
    if row.git_dirty:
        code_diffs.append("the recorded run had uncommitted changes (dirty tree)")
    env_now = environment()
    env_diffs = [
        {"package": key, "recorded": row.environment.get(key), "now": env_now.get(key)}
        for key in sorted(set(row.environment) | set(env_now))
        if row.environment.get(key) != env_now.get(key)
    ]
    return ReproduceReport(
        run_id=run_id,
        dataset_version=version.id,
        identical=metrics_identical and predictions_identical,
        metrics_identical=metrics_identical,
        predictions_identical=predictions_identical,
        metrics=metrics_table,
        rows_compared=len(new_pred),
        rows_differing=rows_differing,
        max_abs_difference=max_diff,
        code_differences=code_diffs,
        environment_differences=env_diffs,
        checked_out_commit=row.git_commit if checked_out else None,
    )


@contextmanager
def _checkout(root: Path, commit: str | None, dirty: bool | None) -> Iterator[tuple[Path, bool]]:
    """The folder to load user steps from: a worktree at ``commit`` when it differs from HEAD."""
    git = git_state(root)
    if commit is None or git is None or (git.commit == commit and not git.dirty):
        yield root, False
        return
    top = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
        check=False,
    )
    if top.returncode != 0:
        yield root, False
        return
    toplevel = Path(top.stdout.strip())
    tmp = Path(tempfile.mkdtemp(prefix="kyklos-reproduce-"))
    tree = tmp / "tree"
    added = subprocess.run(
        ["git", "-C", str(toplevel), "worktree", "add", "--detach", str(tree), commit],
        capture_output=True,
        text=True,
        check=False,
    )
    if added.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        yield root, False
        return
    try:
        yield tree / root.resolve().relative_to(toplevel.resolve()), True
    finally:
        subprocess.run(
            ["git", "-C", str(toplevel), "worktree", "remove", "--force", str(tree)],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(tmp, ignore_errors=True)
