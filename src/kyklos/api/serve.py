"""``kyklos serve`` as a Python function: serve the project's champion over HTTP."""

from __future__ import annotations

import functools
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kyklos.config import Project, load_project
from kyklos.errors import ConfigError

if TYPE_CHECKING:
    from kyklos.monitoring.metrics import StoredResultsCollector
    from kyklos.serving.app import ServeOptions
    from kyklos.serving.model import LoadedModel

__all__ = ["monitor_gauges", "serve", "with_runtime"]


def serve(
    project: str | Path | Project | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    token: str | None = None,
    token_file: str | Path | None = None,
    log_level: str = "warning",
    loop: bool = False,
    runtime: str | None = None,
    workers: int | None = None,
    log_fsync: bool | None = None,
) -> None:
    """Serve the champion of ``project`` until interrupted (uvicorn).

    ``host`` and ``port`` default to ``serve.host`` / ``serve.port`` of ``kyklos.yaml``
    (127.0.0.1:8000). On an address other than loopback a bearer token is required (``token``,
    ``token_file`` or ``KYKLOS_TOKEN``); with a token, ``/feedback`` and ``/admin/...`` need
    ``Authorization: Bearer <token>``. Port 0 picks a free port; the address is printed on
    stderr as ``kyklos serve: <model> v<N> on http://<host>:<port>``. ``loop`` runs the loop
    controller (:mod:`kyklos.loop.controller`) in a thread of this process. ``runtime``
    (default ``serve.runtime``: auto) picks onnxruntime or scikit-learn for every version this
    server loads (see :func:`kyklos.serving.model.load_version`); ``onnx`` refuses to start, or
    to swap to a version, without a checked ONNX export. ``workers`` (default ``serve.workers``:
    1) processes share the socket, each with its own model, batcher and prediction-log writer
    (see :mod:`kyklos.serving.workers`). Every answer is committed to the prediction log before
    it is sent: written to the operating system (it survives the server being killed), and with
    ``log_fsync`` (default ``serve.log.fsync``: off) also fdatasync'ed (it survives a power loss).
    """
    from kyklos.serving.app import ServeOptions
    from kyklos.serving.auth import TOKEN_ENV, is_loopback, resolve_token
    from kyklos.serving.model import load_version
    from kyklos.serving.onnx_runtime import NO_EXPORT
    from kyklos.serving.server import bind_socket, run_server

    loaded = project if isinstance(project, Project) else load_project(project)
    if runtime is not None:
        loaded = with_runtime(loaded, runtime)
    settings = loaded.config.serve
    host = host or settings.host
    port = settings.port if port is None else port
    workers = settings.workers if workers is None else workers
    if workers < 1:
        raise ConfigError(f"--workers {workers}: expected 1 or more worker processes")
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
        log_fsync=settings.log.fsync if log_fsync is None else log_fsync,
        token=secret,
    )
    app = _app(loaded, options, model) if workers == 1 else None
    shown = f"[{host}]" if ":" in host else host
    sys.stderr.write(
        f"kyklos serve: {model.name} v{model.version} on http://{shown}:{bound} "
        f"(runtime: {model.runtime}, docs: /docs, metrics: /metrics"
        f"{', token required' if secret else ''}"
        f"{', log fsync' if options.log_fsync else ''}"
        f"{f', {workers} workers' if workers > 1 else ''})\n"
    )
    if model.runtime_reason and NO_EXPORT not in model.runtime_reason:
        sys.stderr.write(f"kyklos serve: {model.runtime_reason}; serving with scikit-learn\n")
    sys.stderr.flush()
    controller = _start_loop(loaded) if loop else None
    _rollout_from_config(loaded)
    try:
        if app is not None:
            run_server(app, sock, log_level=log_level)
        else:
            from kyklos.serving.workers import run_workers

            factory = functools.partial(_worker_app, loaded, options)
            run_workers(factory, sock, workers, log_level=log_level)
    finally:
        sock.close()
        if controller is not None:
            controller[0].set()
            controller[1].join(timeout=30)


