"""``kyklos serve`` as a Python function: serve the project's champion over HTTP."""

from __future__ import annotations

import sys
from pathlib import Path

from kyklos.config import Project, load_project
from kyklos.errors import ConfigError

__all__ = ["serve"]


def serve(
    project: str | Path | Project | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    token: str | None = None,
    token_file: str | Path | None = None,
    log_level: str = "warning",
) -> None:
    """Serve the champion of ``project`` until interrupted (uvicorn, one process).

    ``host`` and ``port`` default to ``serve.host`` / ``serve.port`` of ``kyklos.yaml``
    (127.0.0.1:8000). On an address other than loopback a bearer token is required (``token``,
    ``token_file`` or ``KYKLOS_TOKEN``); with a token, ``/feedback`` and ``/admin/...`` need
    ``Authorization: Bearer <token>``. Port 0 picks a free port; the address is printed on
    stderr as ``kyklos serve: <model> v<N> on http://<host>:<port>``.
    """
    from kyklos.serving.app import ServeOptions, create_app
    from kyklos.serving.auth import TOKEN_ENV, is_loopback, resolve_token
    from kyklos.serving.model import load_version
    from kyklos.serving.server import bind_socket, run_server

    loaded = project if isinstance(project, Project) else load_project(project)
    settings = loaded.config.serve
    host = host or settings.host
    port = settings.port if port is None else port
    secret = resolve_token(token, token_file=token_file)
    if secret is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host} without a token: anyone who can reach it could post "
            f"feedback. Hint: set {TOKEN_ENV} or pass --token-file FILE, or bind 127.0.0.1"
        )
    model = load_version(loaded, "champion")
    sock = bind_socket(host, port)
    bound = sock.getsockname()[1]
    options = ServeOptions(
        max_batch_rows=settings.batching.max_batch_rows,
        max_wait_ms=settings.batching.max_wait_ms,
        token=secret,
    )
    app = create_app(loaded, options=options, model=model)
    shown = f"[{host}]" if ":" in host else host
    sys.stderr.write(
        f"kyklos serve: {model.name} v{model.version} on http://{shown}:{bound} "
        f"(docs: /docs, metrics: /metrics{', token required' if secret else ''})\n"
    )
    sys.stderr.flush()
    try:
        run_server(app, sock, log_level=log_level)
    finally:
        sock.close()
