"""The raw-ASGI fast path of POST /predict and /invocations, against a real uvicorn server:
what only the fast path handles (chunked bodies, methods, media-type parameters, metrics)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from kyklos.data.predlog import PredictionLog

from .conftest import Server

JSON = {"content-type": "application/json"}


def _chunks(body: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_chunked_bodies_are_read_whole(server: Server, row: dict[str, Any]) -> None:
    body = json.dumps({"rows": [row] * 40}).encode()
    with server.client() as client:
        whole = client.post("/predict", content=body, headers=JSON)
        chunked = client.post(
            "/predict", content=_chunks(body, 97), headers={**JSON, "x-request-id": "chunky-1"}
        )
        mlflow = client.post(
            "/invocations",
            content=_chunks(json.dumps({"dataframe_records": [row] * 3}).encode(), 13),
            headers=JSON,
        )
    assert "content-length" not in chunked.request.headers
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    assert chunked.status_code == 200, chunked.text
    assert chunked.json()["predictions"] == whole.json()["predictions"]
    assert chunked.json()["request_id"] == chunked.headers["x-request-id"] == "chunky-1"
    assert mlflow.status_code == 200 and len(mlflow.json()["predictions"]) == 3
    logged = PredictionLog(server.root / ".kyklos" / "logs").lookup(
        ["chunky-1"], columns=("request_id", "row")
    )
    assert sorted(logged.column("row").to_pylist()) == list(range(40))


@pytest.mark.parametrize("path", ["/predict", "/invocations"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
def test_other_methods_on_the_hot_paths_get_405(server: Server, method: str, path: str) -> None:
    with server.client() as client:
        response = client.request(method, path)
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    if method != "HEAD":  # a HEAD answer has no body
        error = response.json()["error"]
        assert error["field"] == "method" and error["expected"] == "POST"


def test_media_type_parameters_and_case_are_accepted(server: Server, row: dict[str, Any]) -> None:
    body = json.dumps(row).encode()
    with server.client() as client:
        ok = client.post(
            "/predict", content=body, headers={"content-type": "Application/JSON; charset=utf-8"}
        )
        wrong = client.post(
            "/predict", content=body, headers={"content-type": "text/plain; charset=utf-8"}
        )
        missing = client.post("/predict", content=body, headers={"content-type": ""})
    assert ok.status_code == 200, ok.text
    assert wrong.status_code == 415 and wrong.json()["error"]["field"] == "Content-Type"
    assert missing.status_code == 200  # no content type: taken as JSON


def test_answers_and_errors_are_counted_in_metrics(server: Server, row: dict[str, Any]) -> None:
    def count(text: str, endpoint: str, status: int) -> float:
        prefix = f'kyklos_requests_total{{endpoint="{endpoint}",model="flights",status="{status}",version="1"}} '
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        return float(lines[0].removeprefix(prefix)) if lines else 0.0

    with server.client() as client:
        before = client.get("/metrics").text
        client.post("/predict", json=row)
        client.post("/predict", json={**row, "distance": "far"})
        client.post("/invocations", json={"instances": [row]})
        after = client.get("/metrics").text
    assert count(after, "predict", 200) == count(before, "predict", 200) + 1
    assert count(after, "predict", 422) == count(before, "predict", 422) + 1
    assert count(after, "invocations", 200) == count(before, "invocations", 200) + 1


def test_everything_else_still_reaches_fastapi(server: Server) -> None:
    with server.client() as client:
        docs = client.get("/docs")
        schema = client.get("/openapi.json").json()
        unknown = client.post("/predictions", json={})
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert {"/predict", "/invocations", "/feedback"} <= set(schema["paths"])
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "path"
