"""Model versions and aliases: the Python twins of ``kyklos models ...``.

Every function takes ``project`` (a folder, a ``kyklos.yaml`` path or a loaded
:class:`~kyklos.config.Project`; default: the nearest ``kyklos.yaml`` upwards).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kyklos.config import Project, load_project

if TYPE_CHECKING:
    from kyklos.registry import AliasChange, ModelRegistry, ModelVersion
    from kyklos.serving.onnx_export import OnnxExport

__all__ = [
    "EXPORT_FORMATS",
    "alias_history",
    "export_model",
    "models_list",
    "models_show",
    "promote",
    "rollback",
]

ProjectRef = str | Path | Project | None

#: Formats ``kyklos models export`` writes.
EXPORT_FORMATS = ("onnx",)


def registry_for(project: ProjectRef = None) -> ModelRegistry:
    """The model registry of ``project``."""
    from kyklos.registry import ModelRegistry

    loaded = project if isinstance(project, Project) else load_project(project)
    return ModelRegistry.for_project(loaded)


def models_list(project: ProjectRef = None) -> list[ModelVersion]:
    """Every registered version of the project's model, oldest first (without profiles)."""
    return registry_for(project).list()


def models_show(ref: int | str, project: ProjectRef = None) -> ModelVersion:
    """One version (``3``, ``"v3"``, ``"latest"``, ``"champion"``, ``"challenger"``), in full."""
    return registry_for(project).get(ref)


def promote(
    ref: int | str,
    *,
    project: ProjectRef = None,
    reason: str = "",
    force: bool = False,
    alias: str = "champion",
    actor: str | None = None,
) -> AliasChange:
    """Point ``alias`` at version ``ref``; refused for failed gates unless ``force`` + ``reason``."""
    from kyklos.registry import promote as _promote

    return _promote(
        registry_for(project), ref, alias=alias, actor=actor, reason=reason, force=force
    )


def rollback(
    *, project: ProjectRef = None, reason: str = "", actor: str | None = None
) -> AliasChange:
    """Give the champion alias back to the previous champion (recorded)."""
    from kyklos.registry import rollback as _rollback

    return _rollback(registry_for(project), actor=actor, reason=reason)


def alias_history(
    project: ProjectRef = None, *, alias: str | None = None, version: int | None = None
) -> list[AliasChange]:
    """Every alias change of the project's model, oldest first; optionally only those of one
    alias, or only those that moved an alias to or from ``version``."""
    from kyklos.registry import history

    registry = registry_for(project)
    changes = history(registry.db, registry.model_name, alias=alias)
    if version is not None:
        changes = [c for c in changes if version in (c.from_version, c.to_version)]
    return changes


def export_model(
    ref: int | str,
    *,
    project: ProjectRef = None,
    format: str = "onnx",
    sample_rows: int | None = None,
) -> OnnxExport:
    """Export version ``ref`` (``3``, ``"v3"``, ``"champion"``...) to ``format`` (``onnx``).

    The graph is checked against the scikit-learn model on ``sample_rows`` rows (default 2,000)
    of the version's training data and stored next to the version only when they agree
    (see :mod:`kyklos.serving.onnx_export`); ``kyklos serve`` then uses it with onnxruntime.
    Needs ``pip install 'kyklos[onnx]'``.
    """
    from kyklos.errors import ConfigError
    from kyklos.serving.onnx_export import DEFAULT_SAMPLE_ROWS, export_onnx

    if format.lower() not in EXPORT_FORMATS:
        raise ConfigError(
            f"unknown export format {format!r}; choose from {', '.join(EXPORT_FORMATS)}"
        )
    loaded = project if isinstance(project, Project) else load_project(project)
    return export_onnx(
        loaded, ref, sample_rows=DEFAULT_SAMPLE_ROWS if sample_rows is None else sample_rows
    )
