"""Open Inference Protocol (KServe V2) REST endpoints on the serving app.

:func:`add_v2_routes` adds, on the app that :func:`kyklos.serving.app.create_app` builds::

    GET  /v2                                          server metadata (name, version, extensions)
    GET  /v2/health/live    GET /v2/health/ready      liveness, readiness
    GET  /v2/models/{name}[/versions/{version}]       model metadata: tensors from the features
    GET  /v2/models/{name}[/versions/{version}]/ready
    POST /v2/models/{name}[/versions/{version}]/infer

Tensors. The model's inputs are its features, one tensor each, shape ``[-1]``: ``FP64`` for a
numeric feature (any numeric datatype is accepted: ``FP16/32/64``, ``INT*``, ``UINT*``, ``BOOL``;
``null`` is a missing value), ``BYTES`` (JSON strings) for a categorical one. An infer request
sends them as columns: ``{"name": "distance", "datatype": "FP64", "shape": [n] or [n, 1],
"data": [...]}``, data flat or nested row-major. When every feature is numeric, one tensor of
shape ``[n, n_features]`` (columns in the metadata's order, any name that is not a feature)
is accepted too. Outputs are ``predict`` (the label or value; ``INT64``, ``FP64``, ``BOOL`` or
``BYTES`` after the model's classes) and, for a classifier with probabilities, ``probability``
(``FP64``: the positive class's for a binary classifier, the predicted class's otherwise).
``outputs`` in the request picks among them; ``id`` is echoed, and is the prediction log's
request id when it is a usable one (1-128 of ``A-Za-z0-9._:-``), else X-Request-ID or a new id
(the ``x-request-id`` answer header always carries the id logged, for ``/feedback``).

Infer requests take the same path as ``/predict``: :func:`kyklos.serving.app._answer` validates
the columns, predicts through the batcher and appends to the durable prediction log (endpoint
``"v2"``) before the answer leaves.

Triton's binary tensor extension. Binary *inputs* (an ``Inference-Header-Content-Length``
header, or ``binary_data_size`` on an input) are refused with a 400 that says to send JSON
tensors (``set_data_from_numpy(..., binary_data=False)`` in ``tritonclient``). Asking for binary
*outputs* (``binary_data_output`` or an output's ``binary_data``; ``tritonclient`` asks by
default) is answered with JSON tensors, which ``tritonclient`` reads the same way: refusing it
would fail every ``client.infer(name, inputs)`` that names no outputs. The server metadata
therefore lists no extension.

Errors. The protocol's error body is ``{"error": "<message>"}``, and ``tritonclient`` builds its
exception from ``body["error"]`` as a string (kyklos's usual ``{"error": {...}}`` object would
make it fail on the message). So under ``/v2`` the body is flat: ``{"error": "<message>;
expected <what>", "field": ..., "expected": ...}``: the same three facts as everywhere else in
kyklos, and the ``error`` string alone says what to send instead. Statuses: a bad
request is 400 (V2 has no 422), an unknown model, version or route 404, a wrong method 405, a
body over the limit 413, another content type or encoding 415, no model loaded yet 503.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from kyklos.serving import protocols
from kyklos.serving.app import (
    _REQUEST_ID,
    Handler,
    _answer,
    _error_for,
    _json,
    _labels,
    _request_id,
    _timed,
    header,
    read_body,
)
from kyklos.serving.protocols import Parsed, RequestError
from kyklos.serving.rollout import ROUTING_HEADER
from kyklos.serving.tensors import BINARY_HINT, parse_infer

if TYPE_CHECKING:
    from fastapi import FastAPI

    from kyklos.serving.app import ServingState
    from kyklos.serving.model import LoadedModel

__all__ = [
    "InferHandler",
    "add_v2_routes",
    "infer_route",
    "model_metadata",
    "v2_error",
    "v2_error_for",
]

ENDPOINT = "v2"
_RECORD_ROWS = 8
_INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object"},
                "example": {
                    "id": "order-42",
                    "inputs": [
                        {"name": "distance", "datatype": "FP64", "shape": [2], "data": [1400, 200]},
                        {
                            "name": "carrier",
                            "datatype": "BYTES",
                            "shape": [2],
                            "data": ["UA", "DL"],
                        },
                    ],
                    "outputs": [{"name": "predict"}, {"name": "probability"}],
                },
            }
        },
    }
}


# -- the routes -------------------------------------------------------------------------------


def add_v2_routes(app: FastAPI, state: ServingState) -> None:
    """Add the Open Inference Protocol endpoints (see the module docstring) to ``app``."""
    from kyklos._version import __version__

    tags: list[str | Enum] = ["open inference protocol (v2)"]

    @app.get("/v2", tags=tags)
    async def server_metadata() -> Response:
        """Server metadata: name, version and protocol extensions (none)."""
        return _json(200, {"name": "kyklos", "version": __version__, "extensions": []})

    @app.get("/v2/health/live", tags=tags)
    async def server_live() -> Response:
        """Liveness: the process answers."""
        return _json(200, {"live": True})

    @app.get("/v2/health/ready", tags=tags)
    async def server_ready() -> Response:
        """Readiness: a model is loaded and the prediction log is open (503 until then)."""
        if state.model is None or state.predictions is None:
            return v2_error(503, "no model is loaded yet")
        return _json(200, {"ready": True})

    @app.get("/v2/models/{name}", tags=tags)
    async def metadata(name: str) -> Response:
        """Model metadata: one input tensor per feature, the output tensors."""
        return _guarded(lambda: _json(200, model_metadata(_served(state, name, None))))

    @app.get("/v2/models/{name}/versions/{version}", tags=tags)
    async def version_metadata(name: str, version: str) -> Response:
        """Metadata of the version served (404 for any other version)."""
        return _guarded(lambda: _json(200, model_metadata(_served(state, name, version))))

    @app.get("/v2/models/{name}/ready", tags=tags)
    async def model_ready(name: str) -> Response:
        """Readiness of the model (404 for a model this server does not serve)."""
        return _guarded(lambda: _model_ready(state, name, None))

    @app.get("/v2/models/{name}/versions/{version}/ready", tags=tags)
    async def version_ready(name: str, version: str) -> Response:
        """Readiness of one version (404 for a version this server does not serve)."""
        return _guarded(lambda: _model_ready(state, name, version))

    @app.post("/v2/models/{name}/infer", openapi_extra=_INFER_BODY, tags=tags)
    async def infer(request: Request, name: str) -> Response:
        """Predict: one tensor per feature in, ``predict`` (and ``probability``) out."""
        return await _timed(state, ENDPOINT, request, InferHandler(name, None))

    @app.post("/v2/models/{name}/versions/{version}/infer", openapi_extra=_INFER_BODY, tags=tags)
    async def version_infer(request: Request, name: str, version: str) -> Response:
        """Predict with the version named (404 when it is not the version served)."""
        return await _timed(state, ENDPOINT, request, InferHandler(name, version))

    @app.api_route(
        "/v2/{rest:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        include_in_schema=False,
    )
    async def unknown(request: Request, rest: str) -> Response:
        """Any other /v2 path or method, answered in the protocol's error shape."""
        allowed = sorted(
            {
                method
                for route in app.router.routes
                if getattr(route, "endpoint", None) is not unknown
                and route.matches(request.scope)[0] is Match.PARTIAL
                for method in getattr(route, "methods", None) or ()
            }
        )
        if allowed:
            return v2_error(
                405,
                f"{request.method} is not allowed on {request.url.path}",
                field="method",
                expected=", ".join(allowed),
                headers={"Allow": ", ".join(allowed)},
            )
        return v2_error(
            404,
            f"no Open Inference Protocol route {request.url.path}",
            field="path",
            expected="/v2, /v2/health/{live,ready}, /v2/models/{name}[/versions/{version}]"
            "[/ready|/infer]",
        )


