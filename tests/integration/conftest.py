"""Fixtures of the integration tests: a real ``mlflow server`` process on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.servers import MLFLOW, MlflowServer, clean_env, free_port, stop, wait_healthy


@pytest.fixture
def mlflow_server(tmp_path: Path, _mlflow_template: Path) -> Iterator[MlflowServer]:
    """``mlflow server`` with a SQLite backend (a copy of the migrated template: migrations
    cost seconds) and proxied artifacts (``--serve-artifacts``) in ``tmp_path/server``.

    One uvicorn worker and no job runner: enough for a test, and quicker to start on 2 cores.
    The whole process group is stopped afterwards.
    """
    folder = tmp_path / "server"
    folder.mkdir()
    db = folder / "mlflow.db"
    shutil.copyfile(_mlflow_template, db)
    artifacts = folder / "artifacts"
    log = folder / "server.log"
    port = free_port()
    server = MlflowServer(
        url=f"http://127.0.0.1:{port}",
        backend_uri=f"sqlite:///{db}",
        artifacts=artifacts,
        log=log,
    )
    command = [
        str(MLFLOW),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        server.backend_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
            cwd=folder,
            start_new_session=True,  # its own process group: stop uvicorn with it
        )
    try:
        wait_healthy(server, process, deadline=time.monotonic() + 120)
        yield server
    finally:
        stop(process)
