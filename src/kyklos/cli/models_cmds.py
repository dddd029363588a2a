"""``kyklos models ...``: list, show, promote, rollback, history, export."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from kyklos.cli.state import STATE

app = typer.Typer(no_args_is_help=True)

_JSON = typer.Option("--json", help="print JSON")
_REASON = typer.Option("--reason", "-r", help="why (recorded in the alias history)")


@app.command("list")
def list_models(as_json: Annotated[bool, _JSON] = False) -> None:
    """List the model's versions with their aliases, metrics and gate results."""
    from kyklos.api.models import models_list
    from kyklos.cli.render import emit, table

    versions = models_list(STATE.project)

    def human(_: Any) -> None:
        table(
            (
                (
                    f"v{v.version}",
                    ", ".join(v.aliases),
                    _metrics(v.metrics),
                    "✓" if v.gates_passed else "✗",
                    f"{v.created_at:%Y-%m-%d %H:%M}",
                    v.run_id,
                )
                for v in versions
            ),
            ["version", "aliases", "metrics", "gates", "created (UTC)", "run"],
            empty="no model versions yet; train one with `kyklos run`",
        )

    emit([v.to_dict(include_profile=False) for v in versions], as_json=as_json, human=human)


@app.command("show")
def show(
    ref: Annotated[
        str, typer.Argument(help="version (3, v3), latest, champion or challenger")
    ] = "champion",
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Show one version: metrics, gate results, aliases and their history."""
    from kyklos.api.models import alias_history, models_show
    from kyklos.cli.render import console, emit, table

    version = models_show(ref, STATE.project)
    changes = alias_history(STATE.project, version=version.version)

    def human(_: Any) -> None:
        from rich.markup import escape

        out = console()
        aliases = f"  [green]{', '.join(version.aliases)}[/green]" if version.aliases else ""
        out.print(f"[bold]{escape(version.model_name)} v{version.version}[/bold]{aliases}")
        out.print(f"  created  {version.created_at:%Y-%m-%d %H:%M:%S} UTC")
        out.print(f"  run      {version.run_id}")
        out.print(f"  model    {escape(version.model_uri)}  ({escape(version.registry_uri)})")
        out.print(f"  hash     {version.model_hash}")
        if version.dataset_version_id:
            out.print(f"  dataset  {version.dataset_version_id}")
        gates = "[green]passed[/green]" if version.gates_passed else "[red]failed[/red]"
        out.print(f"  gates    {gates}")
        table(
            ((k, _num(v)) for k, v in sorted(version.metrics.items())),
            ["metric", "value"],
            title="metrics",
        )
        table(
            (
                (r.gate, _num(r.value), _num(r.threshold), _verdict(r.passed), r.reason)
                for r in version.gate_results
            ),
            ["gate", "value", "threshold", "result", "reason"],
            title="gates",
            empty="no gates configured",
        )
        _history_table(changes, title="alias history of this version")

    emit(
        {"version": version.to_dict(include_profile=False), "alias_history": changes},
        as_json=as_json,
        human=human,
    )


@app.command("promote")
def promote(
    ref: Annotated[str, typer.Argument(help="version to promote (3, v3, latest, challenger)")],
    reason: Annotated[str, _REASON] = "",
    force: Annotated[
        bool, typer.Option("--force", help="promote although gates failed (needs --reason)")
    ] = False,
    alias: Annotated[
        str, typer.Option("--alias", help="the alias to move (champion or challenger)")
    ] = "champion",
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Make a version the champion (refused when it failed its gates, unless --force)."""
    from kyklos.api.models import promote as api_promote
    from kyklos.cli.render import emit

    change = api_promote(ref, project=STATE.project, reason=reason, force=force, alias=alias)
    emit(change, as_json=as_json, human=lambda _: _print_change(change))


@app.command("rollback")
def rollback(
    reason: Annotated[str, _REASON] = "",
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Give the champion alias back to the previous champion, in one step."""
    from kyklos.api.models import rollback as api_rollback
    from kyklos.cli.render import emit

    change = api_rollback(project=STATE.project, reason=reason)
    emit(change, as_json=as_json, human=lambda _: _print_change(change))


@app.command("history")
def history(
    alias: Annotated[
        str | None, typer.Option("--alias", help="only this alias (champion, challenger)")
    ] = None,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Every alias change: who, when, from which version to which, and why."""
    from kyklos.api.models import alias_history
    from kyklos.cli.render import emit

    changes = alias_history(STATE.project, alias=alias)
    emit(changes, as_json=as_json, human=lambda _: _history_table(changes, title=None))


@app.command("export")
def export(
    ref: Annotated[str, typer.Argument(help="version to export (3, v3, latest, champion)")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="export format: onnx")] = "onnx",
    sample_rows: Annotated[
        int,
        typer.Option("--sample-rows", min=1, help="training rows the parity check runs on"),
    ] = 2000,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Export a version to ONNX, checked against scikit-learn on real rows (needs kyklos[onnx])."""
    from kyklos.api.models import export_model
    from kyklos.cli.render import emit

    result = export_model(ref, project=STATE.project, format=fmt, sample_rows=sample_rows)
    emit(result.to_dict(), as_json=as_json, human=lambda _: _print_export(result))


# -- rendering ------------------------------------------------------------------------------
def _print_export(result: Any) -> None:
    from rich.markup import escape

    from kyklos.cli.render import console

    out = console()
    parity = result.parity
    tol = parity.tolerance
    out.print(
        f"[green]✓[/green] exported {escape(result.model_name)} v{result.version} to ONNX "
        f"({result.onnx_bytes / 1024:,.0f} KiB, {result.seconds:.1f} s)"
    )
    out.print(f"  parity   {escape(parity.summary())}")
    out.print(
        f"           on rows of {escape(result.dataset_version_id)}; tolerance: agreement >= "
        f"{tol.min_agreement:.2%}, max diff <= {tol.max_diff:g}, mean diff <= {tol.max_mean_diff:g}"
    )
    out.print(f"  model    {escape(result.onnx_uri)}")
    out.print(f"  record   {escape(result.record_uri)}")
    out.print(
        f"[dim]next: kyklos serve (v{result.version} is served with onnxruntime when it is "
        "champion; --runtime sklearn turns that off)[/dim]"
    )


def _print_change(change: Any) -> None:
    from kyklos.cli.render import console

    out = console()
    if not change.changed:
        out.print(
            f"[yellow]=[/yellow] {change.alias} is already v{change.to_version}; nothing changed"
        )
        return
    before = f"v{change.from_version}" if change.from_version is not None else "none"
    verb = {"promote": "promoted", "rollback": "rolled back", "set": "set"}.get(
        change.action, change.action
    )
    forced = " [red](forced past failed gates)[/red]" if change.forced else ""
    out.print(
        f"[green]✓[/green] {verb} {change.alias}: {before} → [bold]v{change.to_version}[/bold]{forced}"
    )
    out.print("[dim]next: kyklos models history[/dim]")


def _history_table(changes: Any, *, title: str | None) -> None:
    from kyklos.cli.render import table

    table(
        (
            (
                f"{c.at:%Y-%m-%d %H:%M:%S}",
                c.alias,
                c.action + (" (forced)" if c.forced else ""),
                _v(c.from_version),
                _v(c.to_version),
                c.actor,
                c.reason,
            )
            for c in changes
        ),
        ["when (UTC)", "alias", "action", "from", "to", "who", "why"],
        title=title,
        empty="no alias changes yet",
    )


def _metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={_num(v)}" for k, v in sorted(metrics.items()))


def _num(value: float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.4f}"


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else "—"


def _verdict(passed: bool | None) -> str:
    return {True: "✓ passed", False: "✗ failed", None: "– skipped"}[passed]
