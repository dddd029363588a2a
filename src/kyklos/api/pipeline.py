"""``kyklos run`` and ``kyklos reproduce`` as Python functions."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kyklos.config import load_project

__all__ = ["reproduce", "run"]


def run(
    project: str | Path | None = None,
    *,
    no_cache: bool = False,
    progress: bool = False,
    dataset: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Any:
    """Run the project's pipeline; returns a :class:`~kyklos.pipeline.project.PipelineOutcome`.

    ``dataset`` trains on a stored dataset version (id or prefix) instead of ``data.source``.
    ``overrides`` sets fields by dotted path for this run only
    (``{"model.params.max_iter": 50}``), exactly like ``KYKLOS_MODEL__PARAMS__MAX_ITER=50``.
    """
    from kyklos.pipeline.project import run_project

    loaded = load_project(project, env=override_env(overrides))
    hooks = _progress_hooks() if progress else ()
    return run_project(loaded, use_cache=not no_cache, hooks=hooks, dataset_ref=dataset)


def reproduce(run_id: str, project: str | Path | None = None, *, progress: bool = False) -> Any:
    """Rerun a recorded run; returns a :class:`~kyklos.pipeline.reproduce.ReproduceReport`."""
    from kyklos.pipeline.reproduce import reproduce_run

    loaded = load_project(project)
    hooks = _progress_hooks() if progress else ()
    return reproduce_run(loaded, run_id, hooks=hooks)


def _progress_hooks() -> tuple[Any, ...]:
    """A live progress display on stderr, only for a person at a terminal."""
    import sys

    if not sys.stderr.isatty():
        return ()
    from rich.console import Console

    from kyklos.pipeline.hooks import RichProgressHook

    return (RichProgressHook(console=Console(stderr=True, highlight=False)),)


def override_env(overrides: Mapping[str, Any] | None) -> dict[str, str]:
    """The process environment plus ``overrides`` written as ``KYKLOS_A__B`` variables."""
    import json

    env = dict(os.environ)
    for dotted, value in (overrides or {}).items():
        key = "KYKLOS_" + "__".join(part.upper() for part in dotted.split("."))
        env[key] = value if isinstance(value, str) else json.dumps(value)
    return env
