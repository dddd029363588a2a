"""Configuration: the project file ``kyklos.yaml``, gate syntax, metric names, env overrides."""

from kyklos.config.gates import GateExpr, GateSyntaxError, parse_gate
from kyklos.config.loader import (
    PROJECT_FILE,
    Project,
    find_project_file,
    load_project,
    project_from_config,
    validate_file,
)
from kyklos.config.project import ProjectConfig, infer_task, parse_duration

__all__ = [
    "PROJECT_FILE",
    "GateExpr",
    "GateSyntaxError",
    "Project",
    "ProjectConfig",
    "find_project_file",
    "infer_task",
    "load_project",
    "parse_duration",
    "parse_gate",
    "project_from_config",
    "validate_file",
]
