"""The registry layer: MLflow tracking, model versions, gates, aliases and their history.

Importing this package does not import MLflow; a :class:`Tracker` imports it on first use.
"""

from kyklos.registry.aliases import (
    CHALLENGER,
    CHAMPION,
    AliasChange,
    clear_alias,
    history,
    promote,
    rollback,
    set_alias,
    sync_mlflow_aliases,
)
from kyklos.registry.gate import GateReport, GateResult, evaluate_gates
from kyklos.registry.models import ModelRegistry, ModelVersion, parse_ref
from kyklos.registry.provenance import (
    GitState,
    current_actor,
    environment,
    git_state,
    run_context_tags,
)
from kyklos.registry.tracking import SERIALIZATION_FORMAT, TrackedRun, Tracker, directory_digest

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "SERIALIZATION_FORMAT",
    "AliasChange",
    "GateReport",
    "GateResult",
    "GitState",
    "ModelRegistry",
    "ModelVersion",
    "TrackedRun",
    "Tracker",
    "clear_alias",
    "current_actor",
    "directory_digest",
    "environment",
    "evaluate_gates",
    "git_state",
    "history",
    "parse_ref",
    "promote",
    "rollback",
    "run_context_tags",
    "set_alias",
    "sync_mlflow_aliases",
]
