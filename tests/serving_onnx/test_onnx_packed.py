"""The packed inputs of OnnxSession: every numeric feature in one ``kyklos/numeric`` ``[N, k]``
tensor and every categorical one in one ``kyklos/categorical`` ``[N, m]`` tensor, made from the
stored per-feature graph in memory (packed_graph). The answers must be exactly those of the
stored graph run feature by feature."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from kyklos.config import Project
from kyklos.serving.batch import frame_columns
from kyklos.serving.model import FeatureSpec, load_version
from kyklos.serving.onnx_runtime import (
    PACKED_CATEGORICAL,
    PACKED_NUMERIC,
    OnnxSession,
    columns_from_table,
    packed_graph,
)
from kyklos.serving.validation import validate_records

from .conftest import export_path


def _per_feature(model: bytes, features: Sequence[FeatureSpec], output: str) -> Any:
    """A function running ``model`` with onnxruntime directly, one ``[N, 1]`` input per feature
    (None as "" in string inputs), one intra-op thread like the session."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def run(columns: Mapping[str, np.ndarray]) -> np.ndarray:
        feeds = {}
        for f in features:
            values = np.asarray(columns[f.name])
            if f.kind == "numeric":
                feeds[f.name] = values.astype(np.float64).reshape(-1, 1)
            else:
                filled = [("" if v is None else v) for v in values.tolist()]
                feeds[f.name] = np.asarray(filled, dtype=object).reshape(-1, 1)
        return np.asarray(session.run([output], feeds)[0], dtype=np.float64)

    return run