def infer_route(path: str) -> tuple[str, Handler] | None:
    """The endpoint name and handler of a ``POST`` to ``path`` when it is an infer endpoint,
    else None: for a raw-ASGI front such as :class:`kyklos.serving.fastpath.FastPath`, which
    skips FastAPI's routing and hands the request to :func:`kyklos.serving.app._timed`."""
    parts = path.split("/")
    if len(parts) < 5 or parts[:3] != ["", "v2", "models"] or parts[-1] != "infer":
        return None
    if len(parts) == 5 and parts[3]:
        return ENDPOINT, InferHandler(parts[3], None)
    if len(parts) == 7 and parts[4] == "versions" and parts[3] and parts[5]:
        return ENDPOINT, InferHandler(parts[3], parts[5])
    return None


@dataclass(frozen=True)
class InferHandler:
    """The handler (for :func:`kyklos.serving.app._timed`) of an infer request to model
    ``name``, version ``version`` (None: the version served); errors in the protocol's shape."""

    name: str
    version: str | None

    async def __call__(
        self, state: ServingState, request: Request, endpoint: str, start: float
    ) -> tuple[Response, int]:
        try:
            return await _infer(state, request, endpoint, start, self.name, self.version)
        except Exception as exc:
            return v2_error_for(exc), 0


