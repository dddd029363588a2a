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

__all__ = ["alias_history", "models_list", "models_show", "promote", "rollback"]

ProjectRef = str | Path | Project | None


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
