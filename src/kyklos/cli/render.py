"""One renderer for every command: Rich tables for people, ``--json`` for scripts and CI.

Commands call the Python API, get plain data back (dicts, lists, dataclasses) and hand it here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["console", "emit", "err_console", "table", "to_jsonable"]

_console: Any = None
_err_console: Any = None


def console() -> Any:
    """The stdout Rich console (created on first use, so ``--help`` stays fast)."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(highlight=False, soft_wrap=False)
    return _console


def err_console() -> Any:
    global _err_console
    if _err_console is None:
        from rich.console import Console

        _err_console = Console(stderr=True, highlight=False, soft_wrap=True)
    return _err_console


def to_jsonable(value: Any) -> Any:
    """Plain JSON types for dataclasses, datetimes, paths, numpy scalars and sets."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return to_jsonable(value.to_dict())
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def emit(data: Any, *, as_json: bool, human: Callable[[Any], None]) -> None:
    """Print ``data`` as JSON (``as_json``) or through the ``human`` renderer."""
    if as_json:
        sys.stdout.write(json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")
    else:
        human(data)


def table(
    rows: Iterable[Sequence[Any]],
    columns: Sequence[str],
    *,
    title: str | None = None,
    empty: str = "nothing to show",
) -> None:
    """Print a Rich table, or ``empty`` when there are no rows."""
    from rich.table import Table
    from rich.text import Text

    rows = list(rows)
    if not rows:
        console().print(f"[dim]{empty}[/dim]")
        return
    out = Table(title=title, title_justify="left", header_style="bold")
    for name in columns:
        out.add_column(name, overflow="fold")
    for row in rows:
        out.add_row(*(Text("" if v is None else str(v)) for v in row))
    console().print(out)
