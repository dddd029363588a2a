"""``kyklos init DIR``: scaffold a working project."""

from __future__ import annotations

from typing import Annotated, Any

import typer

__all__ = ["init", "register"]


def register(root: typer.Typer) -> None:
    """Add ``kyklos init`` to the root app."""
    root.command("init")(init)


def init(
    directory: Annotated[
        str, typer.Argument(metavar="DIR", help="folder to create (or an empty one)")
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="project name (default: the folder name)")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="write into a non-empty folder, replacing files of the same name"
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create a project: kyklos.yaml, example data, a custom step, its test and a CI workflow."""
    import shlex

    from rich.markup import escape

    from kyklos.api.init import init_project
    from kyklos.cli.render import console, emit

    result = init_project(directory, name=name, force=force)

    def human(data: Any) -> None:
        out = console()
        out.print(
            f"[green]✓[/green] created project [bold]{escape(data['name'])}[/bold] in "
            f"{escape(data['root'])} "
            f"({len(data['files'])} files, {data['rows']:,} flights)"
        )
        for path in data["files"]:
            note = "  [yellow](replaced)[/yellow]" if path in data["overwritten"] else ""
            out.print(f"  {escape(path)}{note}")
        out.print("next:")
        out.print(f"  cd {shlex.quote(directory)} && kyklos run", markup=False)

    emit(result.to_dict(), as_json=as_json, human=human)
