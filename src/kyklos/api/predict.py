"""Batch scoring: the Python twin of ``kyklos predict``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kyklos.config import Project, load_project

if TYPE_CHECKING:
    from kyklos.serving.batch import BatchResult

__all__ = ["predict_file"]

ProjectRef = str | Path | Project | None


def predict_file(
    input: str | Path,
    output: str | Path,
    *,
    project: ProjectRef = None,
    version: str | int = "champion",
    chunk_rows: int = 50_000,
    progress: Callable[[int, int | None], None] | None = None,
) -> BatchResult:
    """Score a CSV/Parquet file with a model version into a CSV/Parquet file (by extension).

    The project's user steps run on each chunk first, so a raw file with the training data's
    columns can be scored. The output has the input's columns plus ``prediction`` (and
    ``score`` for classifiers); it appears only when every chunk succeeded.
    """
    from kyklos.serving.batch import score_file

    loaded = project if isinstance(project, Project) else load_project(project)
    return score_file(loaded, input, output, ref=version, chunk_rows=chunk_rows, progress=progress)