def _graph(nodes: list[Any], inputs: list[Any], outputs: list[Any], ml: bool = False) -> bytes:
    import onnx
    from onnx import helper

    opsets = [helper.make_opsetid("", 17)]
    if ml:
        opsets.append(helper.make_opsetid("ai.onnx.ml", 2))
    model = helper.make_model(
        helper.make_graph(nodes, "tiny", inputs, outputs), opset_imports=opsets
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _labels(source: str, target: str) -> Any:
    """``target`` = 0.25 for "AA", 0.75 for "UA", -1 for anything else (the empty string too)."""
    from onnx import helper

    return helper.make_node(
        "LabelEncoder",
        [source],
        [target],
        domain="ai.onnx.ml",
        keys_strings=["AA", "UA"],
        values_floats=[0.25, 0.75],
        default_float=-1.0,
    )


def _value(name: str, kind: int, width: int = 1) -> Any:
    from onnx import helper

    return helper.make_tensor_value_info(name, kind, ["N", width])


@pytest.fixture(scope="module")
def stored(onnx_project: Any) -> tuple[bytes, Any]:
    """The stored graph of v1's export, and v1 loaded with scikit-learn (its features)."""
    from kyklos.config import load_project

    project = load_project(onnx_project)
    model = load_version(project, 1, runtime="sklearn")
    return export_path(project, 1, "model").read_bytes(), model


@pytest.fixture(scope="module")
def odd_columns(stored: tuple[bytes, Any], feature_frame: Any) -> dict[str, np.ndarray]:
    """500 real rows with None categoricals, NaN numerics and unseen categories mixed in."""
    _, model = stored
    rows = feature_frame.iloc[:500].copy()
    numeric = [f.name for f in model.features if f.kind == "numeric"]
    categorical = [f.name for f in model.features if f.kind != "numeric"]
    for i in range(0, 500, 5):
        rows.loc[rows.index[i], categorical[i % len(categorical)]] = None
    for i in range(1, 500, 7):
        rows.loc[rows.index[i], numeric[i % len(numeric)]] = np.nan
    for i in range(2, 500, 11):
        rows.loc[rows.index[i], categorical[i % len(categorical)]] = "NEVER-SEEN"
    rows.loc[rows.index[3], categorical] = None  # every categorical missing at once
    rows.loc[rows.index[4], numeric] = np.nan  # every numeric missing at once
    return frame_columns(rows, model.features)


def test_the_flights_session_is_packed_and_answers_like_the_stored_graph(
    stored: tuple[bytes, Any], odd_columns: dict[str, np.ndarray]
) -> None:
    graph, model = stored
    session = OnnxSession(graph, model.features, task=model.task, where="flights v1")
    assert session.packed
    reference = _per_feature(graph, model.features, "probabilities")
    assert any(np.isnan(v).any() for v in odd_columns.values() if v.dtype == np.float64)
    assert any(None in v.tolist() for v in odd_columns.values() if v.dtype == object)
    got = session.run(odd_columns)
    assert got.shape == (500, 2)
    np.testing.assert_array_equal(got, reference(odd_columns))
    for i in (0, 3, 4, 5, 8, 499):  # one row at a time: the [1, k] matrices
        one = {k: v[i : i + 1] for k, v in odd_columns.items()}
        np.testing.assert_array_equal(session.run(one), reference(one))


def test_validated_records_answer_like_the_stored_graph(
    stored: tuple[bytes, Any], feature_frame: Any
) -> None:
    """What the server passes: columns validated from JSON records, clean ones (the validation's
    fast path) and ones with nulls (the general path)."""
    graph, model = stored
    session = OnnxSession(graph, model.features, task=model.task, where="flights v1")
    reference = _per_feature(graph, model.features, "probabilities")
    names = [f.name for f in model.features]
    frame = feature_frame[names].iloc[:300].astype(object)
    records = [{k: (None if v != v else v) for k, v in r.items()} for r in frame.to_dict("records")]
    clean = [r for r in records if None not in r.values()][:100]
    assert len(clean) > 20
    nullable = [f.name for f in model.features if f.nullable]
    holes = [{**r, nullable[i % len(nullable)]: None} for i, r in enumerate(records[:50])]
    for batch in (clean, clean[:1], holes, holes[:1]):
        columns, n = validate_records(model.features, batch)
        got = session.run(columns)
        assert got.shape == (n, 2)
        np.testing.assert_array_equal(got, reference(columns))


def test_the_stored_sample_answers_alike_and_the_stored_graph_is_unchanged(
    onnx_project: Any, project: Project
) -> None:
    import pyarrow.parquet as pq

    model = load_version(project, 1)
    assert model.runtime == "onnx"
    path = export_path(project, 1, "model")
    record = json.loads(export_path(project, 1, "record").read_text())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["onnx_sha256"]
    sample = columns_from_table(pq.read_table(export_path(project, 1, "sample")), model.features)
    graph = path.read_bytes()
    session = OnnxSession(graph, model.features, task=model.task, where="flights v1")
    expected = _per_feature(graph, model.features, "probabilities")(sample)
    np.testing.assert_array_equal(session.run(sample), expected)
    assert model._session is not None and model._session.packed  # load_version's session
    _, score = model.predict(sample)
    assert score is not None
    np.testing.assert_array_equal(score, expected[:, 1])


def test_the_packed_graph_takes_two_inputs_in_the_given_order(stored: tuple[bytes, Any]) -> None:
    import onnxruntime as ort

    graph, model = stored
    numeric = [f.name for f in model.features if f.kind == "numeric"]
    categorical = [f.name for f in model.features if f.kind != "numeric"]
    # the features in reverse order: the columns of each matrix follow the order given
    packed = packed_graph(graph, numeric[::-1], categorical[::-1])
    assert packed is not None
    session = ort.InferenceSession(packed, providers=["CPUExecutionProvider"])
    inputs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    assert inputs == {
        PACKED_NUMERIC: ("tensor(double)", ["N", len(numeric)]),
        PACKED_CATEGORICAL: ("tensor(string)", ["N", len(categorical)]),
    }
    rng = np.random.default_rng(0)
    n = 40
    numbers = rng.normal(100, 50, size=(n, len(numeric)))
    numbers[::3, 0] = np.nan
    known = next(f.categories for f in model.features if f.categories)
    labels = rng.choice([*known[:3], "", "NEVER-SEEN"], size=(n, len(categorical))).astype(object)
    columns = {name: numbers[:, j] for j, name in enumerate(numeric)}
    columns |= {name: labels[:, j] for j, name in enumerate(categorical)}
    feeds = {
        PACKED_NUMERIC: np.ascontiguousarray(numbers[:, ::-1]),
        PACKED_CATEGORICAL: np.ascontiguousarray(labels[:, ::-1]),
    }
    (got,) = session.run(["probabilities"], feeds)
    expected = _per_feature(graph, model.features, "probabilities")(columns)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "data",
    [b"not an onnx model", bytes(range(256)), b"\xff" * 64],
    ids=["text", "byte-ramp", "ff"],
)
def test_packed_graph_of_bytes_that_are_not_onnx_is_none(data: bytes) -> None:
    assert packed_graph(data, ["a"], ["b"]) is None


