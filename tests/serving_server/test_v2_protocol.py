"""The Open Inference Protocol (KServe V2) REST API of ``kyklos serve``, against a real uvicorn
server on a trained project, with the real ``tritonclient.http`` client and raw httpx."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

import kyklos
from kyklos.data.predlog import PredictionLog
from kyklos.serving.v2 import InferHandler, infer_route

from .conftest import Server, start_server

MODEL = "flights"


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def features(server: Server) -> list[dict[str, Any]]:
    with server.client() as client:
        return list(client.get("/model").json()["model"]["features"])


@pytest.fixture(scope="module")
def rows(row: dict[str, Any], features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Four distinct valid rows: the fixture row with its numeric features scaled."""
    out = []
    for scale in (1.0, 300.0, 900.0, 2000.0):
        out.append(
            {
                f["name"]: row[f["name"]] * scale if f["kind"] == "numeric" else row[f["name"]]
                for f in features
            }
        )
    return out


@pytest.fixture
def triton_client(server: Server) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=20)
    yield client
    client.close()


def _tensors(rows: list[dict[str, Any]], features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One JSON input tensor per feature, as the protocol sends them."""
    return [
        {
            "name": f["name"],
            "datatype": "FP64" if f["kind"] == "numeric" else "BYTES",
            "shape": [len(rows)],
            "data": [r[f["name"]] for r in rows],
        }
        for f in features
    ]


def _triton_inputs(
    rows: list[dict[str, Any]], features: list[dict[str, Any]], *, binary: bool = False
) -> list[triton.InferInput]:
    inputs = []
    for f in features:
        if f["kind"] == "numeric":
            array = np.array([r[f["name"]] for r in rows], dtype=np.float64)
            tensor = triton.InferInput(f["name"], [len(rows)], "FP64")
        else:
            array = np.array([r[f["name"]] for r in rows], dtype=object)
            tensor = triton.InferInput(f["name"], [len(rows)], "BYTES")
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def _logged(root: Path, ids: list[str], columns: tuple[str, ...]) -> dict[str, list[Any]]:
    table = PredictionLog(root / ".kyklos" / "logs").lookup(ids, columns=columns)
    return {c: table.column(c).to_pylist() for c in columns}


# -- tritonclient -----------------------------------------------------------------------------


def test_tritonclient_health_and_server_metadata(
    triton_client: triton.InferenceServerClient,
) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready(MODEL)
    assert triton_client.is_model_ready(MODEL, "1")
    assert not triton_client.is_model_ready(MODEL, "2")  # registered, but not the one served
    assert not triton_client.is_model_ready("churn")
    assert triton_client.get_server_metadata() == {
        "name": "kyklos",
        "version": kyklos.__version__,
        "extensions": [],
    }


def test_tritonclient_model_metadata_is_the_features(
    triton_client: triton.InferenceServerClient, features: list[dict[str, Any]]
) -> None:
    metadata = triton_client.get_model_metadata(MODEL)
    assert metadata["name"] == MODEL and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [
        {
            "name": f["name"],
            "datatype": {"numeric": "FP64", "categorical": "BYTES"}[f["kind"]],
            "shape": [-1],
        }
        for f in features
    ]
    assert {f["kind"] for f in features} == {"numeric", "categorical"}  # both kinds covered
    # the flights classifier has labels 0/1 and probabilities
    assert metadata["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "probability", "datatype": "FP64", "shape": [-1]},
    ]
    assert triton_client.get_model_metadata(MODEL, "1") == metadata
    with pytest.raises(InferenceServerException) as unknown:
        triton_client.get_model_metadata(MODEL, "7")
    assert unknown.value.status() == "404"
    assert "version '7' of model 'flights' is not served here" in unknown.value.message()


def test_tritonclient_infer_answers_as_predict(
    server: Server,
    triton_client: triton.InferenceServerClient,
    rows: list[dict[str, Any]],
    features: list[dict[str, Any]],
) -> None:
    with server.client() as client:
        reference = client.post("/predict", json={"rows": rows}).json()
    assert len(set(reference["scores"])) > 1  # the rows differ, so the comparison means something
    requested = [
        triton.InferRequestedOutput("predict", binary_data=False),
        triton.InferRequestedOutput("probability", binary_data=False),
    ]
    result = triton_client.infer(
        MODEL, _triton_inputs(rows, features), outputs=requested, request_id="triton-json-1"
    )
    assert result.as_numpy("predict").tolist() == reference["predictions"]
    assert result.as_numpy("probability").tolist() == reference["scores"]
    response = result.get_response()
    assert response["model_name"] == MODEL and response["model_version"] == "1"
    assert response["id"] == "triton-json-1"
    assert [o["datatype"] for o in response["outputs"]] == ["INT64", "FP64"]
    # tritonclient asks for binary outputs when it names none: answered in JSON, which it reads
    default = triton_client.infer(MODEL, _triton_inputs(rows, features), model_version="1")
    assert default.as_numpy("predict").tolist() == reference["predictions"]
    assert default.as_numpy("probability").tolist() == reference["scores"]
    logged = _logged(server.root, ["triton-json-1"], ("request_id", "row", "endpoint", "arm"))
    assert logged["row"] == [0, 1, 2, 3]
    assert set(logged["endpoint"]) == {"v2"} and set(logged["arm"]) == {"champion"}


def test_tritonclient_requested_output_only(
    triton_client: triton.InferenceServerClient,
    rows: list[dict[str, Any]],
    features: list[dict[str, Any]],
) -> None:
    result = triton_client.infer(
        MODEL,
        _triton_inputs(rows[:2], features),
        outputs=[triton.InferRequestedOutput("probability", binary_data=False)],
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probability"]
    assert result.as_numpy("predict") is None
    assert result.as_numpy("probability").shape == (2,)


def test_tritonclient_binary_tensors_are_refused_with_a_message_it_shows(
    triton_client: triton.InferenceServerClient,
    rows: list[dict[str, Any]],
    features: list[dict[str, Any]],
) -> None:
    with pytest.raises(InferenceServerException) as refused:
        triton_client.infer(MODEL, _triton_inputs(rows, features, binary=True))
    assert refused.value.status() == "400"
    text = str(refused.value)
    assert text.startswith("[400] Triton's binary tensor extension")
    assert "binary_data=False" in text


def test_the_docs_example_runs(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "serving.md").read_text(encoding="utf-8")
    section = docs.split("## Open Inference Protocol", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert '"127.0.0.1:8000"' in example
    code = example.replace('"127.0.0.1:8000"', repr(server.url.removeprefix("http://")))
    exec(compile(code, "docs/serving.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.startswith("[") and printed.count("[") == 2, printed  # two arrays


# -- raw HTTP ---------------------------------------------------------------------------------


def test_infer_rows_reach_the_prediction_log_and_metrics(
    server: Server, rows: list[dict[str, Any]], features: list[dict[str, Any]]
) -> None:
    url = f"/v2/models/{MODEL}/infer"
    with server.client() as client:
        named = client.post(url, json={"id": "v2-log-1", "inputs": _tensors(rows[:2], features)})
        # an id the log cannot key on is echoed; the log uses X-Request-ID, else a new id
        odd = client.post(url, json={"id": "not a key!", "inputs": _tensors(rows[:1], features)})
        header = client.post(
            url, json={"inputs": _tensors(rows[:1], features)}, headers={"X-Request-ID": "hdr-7"}
        )
        metrics = client.get("/metrics").text
    assert named.status_code == 200, named.text
    assert named.json()["id"] == "v2-log-1" and named.headers["x-request-id"] == "v2-log-1"
    assert odd.json()["id"] == "not a key!"
    odd_id = odd.headers["x-request-id"]
    assert odd_id != "not a key!"
    assert header.json()["id"] == "hdr-7"
    first = features[0]["name"]
    logged = _logged(
        server.root,
        ["v2-log-1", odd_id, "hdr-7"],
        ("request_id", "row", "endpoint", "version", "f." + first),
    )
    assert sorted(zip(logged["request_id"], logged["row"], strict=True)) == sorted(
        [("v2-log-1", 0), ("v2-log-1", 1), (odd_id, 0), ("hdr-7", 0)]
    )
    assert set(logged["endpoint"]) == {"v2"} and set(logged["version"]) == {1}
    sent = {r[first] for r in rows[:2]}
    assert set(logged["f." + first]) == sent
    assert 'kyklos_requests_total{endpoint="v2",model="flights",status="200",version="1"}' in (
        metrics
    )


def test_infer_accepts_nested_data_and_column_shape(
    server: Server, rows: list[dict[str, Any]], features: list[dict[str, Any]]
) -> None:
    tensors = _tensors(rows[:2], features)
    for tensor in tensors:
        tensor["shape"] = [2, 1]
        tensor["data"] = [[v] for v in tensor["data"]]
    with server.client() as client:
        nested = client.post(f"/v2/models/{MODEL}/versions/1/infer", json={"inputs": tensors})
        flat = client.post(
            f"/v2/models/{MODEL}/infer", json={"inputs": _tensors(rows[:2], features)}
        )
    assert nested.status_code == 200, nested.text
    assert nested.json()["outputs"] == flat.json()["outputs"]
    assert nested.json()["outputs"][0]["shape"] == [2]


def test_infer_takes_integer_tensors_for_numeric_features(
    server: Server, rows: list[dict[str, Any]], features: list[dict[str, Any]]
) -> None:
    as_ints = _tensors(rows[:2], features)
    for tensor in as_ints:
        if tensor["datatype"] == "FP64":
            tensor["datatype"] = "INT64"
            tensor["data"] = [int(v) for v in tensor["data"]]
    with server.client() as client:
        ints = client.post(f"/v2/models/{MODEL}/infer", json={"inputs": as_ints})
        floats = client.post(
            f"/v2/models/{MODEL}/infer", json={"inputs": _tensors(rows[:2], features)}
        )
    assert ints.status_code == 200, ints.text
    assert ints.json()["outputs"] == floats.json()["outputs"]


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v2/models/flights/infer", ("flights", None)),
        ("/v2/models/flights/versions/3/infer", ("flights", "3")),
        ("/v2/models/flights", None),
        ("/v2/models//infer", None),
        ("/v2/models/flights/versions/3/ready", None),
        ("/v2/models/flights/versions//infer", None),
        ("/predict", None),
    ],
)
def test_infer_route_for_a_raw_asgi_front(path: str, route: tuple[str, str | None] | None) -> None:
    found = infer_route(path)
    if route is None:
        assert found is None
        return
    assert found == ("v2", InferHandler(*route))


def test_tensors_doctest() -> None:
    import doctest

    from kyklos.serving import tensors

    result = doctest.testmod(tensors)
    assert result.attempted > 0 and result.failed == 0


Mutation = Callable[[dict[str, Any], list[dict[str, Any]]], None]


def _feature(features: list[dict[str, Any]], kind: str) -> str:
    return next(f["name"] for f in features if f["kind"] == kind)


def _set(name_kind: str, **changes: Any) -> Mutation:
    """Change the first input tensor of a feature kind."""

    def mutate(body: dict[str, Any], features: list[dict[str, Any]]) -> None:
        name = _feature(features, name_kind)
        tensor = next(t for t in body["inputs"] if t["name"] == name)
        tensor.update(changes)

    return mutate


def _drop(kind: str) -> Mutation:
    def mutate(body: dict[str, Any], features: list[dict[str, Any]]) -> None:
        name = _feature(features, kind)
        body["inputs"] = [t for t in body["inputs"] if t["name"] != name]

    return mutate


def _add(tensor: dict[str, Any]) -> Mutation:
    def mutate(body: dict[str, Any], features: list[dict[str, Any]]) -> None:
        body["inputs"].append(tensor)

    return mutate


def _every(**changes: Any) -> Mutation:
    """Change every input tensor."""

    def mutate(body: dict[str, Any], features: list[dict[str, Any]]) -> None:
        for tensor in body["inputs"]:
            tensor.update(changes)

    return mutate


def _duplicate(body: dict[str, Any], features: list[dict[str, Any]]) -> None:
    body["inputs"].append(dict(body["inputs"][0]))


def _top(**changes: Any) -> Mutation:
    def mutate(body: dict[str, Any], features: list[dict[str, Any]]) -> None:
        body.update(changes)

    return mutate


_NUM, _CAT = "numeric", "categorical"
_COLOUR = {"name": "colour", "datatype": "FP64", "shape": [2], "data": [1, 2]}
# (id, path suffix, mutation, status, field: a feature kind, or the literal field, message part)
ERRORS: list[tuple[str, str, Mutation | None, int, str, str]] = [
    ("unknown model", "models/churn/infer", None, 404, "model_name", "model 'churn' is not served"),
    ("unknown version", "models/flights/versions/9/infer", None, 404, "model_version", "'9'"),
    ("numeric as BYTES", "", _set(_NUM, datatype="BYTES"), 400, _NUM, "datatype BYTES"),
    ("categorical as FP64", "", _set(_CAT, datatype="FP64", data=[1.0, 2.0]), 400, _CAT, "FP64"),
    ("unknown datatype", "", _set(_NUM, datatype="FLOAT"), 400, _NUM, "'FLOAT'"),
    ("row shape", "", _set(_NUM, shape=[1, 2]), 400, _NUM, "shape [1, 2]"),
    ("data shorter", "", _set(_NUM, data=[1.0]), 400, _NUM, "needs 2 values, the data has 1"),
    ("rows differ", "", _set(_NUM, shape=[3], data=[1.0] * 3), 400, _NUM, "3 rows, the others 2"),
    ("missing input", "", _drop(_CAT), 400, _CAT, "input tensor(s) missing"),
    ("unknown input", "", _add(_COLOUR), 400, "colour", "not a feature"),
    ("renamed input", "", _set(_NUM, name="colour", datatype="INT64"), 400, "colour", "missing"),
    ("input twice", "", _duplicate, 400, "first", "given twice"),
    ("infinity", "", _set(_NUM, data=[1.0, float("inf")]), 400, _NUM, "expected a finite number"),
    ("INT64 fraction", "", _set(_NUM, datatype="INT64", data=[1, 1.5]), 400, _NUM, "1.5"),
    ("text in FP64", "", _set(_NUM, data=[None, "far"]), 400, _NUM, "expected a number"),
    ("number as category", "", _set(_CAT, data=[5, 6]), 400, _CAT, "expected a string category"),
    ("no rows", "", _every(shape=[0], data=[]), 400, "inputs", "have 0 rows"),
    ("binary input", "", _set(_NUM, parameters={"binary_data_size": 16}), 400, _NUM, "binary"),
    ("unknown output", "", _top(outputs=[{"name": "scores"}]), 400, "scores", "not an output"),
    ("numeric id", "", _top(id=42), 400, "id", "'id' is a JSON number"),
    ("no inputs", "", _top(inputs=[]), 400, "inputs", "no 'inputs' list"),
]


@pytest.mark.parametrize(
    ("path", "mutate", "status", "field", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in ERRORS],
)
def test_infer_errors_name_the_tensor(
    server: Server,
    rows: list[dict[str, Any]],
    features: list[dict[str, Any]],
    path: str,
    mutate: Mutation | None,
    status: int,
    field: str,
    message: str,
) -> None:
    body: dict[str, Any] = {"inputs": _tensors(rows[:2], features)}
    if mutate is not None:
        mutate(body, features)
    # json.dumps writes Infinity as tritonclient does; the server must still name the value
    content = json.dumps(body).encode()
    with server.client() as client:
        response = client.post(
            f"/v2/{path or 'models/flights/infer'}",
            content=content,
            headers={"content-type": "application/json"},
        )
    assert response.status_code == status, response.text
    error = response.json()
    expected_field = {
        _NUM: _feature(features, _NUM),
        _CAT: _feature(features, _CAT),
        "first": features[0]["name"],
    }.get(field, field)
    assert isinstance(error["error"], str) and message in error["error"], error
    assert error["field"] == expected_field, error
    assert "expected" in error["error"], error  # all a tritonclient user sees: it says the fix


@pytest.mark.parametrize(
    ("method", "path", "headers", "content", "status", "field"),
    [
        pytest.param("POST", "models/flights/infer", {}, b"{", 400, "body", id="malformed JSON"),
        pytest.param(
            "POST",
            "models/flights/infer",
            {"content-type": "text/csv"},
            b"a,b\n1,2\n",
            415,
            "Content-Type",
            id="content type",
        ),
        pytest.param(
            "POST",
            "models/flights/infer",
            {"content-type": "application/json", "content-encoding": "gzip"},
            gzip.compress(b"{}"),
            415,
            "Content-Encoding",
            id="compressed",
        ),
        pytest.param(
            "POST",
            "models/flights/infer",
            {"content-type": "application/json", "inference-header-content-length": "2"},
            b"{}\x00\x00",
            400,
            "Inference-Header-Content-Length",
            id="binary header",
        ),
        pytest.param("GET", "models/flights/infer", {}, None, 405, "method", id="GET on infer"),
        pytest.param("GET", "repository/index", {}, None, 404, "path", id="unknown route"),
        pytest.param("GET", "models/churn", {}, None, 404, "model_name", id="unknown model"),
        pytest.param(
            "GET", "models/flights/versions/3/ready", {}, None, 404, "model_version", id="version"
        ),
    ],
)
def test_request_errors_in_the_protocol_shape(
    server: Server,
    method: str,
    path: str,
    headers: dict[str, str],
    content: bytes | None,
    status: int,
    field: str,
) -> None:
    with server.client() as client:
        response = client.request(method, f"/v2/{path}", content=content, headers=headers)
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and body["field"] == field, body
    if status == 405:
        assert response.headers["allow"] == "POST"


def test_v2_routes_are_in_the_openapi_schema(server: Server) -> None:
    with server.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert "/v2/models/{name}/infer" in paths and "/v2/health/ready" in paths
    assert not any("{rest" in p for p in paths)


# -- one tensor of every feature (an all-numeric model) ---------------------------------------


@pytest.fixture(scope="module")
def numeric_server(
    tmp_path_factory: pytest.TempPathFactory,
    _mlflow_template: Path,
    features: list[dict[str, Any]],
) -> Iterator[Server]:
    """The flights project trained on its numeric features only, served."""
    root = tmp_path_factory.mktemp("v2-numeric") / "flights"
    kyklos.init_project(root, rows=3000)
    (root / ".kyklos").mkdir(exist_ok=True)
    shutil.copyfile(_mlflow_template, root / ".kyklos" / "mlflow.db")
    raw = set(pq.read_schema(root / "data" / "flights.parquet").names)
    # the numeric features read from the data (not those the project's own step derives)
    numeric = [f["name"] for f in features if f["kind"] == "numeric" and f["name"] in raw]
    kyklos.run(
        root,
        overrides={
            "data.features": numeric,
            "pipeline.steps": [],
            "model.params.max_iter": 30,
        },
    )
    srv = start_server(root)
    yield srv
    srv.stop()


def test_one_tensor_of_every_numeric_feature(
    numeric_server: Server, rows: list[dict[str, Any]]
) -> None:
    client = triton.InferenceServerClient(
        numeric_server.url.removeprefix("http://"), network_timeout=20
    )
    try:
        metadata = client.get_model_metadata(MODEL)
        names = [t["name"] for t in metadata["inputs"]]
        assert {t["datatype"] for t in metadata["inputs"]} == {"FP64"}
        numeric_rows = [{n: r[n] for n in names} for r in rows]
        matrix = np.array([[r[n] for n in names] for r in numeric_rows], dtype=np.float32)
        tensor = triton.InferInput("input-0", list(matrix.shape), "FP32")
        tensor.set_data_from_numpy(matrix, binary_data=False)
        result = client.infer(MODEL, [tensor])
        with pytest.raises(InferenceServerException) as narrow:
            bad = triton.InferInput("input-0", [len(rows), len(names) - 1], "FP32")
            bad.set_data_from_numpy(matrix[:, 1:], binary_data=False)
            client.infer(MODEL, [bad])
    finally:
        client.close()
    with numeric_server.client() as http:
        # float32 rows, as the tensor carried them, so both paths predict the same numbers
        as_sent = [{n: float(np.float32(v)) for n, v in r.items()} for r in numeric_rows]
        reference = http.post("/predict", json={"rows": as_sent}).json()
    assert result.as_numpy("predict").tolist() == reference["predictions"]
    assert result.as_numpy("probability").tolist() == reference["scores"]
    assert narrow.value.status() == "400"
    assert f"shape [n, {len(names)}]" in str(narrow.value)
