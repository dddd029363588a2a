"""load_version with an ONNX export: onnxruntime when every check passes, scikit-learn (with the
reason) otherwise, an error when ``runtime="onnx"`` cannot be honoured."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kyklos.config import Project, load_project
from kyklos.errors import ServingError, ValidationFailed
from kyklos.serving.batch import frame_columns
from kyklos.serving.model import load_version

from .conftest import export_path


@contextmanager
def changed(path: Path, data: bytes) -> Iterator[None]:
    """``path`` holds ``data`` inside the block and its original bytes afterwards."""
    original = path.read_bytes()
    path.write_bytes(data)
    try:
        yield
    finally:
        path.write_bytes(original)


def test_load_prefers_onnx_and_agrees_with_sklearn(project: Project, feature_frame: Any) -> None:
    fast = load_version(project, "champion")
    slow = load_version(project, "champion", runtime="sklearn")
    assert (fast.runtime, fast.runtime_reason) == ("onnx", None)
    assert (slow.runtime, slow.runtime_reason, slow.parity) == ("sklearn", None, None)
    assert fast.parity is not None and fast.parity["rows"] == 2000
    assert fast.parity["agreement"] == 1.0 and fast.parity["passed"] is True
    described = fast.to_dict()
    assert (described["runtime"], described["parity"]) == ("onnx", fast.parity)

    rows = feature_frame.iloc[:1000].copy()
    rows.loc[rows.index[0], "dest"] = "NOWHERE"
    rows.loc[rows.index[1], "carrier"] = None
    columns = frame_columns(rows, fast.features)
    for n in (1, 1000):
        subset = {k: v[:n] for k, v in columns.items()}
        label, score = fast.predict(subset)
        expected_label, expected_score = slow.predict(subset)
        assert label.dtype == np.float64 and score is not None and score.dtype == np.float64
        np.testing.assert_array_equal(label, expected_label)
        assert expected_score is not None
        np.testing.assert_allclose(score, expected_score, atol=1e-5)


def test_predict_names_a_missing_feature_on_onnx(project: Project, feature_frame: Any) -> None:
    model = load_version(project, "champion")
    assert model.runtime == "onnx"
    columns = frame_columns(feature_frame.iloc[:2], model.features)
    del columns["carrier"]
    with pytest.raises(ServingError, match="'carrier' is missing") as info:
        model.predict(columns)
    assert (info.value.status, info.value.field) == (422, "carrier")


def test_no_export_falls_back_to_sklearn(project: Project) -> None:
    model = load_version(project, "v2")
    assert model.runtime == "sklearn" and model.parity is None
    assert model.runtime_reason is not None
    assert "ONNX export of" in model.runtime_reason and "there is none" in model.runtime_reason
    assert "kyklos models export v2 --format onnx" in model.runtime_reason
    with pytest.raises(ServingError, match=r"serve\.runtime is onnx") as info:
        load_version(project, "v2", runtime="onnx")
    assert info.value.status == 409


def test_tampered_onnx_file_is_not_used(project: Project) -> None:
    path = export_path(project, 1, "model")
    tampered = bytearray(path.read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    with changed(path, bytes(tampered)):
        model = load_version(project, 1)
        assert model.runtime == "sklearn"
        assert model.runtime_reason is not None
        assert "model.onnx changed since the export" in model.runtime_reason
        with pytest.raises(ServingError, match=r"model\.onnx changed since the export"):
            load_version(project, 1, runtime="onnx")
    assert load_version(project, 1).runtime == "onnx"  # restored: used again


def test_record_of_another_model_hash_is_not_used(project: Project) -> None:
    path = export_path(project, 1, "record")
    record = json.loads(path.read_text())
    record["model_hash"] = "0" * 64
    with changed(path, json.dumps(record).encode()):
        model = load_version(project, 1)
    assert model.runtime == "sklearn"
    assert model.runtime_reason is not None
    assert f"made from model hash {'0' * 64}" in model.runtime_reason


def test_parity_is_checked_again_at_load(project: Project) -> None:
    """A graph of another model, with a record whose sha256 matches it, still is refused: at
    load it disagrees with the (hash-checked) scikit-learn model on the stored sample."""
    import hashlib

    from kyklos.serving.onnx_graph import build_onnx

    other = load_version(project, 2, runtime="sklearn")
    graph = build_onnx(other._model, other.features, task=other.task, where="v2").model
    record_path, model_path = export_path(project, 1, "record"), export_path(project, 1, "model")
    record = json.loads(record_path.read_text())
    record["onnx_sha256"] = hashlib.sha256(graph).hexdigest()
    with changed(model_path, graph), changed(record_path, json.dumps(record).encode()):
        model = load_version(project, 1)
        assert model.runtime == "sklearn"
        assert model.runtime_reason is not None
        assert "disagrees with scikit-learn on its sample" in model.runtime_reason
        assert "max score diff" in model.runtime_reason
        with pytest.raises(ServingError, match="disagrees with scikit-learn"):
            load_version(project, 1, runtime="onnx")


def test_without_onnxruntime_sklearn_serves(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    model = load_version(project, 1)
    assert model.runtime == "sklearn"
    assert model.runtime_reason is not None
    assert "pip install 'kyklos[onnx]'" in model.runtime_reason


def test_serve_runtime_setting(onnx_project: Path) -> None:
    off = load_project(onnx_project, env={"KYKLOS_SERVE__RUNTIME": "sklearn"})
    assert off.config.serve.runtime == "sklearn"
    model = load_version(off, 1)
    assert (model.runtime, model.runtime_reason) == ("sklearn", None)
    assert load_version(load_project(onnx_project, env={}), 1).runtime == "onnx"
    with pytest.raises(ValidationFailed, match=r"serve\.runtime"):
        load_project(onnx_project, env={"KYKLOS_SERVE__RUNTIME": "tensorrt"})