async def _infer(
    state: ServingState,
    request: Request,
    endpoint: str,
    start: float,
    name: str,
    version: str | None,
) -> tuple[Response, int]:
    if header(request, "inference-header-content-length") is not None:
        raise RequestError(
            "Triton's binary tensor extension (Inference-Header-Content-Length) is not "
            "supported by kyklos",
            field="Inference-Header-Content-Length",
            status=400,
            expected=BINARY_HINT,
        )
    model = _served(state, name, version)
    encoding = (header(request, "content-encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise RequestError(
            f"Content-Encoding {encoding!r} is not accepted",
            field="Content-Encoding",
            status=415,
            expected="an uncompressed JSON body",
        )
    body = await read_body(request, state.options.max_body_bytes, protocols.JSON_TYPES)
    parsed = parse_infer(_loads(body), model.features, _outputs_of(model))
    given = parsed.id
    request_id = given if given is not None and _REQUEST_ID.match(given) else _request_id(request)
    model, prediction, score, served, n = await _answer(
        state,
        _rows(parsed.columns),
        request_id=request_id,
        endpoint=endpoint,
        start=start,
        routing_key=header(request, ROUTING_HEADER),
        canary=version is None,  # /versions/{v}/infer asked for the champion's version
    )
    outputs: list[dict[str, Any]] = []
    for output in parsed.outputs or _outputs_of(model):
        if output == "predict":
            outputs.append(_tensor("predict", _predict_datatype(model), _labels(model, prediction)))
        elif score is not None:
            outputs.append(
                _tensor("probability", "FP64", protocols.encode_values(score, integral=False))
            )
    payload = {
        "model_name": model.name,
        "model_version": str(served),
        "id": given if given is not None else request_id,
        "outputs": outputs,
    }
    headers = {"x-request-id": request_id, "x-model-version": str(served)}
    return _json(200, payload, headers), n


def _rows(columns: dict[str, Any]) -> Parsed:
    """The tensors for validation: a few rows as records, whose fast path for clean rows costs
    ~10 µs where 22 one-value columns cost ~140 µs (measured on the flights model); more rows as
    columns, checked once per column whatever their length."""
    n = len(next(iter(columns.values())))
    if n > _RECORD_ROWS:
        return Parsed(columns=columns)
    names = list(columns)
    values = [columns[name] for name in names]
    if n == 1:
        return Parsed(
            records=[{name: column[0] for name, column in zip(names, values, strict=True)}]
        )
    return Parsed(records=[dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)])


