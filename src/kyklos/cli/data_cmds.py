"""``kyklos data ...`` and ``kyklos lineage``."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


def register_top(root: typer.Typer) -> None:
    """Top-level commands of this area (``kyklos lineage``)."""
