"""Exporting a registered version to ONNX: the graph, the parity check, the stored files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kyklos.config import Project
from kyklos.errors import ServingError
from kyklos.registry import ModelRegistry
from kyklos.serving.model import load_version
from kyklos.serving.onnx_export import export_onnx
from kyklos.serving.onnx_runtime import Tolerance

from .conftest import export_path

KYKLOS = str(Path(sys.executable).with_name("kyklos"))


def run_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [KYKLOS, *args], cwd=root, capture_output=True, text=True, env=env, timeout=240
    )


def test_export_stores_graph_sample_and_record(project: Project) -> None:
    import onnxruntime
    import skl2onnx

    version = ModelRegistry.for_project(project).get("v1")
    record = json.loads(export_path(project, 1, "record").read_text())
    graph = export_path(project, 1, "model").read_bytes()
    sample = export_path(project, 1, "sample").read_bytes()
    assert record["format"] == "kyklos.onnx-export/1"
    assert (record["model_name"], record["version"]) == (project.registered_model, 1)
    assert record["model_hash"] == version.model_hash
    assert record["dataset_version_id"] == version.dataset_version_id
    assert record["onnx_sha256"] == hashlib.sha256(graph).hexdigest()
    assert record["sample_sha256"] == hashlib.sha256(sample).hexdigest()
    assert record["sample_rows"] == 2000
    assert record["versions"]["skl2onnx"] == skl2onnx.__version__
    assert record["versions"]["onnxruntime"] == onnxruntime.__version__
    assert record["tolerance"] == Tolerance().to_dict()
    parity = record["parity"]
    assert parity["rows"] == 2000 and parity["passed"] is True
    # the preprocessing runs in float64 like scikit-learn: only the trees' float32 remains
    assert parity["agreement"] == 1.0
    assert 0.0 <= parity["mean_diff"] <= parity["max_diff"] < 1e-5
    inputs = {i["name"]: i for i in record["inputs"]}
    assert list(inputs) == version.signature["features"]
    assert inputs["distance"]["type"] == "double" and inputs["carrier"]["type"] == "string"
    folder = export_path(project, 1, "model").parent
    assert sorted(p.name for p in folder.iterdir()) == [
        "model.onnx",
        "parity.json",
        "sample.parquet",
    ]


def test_graph_alone_matches_the_pipeline_on_missing_and_unknown_categories(
    project: Project, feature_frame: Any
) -> None:
    """The stored model.onnx, run by onnxruntime without kyklos, answers like the sklearn
    Pipeline: also for a missing category ("") and categories never seen in training."""
    import onnxruntime as ort

    sklearn_model = load_version(project, 1, runtime="sklearn")
    pipeline = sklearn_model._model
    rows = feature_frame.iloc[:500].copy()
    rows.loc[rows.index[0], "dest"] = "NOWHERE"  # unseen: infrequent bucket in scikit-learn
    rows.loc[rows.index[1], "carrier"] = "ZZ"  # unseen, no infrequent bucket: all zeros
    rows.loc[rows.index[2], "carrier"] = None  # missing: imputed as "__missing__"
    rows.loc[rows.index[3], "origin"] = None
    expected = pipeline.predict_proba(rows[list(pipeline.feature_names_in_)])
    session = ort.InferenceSession(
        str(export_path(project, 1, "model")), providers=["CPUExecutionProvider"]
    )
    feeds: dict[str, np.ndarray] = {}
    for f in sklearn_model.features:
        column = rows[f.name]
        if f.kind == "numeric":
            feeds[f.name] = column.to_numpy(dtype=np.float64, na_value=np.nan).reshape(-1, 1)
        else:
            feeds[f.name] = column.fillna("").to_numpy(dtype=object).reshape(-1, 1)
    label, proba = session.run(["label", "probabilities"], feeds)
    np.testing.assert_allclose(proba, expected, atol=1e-5)
    np.testing.assert_array_equal(label, expected.argmax(axis=1))


def test_parity_failure_refuses_and_writes_nothing(project: Project) -> None:
    folder = export_path(project, 2, "model").parent
    impossible = Tolerance(max_diff=0.0, max_mean_diff=0.0)
    with pytest.raises(ServingError) as info:
        export_onnx(project, "v2", sample_rows=300, tolerance=impossible)
    message = str(info.value)
    assert info.value.status == 409
    assert f"ONNX export of {project.registered_model} v2 refused" in message
    assert "on 300 rows of its training data" in message
    assert "max score diff" in message and "> 0" in message
    assert "Nothing was written" in message
    assert not folder.exists()


def test_export_refuses_a_tampered_model_artifact(project: Project) -> None:
    registry = ModelRegistry.for_project(project)
    version = registry.get("v2")
    with registry.tracker.model_files(version.model_uri) as folder:
        pickled = Path(folder) / "model.pkl"
    original = pickled.read_bytes()
    changed = bytearray(original)
    changed[len(changed) // 2] ^= 0x01
    pickled.write_bytes(bytes(changed))
    try:
        with pytest.raises(ServingError, match="model artifact of v2 changed since registration"):
            export_onnx(project, "v2")
    finally:
        pickled.write_bytes(original)
    assert not export_path(project, 2, "model").parent.exists()


def test_cli_export_prints_parity(onnx_project: Path, project: Project) -> None:
    before = export_path(project, 1, "record").read_text()
    result = run_cli(onnx_project, "models", "export", "v1", "--format", "onnx", "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert (body["version"], body["format"]) == (1, "onnx")
    assert body["parity"]["rows"] == 2000 and body["parity"]["agreement"] == 1.0
    assert body["onnx_uri"] == str(export_path(project, 1, "model"))
    # the same model and sample give the same graph: the re-export is identical
    after = json.loads(export_path(project, 1, "record").read_text())
    assert after["onnx_sha256"] == json.loads(before)["onnx_sha256"]
    assert after["parity"] == json.loads(before)["parity"]

    human = run_cli(onnx_project, "models", "export", "champion", "--sample-rows", "500")
    assert human.returncode == 0, human.stderr
    assert f"exported {project.registered_model} v1 to ONNX" in human.stdout
    assert "labels agree on 100.00% of 500 rows" in human.stdout
    run_cli(onnx_project, "models", "export", "v1")  # back to the 2,000-row sample


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("models", "export", "v1", "--format", "pmml"), "unknown export format 'pmml'"),
        (("models", "export", "v9"), "has no version 9"),
    ],
    ids=["unknown-format", "unknown-version"],
)
def test_cli_export_errors_are_one_line(
    onnx_project: Path, args: tuple[str, ...], expected: str
) -> None:
    result = run_cli(onnx_project, *args)
    assert result.returncode == 1
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_cli_export_without_the_onnx_extra(onnx_project: Path) -> None:
    """The extra is installed here, so the child process hides skl2onnx (a None entry in
    sys.modules makes its import fail exactly as when it is not installed)."""
    code = (
        "import sys; sys.modules['skl2onnx'] = None; "
        "sys.argv = ['kyklos', 'models', 'export', 'v1', '--format', 'onnx']; "
        "from kyklos.cli.app import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=onnx_project,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "'skl2onnx'" in lines[0] and "pip install 'kyklos[onnx]'" in lines[0]
