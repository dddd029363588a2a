"""Dataset verbs: the Python twins of ``kyklos data add/list/show/diff`` and ``kyklos lineage``.

Each loads the project around ``project`` (a folder or ``kyklos.yaml``; default: the nearest one
upwards from the working directory) and works on its dataset store.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kyklos.config import Project, load_project
from kyklos.data import (
    DatasetDiff,
    DatasetStore,
    DatasetVersion,
    LineageGraph,
    diff_versions,
    lineage,
)

__all__ = ["data_add", "data_diff", "data_list", "data_show", "lineage_of"]


def _store(project: str | Path | None) -> tuple[Project, DatasetStore]:
    loaded = load_project(project)
    return loaded, DatasetStore.for_project(loaded)


def data_add(
    path: str | None = None,
    *,
    project: str | Path | None = None,
    name: str | None = None,
    parents: Sequence[str] = (),
    note: str | None = None,
) -> tuple[DatasetVersion, bool]:
    """Add a table as a dataset version; return it and whether it is new.

    ``path`` is relative to the working directory (or a URI); without it, the project's
    ``data.source`` is added. ``name`` defaults to the project's dataset name.
    """
    loaded, store = _store(project)
    if path is None:
        source = loaded.resolve(loaded.config.data.source)
    else:
        source = path if "://" in path else str(Path(path).absolute())
    return store.add(source, name=name or loaded.dataset_name, parents=parents, note=note)


def data_list(
    *, project: str | Path | None = None, name: str | None = None
) -> list[DatasetVersion]:
    """Every dataset version of the project (of ``name``), newest first."""
    _, store = _store(project)
    return store.list(name)


def data_show(ref: str = "latest", *, project: str | Path | None = None) -> DatasetVersion:
    """One dataset version: id, unique prefix, ``latest`` or ``NAME@latest``."""
    _, store = _store(project)
    return store.get(ref)


def data_diff(
    a: str, b: str, *, project: str | Path | None = None, threshold: float | None = None
) -> DatasetDiff:
    """Schema changes and distribution shifts from version ``a`` to version ``b``.

    ``threshold`` (PSI) defaults to the project's ``monitor.drift.threshold``, or 0.1 (PSI's
    usual "some shift" level) when the project leaves it to each method's default.
    """
    loaded, store = _store(project)
    va, vb = store.get(a), store.get(b)
    configured = loaded.config.monitor.drift.threshold
    limit = threshold if threshold is not None else (configured if configured is not None else 0.1)
    return diff_versions(va, vb, tables=(store.load(va), store.load(vb)), threshold=limit)


def lineage_of(ref: str, *, project: str | Path | None = None) -> LineageGraph:
    """The lineage graph around a dataset version, run or model version (a bare version number
    means a version of the project's registered model)."""
    loaded, store = _store(project)
    return lineage(store.db, ref, default_model=loaded.registered_model)
