"""``kyklos validate``, ``kyklos init`` and ``kyklos demo``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kyklos.cli.state import STATE


def register(root: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    root.command("validate")(validate)
    root.command("demo")(demo)


def validate(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Check kyklos.yaml and report every problem at once."""
    from kyklos.api.project import validate_project
    from kyklos.cli.render import console, emit

    report = validate_project(STATE.project)

    def human(data: Any) -> None:
        if data["valid"]:
            console().print(f"[green]✓[/green] {data['file']} is valid")
            return
        console().print(f"[red]✗[/red] {data['file']}: {len(data['issues'])} problem(s)")
        for issue in data["issues"]:
            console().print(
                f"  [bold]{issue['path']}[/bold]: got {issue['value']!r}, expected {issue['expected']}",
                markup=True,
            )
            if issue["hint"]:
                console().print(f"    hint: {issue['hint']}")

    emit(report, as_json=as_json, human=human)
    if not report["valid"]:
        raise typer.Exit(1)


def demo(
    directory: Annotated[str, typer.Argument(help="folder to create the demo project in")] = (
        "kyklos-demo"
    ),
    fast: Annotated[bool, typer.Option("--fast", help="a short version (used by CI)")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="replace the folder if it holds something else")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="print a JSON summary at the end")
    ] = False,
) -> None:
    """The closed loop, live: serve, replay drifting traffic, retrain, canary, promote, roll back."""
    from pathlib import Path

    from kyklos.api.demo import DEMO_MARKER, run_demo
    from kyklos.cli.render import console, emit

    target = Path(directory)
    replace = force or (target / DEMO_MARKER).exists()
    say = (lambda _text: None) if as_json else (lambda text: console().print(text, soft_wrap=True))
    show = None if as_json else console().print
    result = run_demo(target, fast=fast, force=replace, say=say, show=show)
    if as_json:
        emit(result, as_json=True, human=lambda _d: None)
