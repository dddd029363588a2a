"""A trained flights project per test module, and a real ``kyklos serve`` subprocess on it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import kyklos

KYKLOS = str(Path(sys.executable).with_name("kyklos"))
_ADDRESS = re.compile(r"on (http://\S+) ")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, _mlflow_template: Path) -> Path:
    """A scaffolded flights project (3,000 rows) with v1 (champion) and v2 (challenger)."""
    return two_versions(tmp_path_factory.mktemp("serve") / "flights", _mlflow_template)


def two_versions(root: Path, mlflow_template: Path) -> Path:
    """Scaffold a flights project (3,000 rows) at ``root``; train v1 (champion) and v2."""
    kyklos.init_project(root, rows=3000)
    (root / ".kyklos").mkdir(exist_ok=True)
    shutil.copyfile(mlflow_template, root / ".kyklos" / "mlflow.db")
    assert kyklos.run(root).model_version == 1
    assert kyklos.run(root, overrides={"model.params.max_iter": 30}).model_version == 2
    return root


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    root: Path
    banner: str = ""

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 20, **kwargs})

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Stop the server; returns what it wrote on stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def start_server(
    root: Path, *args: str, env: dict[str, str] | None = None, wait: bool = True
) -> Server:
    """``kyklos serve --port 0 ARGS`` in ``root``; waits until /ready answers 200."""
    full_env = {k: v for k, v in os.environ.items() if k != "KYKLOS_TOKEN"}
    full_env.update(env or {})
    proc = subprocess.Popen(
        [KYKLOS, "serve", "--port", "0", *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = _ADDRESS.search(line)
    if match is None:
        proc.kill()
        _, rest = proc.communicate()
        raise AssertionError(f"kyklos serve did not start: {line}{rest}")
    server = Server(proc, match.group(1), root, line)
    if wait:
        with server.client() as client:
            wait_ready(client, lambda: proc.poll() is None, "kyklos serve")
    return server


def wait_ready(
    client: httpx.Client, alive: Callable[[], bool], what: str, timeout: float = 60.0
) -> None:
    """Poll ``/ready`` until it answers 200; fail if ``alive()`` turns false or on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.get("/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert alive(), f"{what} stopped"
        assert time.monotonic() < deadline, f"{what} never became ready"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(trained: Path) -> Iterator[Server]:
    """One ``kyklos serve`` on the module's project (stopped with SIGTERM at the end)."""
    srv = start_server(trained)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def row(server: Server) -> dict[str, Any]:
    """One valid row for the served model (numbers 1.0, the first known category)."""
    with server.client() as client:
        features = client.get("/model").json()["model"]["features"]
    return {
        f["name"]: 1.0 if f["kind"] == "numeric" else (f["categories"] or ["x"])[0]
        for f in features
    }