def _tensor(name: str, datatype: str, data: list[Any]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": [len(data)], "data": data}


def _model_ready(state: ServingState, name: str, version: str | None) -> Response:
    model = _served(state, name, version)
    if state.predictions is None:
        return v2_error(503, "the prediction log is not open yet")
    return _json(200, {"name": model.name, "version": str(model.version), "ready": True})


def _served(state: ServingState, name: str, version: str | None) -> LoadedModel:
    """The model serving, when ``name`` (and ``version``, when given) are the ones served."""
    model = state.current()  # 503 while no model is loaded
    if name != model.name:
        raise RequestError(
            f"model {name!r} is not served here",
            field="model_name",
            status=404,
            expected=model.name,
        )
    if version is not None and version != str(model.version):
        raise RequestError(
            f"version {version!r} of model {model.name!r} is not served here; "
            f"version {model.version} is",
            field="model_version",
            status=404,
            expected=str(model.version),
        )
    return model


# -- metadata ---------------------------------------------------------------------------------


def model_metadata(model: LoadedModel) -> dict[str, Any]:
    """The protocol's model metadata of ``model``: its features as input tensors."""
    inputs = [
        {"name": f.name, "datatype": "FP64" if f.kind == "numeric" else "BYTES", "shape": [-1]}
        for f in model.features
    ]
    outputs = [{"name": "predict", "datatype": _predict_datatype(model), "shape": [-1]}]
    if "probability" in _outputs_of(model):
        outputs.append({"name": "probability", "datatype": "FP64", "shape": [-1]})
    return {
        "name": model.name,
        "versions": [str(model.version)],
        # Triton's platform names: what computes the predictions (LoadedModel.runtime)
        "platform": "onnxruntime_onnx" if getattr(model, "runtime", "") == "onnx" else "sklearn",
        "inputs": inputs,
        "outputs": outputs,
    }


def _outputs_of(model: LoadedModel) -> tuple[str, ...]:
    # LoadedModel answers a score exactly when it is a classifier with predict_proba
    has_score = bool(getattr(model, "_proba", model.classes is not None))
    return ("predict", "probability") if has_score else ("predict",)


def _predict_datatype(model: LoadedModel) -> str:
    classes = model.classes
    if classes is None:
        return "FP64"
    if all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if all(isinstance(c, int | float) and not isinstance(c, bool) for c in classes):
        return "INT64" if all(float(c).is_integer() for c in classes) else "FP64"
    return "BYTES"


def _loads(body: bytes) -> Any:
    """orjson; when it refuses, the standard library, which reads the NaN and Infinity that
    tritonclient writes for non-finite values (so validation can name them)."""
    try:
        return protocols.loads(body)
    except RequestError as exc:
        import json

        try:
            return json.loads(body)
        except ValueError:
            raise exc from None


# -- errors -----------------------------------------------------------------------------------


def _guarded(answer: Callable[[], Response]) -> Response:
    try:
        response: Response = answer()
    except Exception as exc:
        return v2_error_for(exc)
    return response


def v2_error_for(exc: Exception) -> Response:
    """The app's one exception → status mapping, answered in the protocol's error shape
    (a 422 becomes the protocol's 400)."""
    mapped = _error_for(exc)
    error = protocols.loads(bytes(mapped.body))["error"]
    status = 400 if mapped.status_code == 422 else mapped.status_code
    return v2_error(
        status, error["message"], field=error.get("field"), expected=error.get("expected")
    )


def v2_error(
    status: int,
    message: str,
    *,
    field: str | None = None,
    expected: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """``{"error", "field", "expected"?}``: the protocol's ``error`` string, which says what
    was expected too (it is all a ``tritonclient`` user sees), kyklos's field and expectation
    beside it."""
    body: dict[str, Any] = {"error": message, "field": field}
    if expected:
        body["error"] = f"{message}; expected {expected}"
        body["expected"] = expected
    return _json(status, body, headers)