def test_packed_graph_of_empty_bytes_is_none() -> None:
    assert packed_graph(b"", ["a"], ["b"]) is None


NUMERIC = (FeatureSpec("a", "numeric", True), FeatureSpec("b", "numeric", True))
CATEGORICAL = (FeatureSpec("c", "categorical", True), FeatureSpec("d", "categorical", True))


def test_a_graph_of_numeric_features_only() -> None:
    from onnx import TensorProto, helper

    graph = _graph(
        [
            helper.make_node("Concat", ["a", "b"], ["joined"], axis=1),
            helper.make_node("Softmax", ["joined"], ["probabilities"], axis=1),
        ],
        [_value("a", TensorProto.DOUBLE), _value("b", TensorProto.DOUBLE)],
        [_value("probabilities", TensorProto.DOUBLE, 2)],
    )
    session = OnnxSession(graph, NUMERIC, task="classification", where="tiny v1")
    assert session.packed
    columns = {"a": np.array([0.0, 1.0, np.nan, 2.0]), "b": np.array([0.0, -1.0, 1.0, 2.0])}
    got = session.run(columns)
    np.testing.assert_array_equal(got, _per_feature(graph, NUMERIC, "probabilities")(columns))
    np.testing.assert_allclose(got[0], [0.5, 0.5])
    assert np.isnan(got[2]).all()  # NaN went in where it was given


def test_one_numeric_feature_used_on_its_own() -> None:
    """A single numeric input (a one-way split), consumed by an op of its own (no Concat)."""
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.DOUBLE, [], [1.0])
    graph = _graph(
        [
            helper.make_node("Sigmoid", ["a"], ["p"]),
            helper.make_node("Constant", [], ["one"], value=one),
            helper.make_node("Sub", ["one", "p"], ["q"]),
            helper.make_node("Concat", ["q", "p"], ["probabilities"], axis=1),
        ],
        [_value("a", TensorProto.DOUBLE)],
        [_value("probabilities", TensorProto.DOUBLE, 2)],
    )
    features = NUMERIC[:1]
    session = OnnxSession(graph, features, task="classification", where="tiny v1")
    assert session.packed
    columns = {"a": np.array([-3.0, 0.0, 3.0])}
    got = session.run(columns)
    np.testing.assert_array_equal(got, _per_feature(graph, features, "probabilities")(columns))
    np.testing.assert_allclose(got[:, 1], 1 / (1 + np.exp(-columns["a"])))


