"""Options shared by every command (set by the top-level callback)."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["STATE", "CliState"]


@dataclass
class CliState:
    project: str | None = os.environ.get("KYKLOS_PROJECT")
    verbose: bool = False


STATE = CliState()
