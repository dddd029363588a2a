"""Hot swap: promotion and rollback reach a live server without failing a request."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

import kyklos
from kyklos.config import load_project
from kyklos.registry import ModelRegistry
from kyklos.store import open_db
from kyklos.store.schema import events

from .conftest import Server, start_server


class Load:
    """Threads posting /predict continuously; records every answer's version or failure."""

    def __init__(self, server: Server, row: dict[str, Any], threads: int = 4) -> None:
        self.server = server
        self.row = row
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[tuple[float, int]] = []  # (monotonic time, version)
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._fire) for _ in range(threads)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def _fire(self) -> None:
        with self.server.client(timeout=10) as client:
            while not self.stop.is_set():
                try:
                    response = client.post("/predict", json=self.row)
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with self.lock:
                    if response.status_code == 200:
                        self.answers.append((time.monotonic(), response.json()["version"]))
                    else:
                        self.failures.append(f"{response.status_code}: {response.text}")

    def first_answer_of(self, version: int, after: float, timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for at, v in self.answers:
                    if at >= after and v == version:
                        return at
            time.sleep(0.02)
        raise AssertionError(f"no answer from v{version} within {timeout} s")

    def versions_after(self, at: float) -> Counter[int]:
        with self.lock:
            return Counter(v for t, v in self.answers if t > at)


@pytest.fixture(scope="module")
def three_versions(trained: Path) -> Path:
    assert kyklos.run(trained, overrides={"model.params.max_iter": 20}).model_version == 3
    return trained


@pytest.fixture(scope="module")
def live(three_versions: Path) -> Iterator[Server]:
    srv = start_server(three_versions)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def row(live: Server) -> dict[str, Any]:
    with live.client() as client:
        features = client.get("/model").json()["model"]["features"]
    return {
        f["name"]: 1.0 if f["kind"] == "numeric" else (f["categories"] or ["x"])[0]
        for f in features
    }


def test_promotion_reaches_the_server_without_failures(live: Server, row: dict[str, Any]) -> None:
    with Load(live, row) as load:
        load.first_answer_of(1, after=0.0)
        promoted = time.monotonic()
        kyklos.promote(2, project=live.root, reason="hot swap test")
        switched = load.first_answer_of(2, after=promoted)
        time.sleep(0.5)
    assert load.failures == []
    assert switched - promoted < 2.0 + 0.5  # 0.5 s poll interval; slack for a loaded CI box
    settled = load.versions_after(switched + 0.3)
    assert set(settled) == {2}, settled  # once swapped, never back to the old model


def _events(root: Path, kind: str) -> list[Any]:
    project = load_project(root)
    with open_db(project.db_url).read() as conn:
        return list(conn.execute(select(events).where(events.c.kind == kind)))


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(
    live: Server, row: dict[str, Any]
) -> None:
    project = load_project(live.root)
    registry = ModelRegistry.for_project(project)
    with registry.tracker.model_files(registry.get(3).model_uri) as folder:
        pickled = next(p for p in Path(folder).iterdir() if p.suffix == ".pkl")
        pickled.write_bytes(pickled.read_bytes() + b"tampered")
    with Load(live, row) as load:
        kyklos.promote(3, project=live.root, reason="broken on purpose", force=True)
        deadline = time.monotonic() + 10
        while not _events(live.root, "serving.load_failed"):
            assert time.monotonic() < deadline, "the failed load was not recorded"
            time.sleep(0.1)
        after_failure = time.monotonic()
        time.sleep(0.7)  # more polls: the broken version is not retried into a failure
    assert load.failures == []
    assert set(load.versions_after(after_failure)) == {2}
    (event,) = _events(live.root, "serving.load_failed")
    assert "v3" in event.message and "v2 keeps serving" in event.message
    with live.client() as client:
        metrics = client.get("/metrics").text
        info = client.get("/model").json()
    assert "kyklos_model_load_failing 1.0" in metrics
    assert 'kyklos_model_load_failures_total{model="flights",version="3"} 1.0' in metrics
    assert info["model"]["version"] == 2 and "v3" in info["load_error"]
    # rolling back to the version serving clears the failure
    kyklos.rollback(project=live.root, reason="v3 is broken")
    deadline = time.monotonic() + 5
    with live.client() as client:
        while "kyklos_model_load_failing 0.0" not in client.get("/metrics").text:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert client.post("/predict", json=row).json()["version"] == 2