def test_a_graph_of_categorical_features_only() -> None:
    from onnx import TensorProto, helper

    graph = _graph(
        [
            _labels("c", "c_value"),
            _labels("d", "d_value"),
            helper.make_node("Concat", ["c_value", "d_value"], ["joined"], axis=1),
            helper.make_node("Cast", ["joined"], ["probabilities"], to=TensorProto.DOUBLE),
        ],
        [_value("c", TensorProto.STRING), _value("d", TensorProto.STRING)],
        [_value("probabilities", TensorProto.DOUBLE, 2)],
        ml=True,
    )
    session = OnnxSession(graph, CATEGORICAL, task="classification", where="tiny v1")
    assert session.packed
    columns = {
        "c": np.array(["AA", None, "ZZ", "UA"], dtype=object),
        "d": np.array(["UA", "AA", None, None], dtype=object),
    }
    got = session.run(columns)
    np.testing.assert_array_equal(
        got, [[0.25, 0.75], [-1.0, 0.25], [-1.0, -1.0], [0.75, -1.0]]
    )  # None reached the graph as "" (not a known category)
    np.testing.assert_array_equal(got, _per_feature(graph, CATEGORICAL, "probabilities")(columns))


def test_a_regressor_graph_with_both_kinds() -> None:
    """task regression: the ``prediction`` output, flattened to ``[N]``."""
    from onnx import TensorProto, helper

    graph = _graph(
        [
            _labels("c", "c_value"),
            helper.make_node("Cast", ["c_value"], ["c_double"], to=TensorProto.DOUBLE),
            helper.make_node("Add", ["a", "c_double"], ["prediction"]),
        ],
        [_value("c", TensorProto.STRING), _value("a", TensorProto.DOUBLE)],
        [_value("prediction", TensorProto.DOUBLE)],
        ml=True,
    )
    features = (NUMERIC[0], CATEGORICAL[0])
    session = OnnxSession(graph, features, task="regression", where="tiny v1")
    assert session.packed
    columns = {"a": np.array([1.0, 2.0, 3.0]), "c": np.array(["AA", "UA", None], dtype=object)}
    np.testing.assert_array_equal(session.run(columns), [1.25, 2.75, 2.0])


def test_a_packed_graph_that_does_not_load_leaves_the_per_feature_inputs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A feature named like the packed input clashes with it: the session warns and serves
    through the stored graph's own inputs, with the same answers."""
    from onnx import TensorProto, helper

    graph = _graph(
        [
            _labels(PACKED_CATEGORICAL, "c_value"),
            _labels("d", "d_value"),
            helper.make_node("Concat", ["c_value", "d_value"], ["joined"], axis=1),
            helper.make_node("Cast", ["joined"], ["probabilities"], to=TensorProto.DOUBLE),
        ],
        [_value(PACKED_CATEGORICAL, TensorProto.STRING), _value("d", TensorProto.STRING)],
        [_value("probabilities", TensorProto.DOUBLE, 2)],
        ml=True,
    )
    features = (FeatureSpec(PACKED_CATEGORICAL, "categorical", True), CATEGORICAL[1])
    with caplog.at_level(logging.WARNING, logger="kyklos.serving"):
        session = OnnxSession(graph, features, task="classification", where="clash v1")
    assert not session.packed
    assert "clash v1: the packed ONNX graph does not load" in caplog.text
    columns = {
        PACKED_CATEGORICAL: np.array(["AA", None], dtype=object),
        "d": np.array([None, "UA"], dtype=object),
    }
    np.testing.assert_array_equal(session.run(columns), [[0.25, -1.0], [-1.0, 0.75]])


def test_a_graph_whose_output_is_the_concat_of_its_numeric_inputs() -> None:
    from onnx import TensorProto, helper

    graph = _graph(
        [helper.make_node("Concat", ["a", "b"], ["probabilities"], axis=1)],
        [_value("a", TensorProto.DOUBLE), _value("b", TensorProto.DOUBLE)],
        [_value("probabilities", TensorProto.DOUBLE, 2)],
    )
    session = OnnxSession(graph, NUMERIC, task="classification", where="tiny v1")
    columns = {"a": np.array([0.25, np.nan]), "b": np.array([0.75, 1.0])}
    np.testing.assert_array_equal(session.run(columns), [[0.25, 0.75], [np.nan, 1.0]])
    assert session.packed
