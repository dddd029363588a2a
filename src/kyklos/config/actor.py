"""Who is acting: recorded on dataset versions, runs, alias changes and events."""

from __future__ import annotations

import getpass
import os

__all__ = ["current_actor"]


def current_actor(actor: str | None = None) -> str:
    """``actor`` if given, else ``$KYKLOS_ACTOR``, else the login name (``unknown`` without one)."""
    if actor and actor.strip():
        return actor.strip()
    from_env = os.environ.get("KYKLOS_ACTOR", "").strip()
    if from_env:
        return from_env
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "unknown"
