"""Project-level verbs: validate (and later init, demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kyklos.config import find_project_file, validate_file

__all__ = ["validate_project"]


def validate_project(start: str | Path | None = None) -> dict[str, Any]:
    """Validate ``kyklos.yaml``; return ``{"file", "valid", "issues": [...]}`` with every problem."""
    path = find_project_file(start)
    _config, issues = validate_file(path)
    return {
        "file": str(path),
        "valid": not issues,
        "issues": [
            {"path": i.path, "value": i.value, "expected": i.expected, "hint": i.hint}
            for i in issues
        ],
    }
