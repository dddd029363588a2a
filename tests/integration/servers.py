"""Helpers of the integration tests: start and stop a real ``mlflow server`` on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
MLFLOW = BIN / "mlflow"
KYKLOS = BIN / "kyklos"

#: MLflow 3.17 under SQLAlchemy 2.1 / pandas 3 warns once at import (not about our data); the
#: shared `_mlflow_template` fixture and our own MlflowClient imports need the same filters as
#: tests/registry (see MLFLOW_IMPORT_WARNINGS there).
MLFLOW_IMPORT_WARNINGS = (
    pytest.mark.filterwarnings(
        "ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"
    ),
    pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning"),
)


@dataclass(frozen=True)
class MlflowServer:
    """A running ``mlflow server``: its URL, where it stores artifacts, and its log file."""

    url: str
    backend_uri: str
    artifacts: Path
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The process environment without MLflow/kyklos settings (so nothing process-wide points at
    a store by accident), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KYKLOS_"))}
    env.update(extra)
    return env


def wait_healthy(server: MlflowServer, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"mlflow server exited with {process.returncode} before answering /health:\n"
                f"{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"mlflow server at {server.url} did not answer /health:\n{server.log_tail()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    # the uvicorn child may outlive the CLI parent for a moment: make sure the group is gone
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
