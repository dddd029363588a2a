"""``kyklos.init_project(...)``: the Python twin of ``kyklos init DIR``."""

from __future__ import annotations

from pathlib import Path

from kyklos.scaffold import InitResult, scaffold

__all__ = ["InitResult", "init_project"]


def init_project(
    directory: str | Path,
    *,
    name: str | None = None,
    force: bool = False,
    rows: int | None = None,
) -> InitResult:
    """Scaffold a working project in ``directory``: kyklos.yaml, example data, a custom step,
    its test, a GitHub Actions workflow, a README and a .gitignore.

    ``name`` defaults to the folder name; ``force`` writes into a non-empty folder (replacing
    files of the same name, keeping the others); ``rows`` keeps only the first rows of the
    example data (default: all winter flights, January and February 2013).

    >>> import tempfile, kyklos
    >>> result = kyklos.init_project(f"{tempfile.mkdtemp()}/late-flights", rows=1000)
    >>> result.name, result.rows, "kyklos.yaml" in result.files
    ('late-flights', 1000, True)
    """
    return scaffold(directory, name=name, force=force, rows=rows)
