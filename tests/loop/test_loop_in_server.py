"""`kyklos serve --loop`: the controller runs inside a real server; live HTTP traffic and
labels lead it to roll back a bad forced promotion, and the server swaps back on its own."""

from __future__ import annotations

import time

import orjson
import pyarrow as pa
import pytest

import kyklos
from kyklos.loop.cycles import CycleStore
from kyklos.registry.models import ModelRegistry
from serving_server.conftest import start_server

from .conftest import Loop


def _wait(predicate, timeout: float = 90.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
def test_serve_with_loop_rolls_back_a_bad_forced_champion(loop_project: Loop) -> None:
    root = loop_project.root
    project = loop_project.project
    registry = ModelRegistry.for_project(project)
    store = CycleStore(registry.db, project=project.name, model_name=registry.model_name)
    server = start_server(root, "--loop", env={"KYKLOS_RETRAIN__INTERVAL": "200ms"})
    try:
        assert "loop controller runs in this server" in server.proc.stderr.readline()
        _wait(lambda: store.state().state.get("champion") == 1)
        bad = kyklos.run(
            root,
            overrides={"model.estimator": "sklearn.dummy.DummyClassifier", "model.params": {}},
        )
        kyklos.promote(str(bad.model_version), project=root, force=True, reason="hotfix")
        features = [
            f["name"] if isinstance(f, dict) else f
            for f in (registry.get(1).signature or {})["features"]
        ]
        rows = loop_project.summer.slice(0, 400)
        with server.client() as client:
            _wait(lambda: client.get("/model").json()["model"]["version"] == bad.model_version)
            for start in range(0, rows.num_rows, 50):
                part = rows.slice(start, 50)
                body = {"rows": _records(part, features)}
                answer = client.post("/predict", content=orjson.dumps(body))
                assert answer.status_code == 200, answer.text
                assert answer.json()["version"] == bad.model_version
                labels = part.column("late").to_pylist()
                posted = client.post(
                    "/feedback",
                    json={
                        "labels": [
                            {"request_id": answer.json()["request_id"], "row": i, "label": y}
                            for i, y in enumerate(labels)
                        ]
                    },
                )
                assert posted.status_code == 200, posted.text
            _wait(lambda: _champion(registry) == 1)
            _wait(lambda: client.get("/model").json()["model"]["version"] == 1)
    finally:
        server.stop()
    kinds = [e.kind for e in kyklos.events(root, kinds=("loop.",))]
    assert kinds == ["loop.triggered", "loop.rolled_back"]


def _records(part: pa.Table, features: list[str]) -> list[dict[str, object]]:
    return [{name: row[name] for name in features} for row in part.to_pylist()]


def _champion(registry: ModelRegistry) -> int | None:
    champion = registry.champion()
    return champion.version if champion is not None else None