def _app(project: Project, options: ServeOptions, model: LoadedModel | None = None) -> Any:
    """The ASGI app of one server process: the FastAPI app behind the hot-path fast path."""
    import dataclasses

    from kyklos.serving.app import create_app
    from kyklos.serving.fastpath import FastPath

    options = dataclasses.replace(options, collectors=(monitor_gauges(project),))
    return FastPath(create_app(project, options=options, model=model))


def _worker_app(project: Project, options: ServeOptions, shared: Path) -> Any:
    """What each worker process of ``kyklos serve --workers N`` serves (its own model);
    ``shared`` is the directory the server's workers share (:mod:`kyklos.serving.workers`)."""
    import dataclasses

    from kyklos.serving.model import load_version

    options = dataclasses.replace(options, shared_dir=shared)
    return _app(project, options, load_version(project, "champion"))


def _rollout_from_config(project: Project) -> None:
    """``serve.rollout.strategy`` canary or shadow: start that rollout of the ``challenger``
    alias when none is active (a rollout already running, e.g. from `kyklos rollout start`,
    is left as it is)."""
    from kyklos.errors import KyklosError
    from kyklos.registry.models import ModelRegistry
    from kyklos.registry.rollouts import active_rollout, start_rollout

    plan = project.config.serve.rollout
    if plan.strategy == "none":
        return
    registry = ModelRegistry.for_project(project)
    if active_rollout(registry.db, registry.model_name) is not None:
        return
    challenger = registry.challenger()
    if challenger is None:
        sys.stderr.write(
            f"kyklos serve: serve.rollout.strategy is {plan.strategy}, but there is no "
            "challenger yet; the champion serves alone until one is set\n"
        )
        return
    try:
        rollout = start_rollout(
            registry,
            challenger.version,
            strategy=plan.strategy,
            fraction=plan.fraction,
            actor="kyklos serve",
            reason="serve.rollout in kyklos.yaml",
        )
    except KyklosError as exc:  # e.g. started by another server at the same moment
        sys.stderr.write(f"kyklos serve: no rollout from kyklos.yaml: {exc}\n")
        return
    share = f" on {rollout.fraction:.0%} of requests" if rollout.strategy == "canary" else ""
    sys.stderr.write(
        f"kyklos serve: {rollout.strategy} rollout of v{rollout.challenger_version}{share} "
        "(serve.rollout in kyklos.yaml)\n"
    )


def _start_loop(project: Project) -> tuple[threading.Event, threading.Thread]:
    """The loop controller in a thread of the server process (``kyklos serve --loop``); its
    tick lease keeps it to one per project whatever the number of servers."""
    from kyklos.api.loop import controller

    stop = threading.Event()
    worker = threading.Thread(
        target=controller(project).run, args=(stop,), name="kyklos-loop", daemon=True
    )
    worker.start()
    sys.stderr.write("kyklos serve: the loop controller runs in this server (--loop)\n")
    return stop, worker


def monitor_gauges(project: Project, *, max_age: float = 5.0) -> StoredResultsCollector:
    """The monitor gauges for ``/metrics``: the newest stored monitor result of each model
    version of ``project`` (``kyklos monitor run`` stores them), read from its metadata DB at
    most every ``max_age`` seconds (:class:`~kyklos.monitoring.metrics.StoredResultsCollector`)."""
    from kyklos.monitoring.metrics import StoredResultsCollector
    from kyklos.monitoring.store import MonitorStore
    from kyklos.store import open_db

    store = MonitorStore(
        open_db(project.db_url), project=project.name, model_name=project.registered_model
    )
    return StoredResultsCollector(store, max_age=max_age)


def with_runtime(project: Project, runtime: str) -> Project:
    """``project`` with ``serve.runtime`` set to ``runtime`` (auto, sklearn or onnx)."""
    import dataclasses

    from kyklos.serving.onnx_runtime import RUNTIMES

    choice = runtime.strip().lower()
    if choice not in RUNTIMES:
        raise ConfigError(f"--runtime {runtime!r}: choose from {', '.join(RUNTIMES)}")
    config = project.config
    serve = config.serve.model_copy(update={"runtime": choice})
    return dataclasses.replace(project, config=config.model_copy(update={"serve": serve}))
