"""``kyklos logs``: query the prediction log with DuckDB; print a table or CSV/JSON, or save a file."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from kyklos.cli.state import STATE

__all__ = ["logs", "register"]

_TABLE_LIMIT = 50


def register(root: typer.Typer) -> None:
    """Add ``kyklos logs`` to the root command."""
    root.command("logs")(logs)


def logs(
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="from this time: ISO 8601 (naive = UTC) or back from now: -1h, 30m"
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="before this time (same forms as --since)")
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="only this model version")
    ] = None,
    arm: Annotated[
        str | None, typer.Option("--arm", help="only this arm: champion, canary or shadow")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", help=f"only the N latest records (table default: {_TABLE_LIMIT})"),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="table, csv, json (JSON Lines) or parquet")
    ] = "table",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="write to this file (csv, json, parquet)")
    ] = None,
    labels: Annotated[
        bool, typer.Option("--labels", help="add each prediction's latest label (label, label_ts)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="same as --format json")] = False,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns", help="comma-separated columns to keep, e.g. ts,version,f.distance"
        ),
    ] = None,
) -> None:
    """Query the prediction log: what was answered, when, by which version, and the labels."""
    from kyklos.api.logs import FORMATS, TABLE_COLUMNS, encode_logs, logs_query, save_logs
    from kyklos.cli.render import console
    from kyklos.errors import ConfigError

    if as_json:
        fmt = "json"
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is unknown; expected one of {', '.join(FORMATS)}")
    if fmt == "table" and output is not None:
        raise ConfigError("--output needs --format csv, json or parquet (a table is for reading)")
    if fmt == "parquet" and output is None:
        raise ConfigError("--format parquet writes a file: add --output FILE")
    wanted = None
    if columns is not None:
        wanted = [c.strip() for c in columns.split(",") if c.strip()]
        if not wanted:
            raise ConfigError(f"--columns: {columns!r} names no column; expected e.g. ts,version")
    shown_limit = _TABLE_LIMIT if fmt == "table" and limit is None else limit
    table = logs_query(
        STATE.project,
        since=since,
        until=until,
        version=version,
        arm=arm,
        limit=shown_limit,
        labels=labels,
        columns=wanted,
    )
    if output is not None:
        path = save_logs(table, fmt, output)
        console().print(f"wrote {table.num_rows:,} records to {path}", markup=False)
        return
    if fmt != "table":
        sys.stdout.write(encode_logs(table, fmt).decode())
        sys.stdout.flush()
        return
    names = wanted or [
        c for c in (*TABLE_COLUMNS, "label") if c in table.column_names and (c != "label" or labels)
    ]
    rows = zip(*(table.column(n).to_pylist() for n in names), strict=True) if names else []
    from kyklos.cli.render import table as render_table

    render_table(
        ([_cell(v) for v in row] for row in rows),
        names,
        empty="no predictions match; the log fills as `kyklos serve` answers requests",
    )
    if limit is None and table.num_rows == _TABLE_LIMIT:
        console().print(
            f"[dim]showing the latest {_TABLE_LIMIT}; use --limit N, or --format csv/json[/dim]"
        )


def _cell(value: Any) -> Any:
    import datetime as dt

    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
