"""The ``kyklos`` command: a thin Typer shell over the Python API.

Nothing heavy is imported here: every command imports what it needs inside its body, so that
``kyklos --help`` starts in well under 0.3 s. Known errors (:class:`~kyklos.errors.KyklosError`)
print one line and exit with code 1; anything else prints "internal error" and a hint.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from kyklos.cli import (
    data_cmds,
    init_cmd,
    logs_cmds,
    loop_cmds,
    models_cmds,
    monitor_cmds,
    pipeline_cmds,
    predict_cmd,
    project_cmds,
    serve_cmd,
)
from kyklos.cli.state import STATE

__all__ = ["app", "main"]

app = typer.Typer(
    name="kyklos",
    help="kyklos — the machine-learning lifecycle as one closed loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    project: Annotated[
        str | None,
        typer.Option(
            "--project",
            "-p",
            help="project folder or kyklos.yaml (default: nearest one upwards)",
            envvar="KYKLOS_PROJECT",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show tracebacks")] = False,
) -> None:
    STATE.project = project
    STATE.verbose = verbose


project_cmds.register(app)
init_cmd.register(app)
pipeline_cmds.register(app)
logs_cmds.register(app)
app.add_typer(data_cmds.app, name="data", help="Dataset versions: add, list, show, diff.")
data_cmds.register_top(app)
app.add_typer(models_cmds.app, name="models", help="Model versions, aliases, promotion, rollback.")
monitor_cmds.register(app)
predict_cmd.register(app)
serve_cmd.register(app)
loop_cmds.register(app)


def main() -> None:
    """Entry point of the ``kyklos`` script."""
    from kyklos.errors import KyklosError

    try:
        app()
    except KyklosError as exc:
        if STATE.verbose:
            raise
        _fail(f"error: {exc}")
    except KeyboardInterrupt:
        _fail("interrupted")
    except Exception as exc:
        if STATE.verbose:
            raise
        _fail(
            f"internal error: {type(exc).__name__}: {exc} — re-run with --verbose for the traceback"
        )


def _fail(message: str) -> None:
    from kyklos.cli.render import err_console

    err_console().print(message, style="red", markup=False)
    sys.exit(1)
