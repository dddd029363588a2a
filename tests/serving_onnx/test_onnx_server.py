"""A real ``kyklos serve`` (uvicorn on 127.0.0.1) answering with onnxruntime, and the
``--runtime`` switch."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kyklos.config import Project
from kyklos.serving.batch import frame_columns
from kyklos.serving.model import load_version
from serving_server.conftest import KYKLOS, start_server

from .conftest import export_path


def test_server_predicts_with_onnxruntime(
    onnx_project: Path, project: Project, feature_frame: Any
) -> None:
    reference = load_version(project, "champion", runtime="sklearn")
    rows = feature_frame.iloc[:50]
    payload = [
        {
            f.name: (None if value != value else value)  # NaN → null
            for f in reference.features
            for value in [row[f.name]]
        }
        for _, row in rows.iterrows()
    ]
    expected_labels, expected_scores = reference.predict(frame_columns(rows, reference.features))
    server = start_server(onnx_project, env={"OMP_NUM_THREADS": "1"})
    try:
        assert "runtime: onnx" in server.banner
        with server.client() as client:
            info = client.get("/model").json()["model"]
            one = client.post("/predict", json=payload[0])
            many = client.post("/predict", json={"rows": payload})
    finally:
        server.stop()
    assert info["runtime"] == "onnx" and info["runtime_reason"] is None
    assert info["parity"]["rows"] == 2000 and info["parity"]["passed"] is True
    assert one.status_code == 200, one.text
    assert many.status_code == 200, many.text
    body = many.json()
    assert body["version"] == 1
    assert body["predictions"] == [int(v) for v in expected_labels]
    assert body["scores"] == pytest.approx(list(expected_scores), abs=1e-5)
    assert one.json()["predictions"] == body["predictions"][:1]


def test_server_runtime_sklearn_turns_onnx_off(onnx_project: Path) -> None:
    server = start_server(onnx_project, "--runtime", "sklearn")
    try:
        with server.client() as client:
            info = client.get("/model").json()["model"]
    finally:
        server.stop()
    assert "runtime: sklearn" in server.banner
    assert (info["runtime"], info["runtime_reason"], info["parity"]) == ("sklearn", None, None)


def test_server_with_a_tampered_export_serves_sklearn_and_says_why(
    onnx_project: Path, project: Project
) -> None:
    path = export_path(project, 1, "model")
    original = path.read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0x01
    path.write_bytes(bytes(tampered))
    try:
        server = start_server(onnx_project, wait=False)
    finally:
        path.write_bytes(original)
    try:
        assert server.proc.stderr is not None
        said = server.proc.stderr.readline()
        assert "runtime: sklearn" in server.banner
        assert said.startswith("kyklos serve: ONNX export of ")
        assert "model.onnx changed since the export" in said
        assert said.rstrip().endswith("; serving with scikit-learn")
        with server.client() as client:
            deadline = time.monotonic() + 60
            while client.get("/ready").status_code != 200:
                assert time.monotonic() < deadline, "kyklos serve never became ready"
                time.sleep(0.05)
            info = client.get("/model").json()["model"]
    finally:
        server.stop()
    assert info["runtime"] == "sklearn" and info["parity"] is None
    assert "model.onnx changed since the export" in info["runtime_reason"]


def serve_once(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KYKLOS_TOKEN"}
    return subprocess.run(
        [KYKLOS, "serve", "--port", "0", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_runtime_onnx_fails_clearly_without_an_export(onnx_project: Path, project: Project) -> None:
    record = export_path(project, 1, "record")
    hidden = record.with_name("parity.json.hidden")
    record.rename(hidden)
    try:
        result = serve_once(onnx_project, "--runtime", "onnx")
    finally:
        hidden.rename(record)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "serve.runtime is onnx, but ONNX export of" in lines[0]
    assert "there is none" in lines[0] and "kyklos models export v1 --format onnx" in lines[0]


def test_unknown_runtime_is_refused(onnx_project: Path) -> None:
    result = serve_once(onnx_project, "--runtime", "tensorrt")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: --runtime 'tensorrt': choose from auto, sklearn, onnx"
