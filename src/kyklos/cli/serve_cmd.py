"""``kyklos serve``: serve the champion over HTTP (predict, MLflow scoring, feedback, metrics)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kyklos.cli.state import STATE

__all__ = ["register", "serve"]


def register(root: typer.Typer) -> None:
    """Add ``kyklos serve`` to the root command."""
    root.command("serve")(serve)


def serve(
    host: Annotated[
        str | None,
        typer.Option("--host", help="address to bind (default: serve.host, 127.0.0.1)"),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535, help="port (default: serve.port, 8000; 0: any)"),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="file holding the bearer token (else KYKLOS_TOKEN); required off loopback",
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="uvicorn log level: warning, info, debug")
    ] = "warning",
    loop: Annotated[
        bool, typer.Option("--loop", help="also run the closed-loop controller in this server")
    ] = False,
    runtime: Annotated[
        str | None,
        typer.Option(
            "--runtime",
            help="auto (onnxruntime when a checked ONNX export exists), sklearn, or onnx "
            "(fail without one); default: serve.runtime",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="worker processes sharing the port (default: serve.workers, 1)",
        ),
    ] = None,
    log_fsync: Annotated[
        bool | None,
        typer.Option(
            "--log-fsync/--no-log-fsync",
            help="fdatasync each prediction-log commit before answering (survives a power "
            "loss, not only a killed server); default: serve.log.fsync, off",
        ),
    ] = None,
) -> None:
    """Serve the champion model: POST /predict, /invocations, /feedback; GET /metrics, /docs."""
    from kyklos.api.serve import serve as _serve

    _serve(
        STATE.project,
        host=host,
        port=port,
        token_file=token_file,
        log_level=log_level,
        loop=loop,
        runtime=runtime,
        workers=workers,
        log_fsync=log_fsync,
    )
