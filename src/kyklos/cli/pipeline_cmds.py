"""``kyklos run`` and ``kyklos reproduce``."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Add this area's commands to the root app."""
