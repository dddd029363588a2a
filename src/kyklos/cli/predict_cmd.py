"""``kyklos predict``: score a CSV/Parquet file with a model version (batch scoring)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kyklos.cli.state import STATE

__all__ = ["predict", "register"]


def register(root: typer.Typer) -> None:
    """Add ``kyklos predict`` to the root command."""
    root.command("predict")(predict)


def predict(
    input: Annotated[str, typer.Option("--input", "-i", help="CSV or Parquet file to score")],
    output: Annotated[
        str, typer.Option("--output", "-o", help="where to write (.csv or .parquet)")
    ],
    version: Annotated[
        str, typer.Option("--version", help="model version: champion, challenger, latest, 3, v3")
    ] = "champion",
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", min=1, help="rows per chunk (bounds the memory used)")
    ] = 50_000,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Score a file: the input's columns plus prediction (and score), written atomically."""
    from kyklos.api.predict import predict_file
    from kyklos.cli.render import console, emit, err_console

    show = err_console()
    bar: Any = None
    task: Any = None

    def progress(done: int, total: int | None) -> None:
        nonlocal bar, task
        if not show.is_terminal:
            return
        if bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            bar = Progress(
                TextColumn("scoring"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("rows"),
                console=show,
                transient=True,
            )
            task = bar.add_task("scoring", total=total)
            bar.start()
        bar.update(task, completed=done)

    try:
        result = predict_file(
            input,
            output,
            project=STATE.project,
            version=version,
            chunk_rows=chunk_rows,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.stop()

    def human(_: Any) -> None:
        console().print(
            f"scored {result.rows:,} rows with {result.model_name} v{result.version} in "
            f"{result.seconds:.1f}s → {result.output}",
            markup=False,
        )

    emit(result, as_json=as_json, human=human)
