"""The HTTP API of ``kyklos serve`` against a real uvicorn server on a trained project."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kyklos.data.predlog import PredictionLog

from .conftest import KYKLOS, Server, start_server

JSON = {"content-type": "application/json"}


def _logged(root: Path, ids: list[str]) -> set[str]:
    table = PredictionLog(root / ".kyklos" / "logs").lookup(ids, columns=("request_id", "row"))
    return set(table.column("request_id").to_pylist())


def test_predict_one_row_rows_and_columns(server: Server, row: dict[str, Any]) -> None:
    with server.client() as client:
        one = client.post("/predict", json=row)
        many = client.post("/predict", json={"rows": [row, row, row]})
        cols = client.post("/predict", json={"columns": {k: [v, v] for k, v in row.items()}})
    assert one.status_code == 200, one.text
    body = one.json()
    assert set(body) == {"predictions", "scores", "model", "version", "request_id"}
    assert body["model"] == "flights" and body["version"] == 1
    assert body["predictions"][0] in (0, 1) and 0.0 <= body["scores"][0] <= 1.0
    assert one.headers["x-request-id"] == body["request_id"]
    assert many.status_code == 200 and len(many.json()["predictions"]) == 3
    assert many.json()["scores"] == [body["scores"][0]] * 3
    assert cols.status_code == 200 and len(cols.json()["scores"]) == 2
    # answered means logged: every row of every request is in the prediction log
    table = PredictionLog(server.root / ".kyklos" / "logs").lookup(
        [body["request_id"], many.json()["request_id"]],
        columns=("request_id", "row", "version", "arm", "endpoint", "f.distance"),
    )
    assert table.num_rows == 4
    assert set(table.column("arm").to_pylist()) == {"champion"}
    assert set(table.column("endpoint").to_pylist()) == {"predict"}
    assert table.column("f.distance").to_pylist() == [1.0] * 4


def test_client_request_id_is_kept(server: Server, row: dict[str, Any]) -> None:
    with server.client() as client:
        response = client.post("/predict", json=row, headers={"X-Request-ID": "order-42"})
    assert response.json()["request_id"] == "order-42"
    assert _logged(server.root, ["order-42"]) == {"order-42"}


@pytest.mark.parametrize(
    "shape",
    ["dataframe_split", "dataframe_records", "instances", "inputs", "instances-lists", "csv"],
)
def test_invocations_speaks_mlflow(server: Server, row: dict[str, Any], shape: str) -> None:
    names = list(row)
    values = [row[n] for n in names]
    bodies: dict[str, Any] = {
        "dataframe_split": {"dataframe_split": {"columns": names, "data": [values, values]}},
        "dataframe_records": {"dataframe_records": [row, row]},
        "instances": {"instances": [row, row]},
        "inputs": {"inputs": {n: [v, v] for n, v in row.items()}},
        "instances-lists": {"instances": [values, values]},
    }
    with server.client() as client:
        if shape == "csv":
            csv = ",".join(names) + "\n" + ("\n".join([",".join(map(str, values))] * 2)) + "\n"
            response = client.post(
                "/invocations", content=csv, headers={"content-type": "text/csv"}
            )
        else:
            response = client.post("/invocations", json=bodies[shape])
        reference = client.post("/predict", json={"rows": [row, row]}).json()
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": reference["predictions"]}


def test_health_ready_docs_and_metrics(server: Server, row: dict[str, Any]) -> None:
    with server.client() as client:
        client.post("/predict", json=row)
        client.post("/predict", content=b"{", headers=JSON)
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").json()["version"] == 1
        assert "/predict" in client.get("/openapi.json").json()["paths"]
        assert client.get("/docs").status_code == 200
        metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert (
        'kyklos_requests_total{endpoint="predict",model="flights",status="200",version="1"}' in text
    )
    assert (
        'kyklos_requests_total{endpoint="predict",model="flights",status="400",version="1"}' in text
    )
    assert "kyklos_request_duration_seconds_bucket{" in text
    for name in ("kyklos_queue_depth", "kyklos_batches_total", "kyklos_prediction_log_lag_rows"):
        assert f"\n{name} " in text, name
    assert 'kyklos_model_info{arm="champion",model="flights",version="1"} 1.0' in text


def test_feedback_joins_known_ids_and_names_unknown_ones(
    server: Server, row: dict[str, Any]
) -> None:
    with server.client() as client:
        answered = client.post("/predict", json={"rows": [row, row]}).json()["request_id"]
        ok = client.post("/feedback", json={"labels": [{"request_id": answered, "label": 1}]})
        mixed = client.post(
            "/feedback",
            json={
                "labels": [
                    {"request_id": answered, "row": 1, "label": 0},
                    {"request_id": "never-asked", "label": 1},
                    {"request_id": answered, "row": 5, "label": 1},
                ]
            },
        )
    assert ok.status_code == 200, ok.text
    assert ok.json()["accepted"] == 1
    assert mixed.status_code == 207
    statuses = [(r["request_id"], r["row"], r["status"]) for r in mixed.json()["results"]]
    assert statuses == [(answered, 1, 200), ("never-asked", 0, 404), (answered, 5, 404)]
    labels = PredictionLog(server.root / ".kyklos" / "logs").labels()
    mine = {
        (r["request_id"], r["row"], r["label"])
        for r in labels.to_pylist()
        if r["request_id"] == answered
    }
    assert mine == {(answered, 0, 1.0), (answered, 1, 0.0)}


BIG = 9 * 1024 * 1024

# (id, method, path, headers, body, status, field)
BAD_REQUESTS: list[tuple[str, str, str, dict[str, str], bytes | None, int, str | None]] = [
    ("malformed-json", "POST", "/predict", JSON, b'{"a": ', 400, "body"),
    ("empty-body", "POST", "/predict", JSON, b"", 400, "body"),
    ("json-array", "POST", "/predict", JSON, b"[1, 2]", 422, "body"),
    ("rows-not-list", "POST", "/predict", JSON, b'{"rows": 3}', 422, "rows"),
    ("rows-not-objects", "POST", "/predict", JSON, b'{"rows": [1]}', 422, "rows[0]"),
    ("no-rows", "POST", "/predict", JSON, b'{"rows": []}', 422, "payload"),
    ("columns-not-object", "POST", "/predict", JSON, b'{"columns": [1]}', 422, "columns"),
    ("missing-features", "POST", "/predict", JSON, b'{"distance": 100}', 422, "day"),
    ("wrong-type", "POST", "/predict", JSON, None, 422, "distance"),
    ("unknown-feature", "POST", "/predict", JSON, None, 422, "bogus"),
    ("infinite", "POST", "/predict", JSON, None, 400, "body"),  # not JSON: orjson refuses
    ("form-content", "POST", "/predict", {"content-type": "text/plain"}, b"{}", 415, "Content-Type"),
    ("too-large", "POST", "/predict", JSON, b"[" + b" " * BIG + b"]", 413, "body"),
    ("bad-request-id", "POST", "/predict", {**JSON, "x-request-id": "a b"}, b"{}", 400, "X-Request-ID"),
    ("unknown-route", "GET", "/nope", {}, None, 404, "path"),
    ("wrong-method", "GET", "/predict", {}, None, 405, "method"),
    ("mlflow-no-key", "POST", "/invocations", JSON, b'{"data": []}', 422, "body"),
    ("mlflow-split-ragged", "POST", "/invocations", JSON, b'{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}', 422, "dataframe_split.data[0]"),
    ("mlflow-records-type", "POST", "/invocations", JSON, b'{"dataframe_records": {}}', 422, "dataframe_records"),
    ("csv-not-number", "POST", "/invocations", {"content-type": "text/csv"}, b"distance\nfar\n", 422, "distance"),
    ("csv-ragged", "POST", "/invocations", {"content-type": "text/csv"}, b"a,b\n1\n", 422, "line 2"),
    ("csv-empty", "POST", "/invocations", {"content-type": "text/csv"}, b"", 400, "body"),
    ("feedback-no-labels", "POST", "/feedback", JSON, b'{"x": 1}', 422, "labels"),
    ("feedback-bad-label", "POST", "/feedback", JSON, b'{"labels": [{"request_id": "a", "label": "yes"}]}', 422, "labels[0].label"),
    ("feedback-bad-row", "POST", "/feedback", JSON, b'{"labels": [{"request_id": "a", "row": -1, "label": 1}]}', 422, "labels[0].row"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "field"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_requests_get_4xx_naming_the_field(
    server: Server,
    row: dict[str, Any],
    request: pytest.FixtureRequest,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
    status: int,
    field: str | None,
) -> None:
    case = request.node.callspec.id
    if body is None and method == "POST":
        changed = dict(row)
        if case == "wrong-type":
            changed["distance"] = "far"
        elif case == "unknown-feature":
            changed["bogus"] = 1
        elif case == "infinite":
            changed["distance"] = "INF"
        body = json.dumps(changed).encode().replace(b'"INF"', b"1e999")  # a float overflow
    with server.client() as client:
        response = client.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert error["message"]


def test_infinite_csv_value_is_refused(server: Server, row: dict[str, Any]) -> None:
    names = list(row)
    values = ["inf" if n == "distance" else str(row[n]) for n in names]
    body = (",".join(names) + "\n" + ",".join(values) + "\n").encode()
    with server.client() as client:
        response = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "distance"


def test_body_without_content_length_is_limited_too(server: Server) -> None:
    def chunks() -> Any:
        for _ in range(10):
            yield b" " * (1024 * 1024)

    with server.client() as client:
        response = client.post("/predict", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert response.json()["error"]["field"] == "body"


@pytest.mark.parametrize("args", [(), ("--log-fsync",)], ids=["written-to-os", "fsynced"])
def test_acknowledged_predictions_survive_sigkill(
    trained: Path, row: dict[str, Any], args: tuple[str, ...]
) -> None:
    srv = start_server(trained, *args)
    fsync = bool(args)
    assert ("log fsync" in srv.banner) is fsync, srv.banner
    with srv.client() as client:
        assert f"\nkyklos_prediction_log_fsync {float(fsync)}" in client.get("/metrics").text
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def fire() -> None:
        with srv.client(timeout=5) as client:
            while not stop.is_set():
                try:
                    response = client.post("/predict", json={"rows": [row] * 3})
                except httpx.TransportError:
                    return  # the server died under us: that request was never acknowledged
                if response.status_code == 200:
                    with lock:
                        acknowledged.append(response.json()["request_id"])

    threads = [threading.Thread(target=fire) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # some load first, then kill the server amid it
            with lock:
                if len(acknowledged) >= 300:
                    break
            time.sleep(0.01)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
    finally:
        stop.set()
        for t in threads:
            t.join()
        srv.stop()
    with lock:
        ids = list(acknowledged)
    assert len(ids) >= 300
    logged = _logged(trained, ids)
    assert set(ids) <= logged, f"{len(set(ids) - logged)} acknowledged predictions were lost"


def test_non_loopback_without_token_refuses_to_start(trained: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KYKLOS_TOKEN"}
    done = subprocess.run(
        [KYKLOS, "serve", "--host", "0.0.0.0", "--port", "0"],
        cwd=trained,
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to serve on 0.0.0.0 without a token" in lines[0]


def test_token_guards_feedback_and_admin(
    trained: Path, row: dict[str, Any], tmp_path: Path
) -> None:
    secret = "s3cret-token-" + "x" * 20
    token_file = tmp_path / "token"
    token_file.write_text(secret + "\n")
    srv = start_server(trained, "--host", "0.0.0.0", "--token-file", str(token_file))
    try:
        with srv.client() as client:
            rid = client.post("/predict", json=row).json()["request_id"]  # open to all
            body = {"labels": [{"request_id": rid, "label": 1}]}
            bare = client.post("/feedback", json=body)
            wrong = client.post("/feedback", json=body, headers={"Authorization": "Bearer nope"})
            good = client.post(
                "/feedback", json=body, headers={"Authorization": f"Bearer {secret}"}
            )
            admin = client.post("/admin/reload")
            admin_ok = client.post("/admin/reload", headers={"Authorization": f"Bearer {secret}"})
    finally:
        err = srv.stop()
    assert bare.status_code == 401 and bare.json()["error"]["field"] == "Authorization"
    assert bare.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert good.status_code == 200, good.text
    assert admin.status_code == 401
    assert admin_ok.status_code == 200 and admin_ok.json()["version"] == 1
    assert "token required" in srv.banner
    assert secret not in srv.banner + err
