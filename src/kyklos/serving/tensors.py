"""Open Inference Protocol (KServe V2) tensors: an infer request's body, checked, as columns.

:func:`parse_infer` turns the body of ``POST /v2/models/{name}/infer`` into an
:class:`InferRequest`: its ``id``, one column per feature of the model (handed on to
:mod:`kyklos.serving.validation`, which checks the values as for every other endpoint), and the
outputs asked for. The tensors themselves are checked here, and every problem is a 400
:class:`~kyklos.serving.protocols.RequestError` naming the tensor and what was expected:

* one tensor per feature, named after it: none missing, none unknown or given twice;
* the datatype fits the feature's kind: ``BYTES`` (JSON strings) for a categorical feature, a
  numeric datatype for a numeric one (integers in ``INT*``/``UINT*``, true/false in ``BOOL``);
* shape ``[n]`` or ``[n, 1]``, the same ``n`` in every tensor and at least one row; the data has
  as many values as the shape says, flat or nested as the shape;
* when every feature is numeric, one tensor of shape ``[n, n_features]`` (any name that is not
  a feature) may carry them all, columns in the features' order;
* no Triton binary data (``binary_data_size``) or shared memory, no classification extension.

The common request (``FP*``/``BYTES`` tensors of flat data in any order, no parameters) is
recognised in one tight loop (:func:`_plain_columns`); anything else gets the full checks.

>>> from kyklos.serving.model import FeatureSpec
>>> features = [FeatureSpec("distance", "numeric", False), FeatureSpec("carrier", "categorical", True)]
>>> body = {"inputs": [
...     {"name": "distance", "datatype": "FP64", "shape": [2], "data": [1400, 200]},
...     {"name": "carrier", "datatype": "BYTES", "shape": [2], "data": ["UA", "DL"]}]}
>>> parse_infer(body, features).columns
{'distance': [1400, 200], 'carrier': ['UA', 'DL']}
>>> body["inputs"][1]["datatype"] = "FP64"
>>> parse_infer(body, features)
Traceback (most recent call last):
...
kyklos.serving.protocols.RequestError: input tensor 'carrier' has datatype FP64
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kyklos.serving.protocols import RequestError, _json_kind

if TYPE_CHECKING:
    from kyklos.serving.model import FeatureSpec

__all__ = ["BINARY_HINT", "InferRequest", "bad_request", "parse_infer"]

_INTEGER_TYPES = frozenset(
    {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
)
_NUMERIC_TYPES = _INTEGER_TYPES | {"BOOL", "FP16", "FP32", "FP64"}
_DATATYPES = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
BINARY_HINT = (
    "JSON tensors: a 'data' list in each input and no Inference-Header-Content-Length header "
    "(tritonclient: InferInput.set_data_from_numpy(array, binary_data=False))"
)
_INFER_SHAPE = (
    '{"id"?: "...", "inputs": [{"name": feature, "datatype": "FP64"|"BYTES"|..., '
    '"shape": [n], "data": [...]}, ...], "outputs"?: [{"name": "predict"}, ...]}'
)


@dataclass(frozen=True)
class InferRequest:
    """An infer request, checked: its ``id``, one column per feature, the outputs asked for
    (None: all of them)."""

    id: str | None
    columns: dict[str, Any]
    outputs: tuple[str, ...] | None


@dataclass(frozen=True)
class _Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: list[Any]


def parse_infer(
    payload: Any, features: Sequence[FeatureSpec], outputs: Sequence[str] = ("predict",)
) -> InferRequest:
    """Check an infer body against the model's ``features`` and ``outputs``; every problem is a
    400 :class:`RequestError` naming the tensor and what was expected."""
    if not isinstance(payload, dict):
        raise bad_request(
            f"the body is a JSON {_json_kind(payload)}, not an object",
            "body",
            _INFER_SHAPE,
        )
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad_request(f"'id' is a JSON {_json_kind(request_id)}", "id", "a string")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise bad_request("the body has no 'inputs' list", "inputs", _INFER_SHAPE)
    columns = _plain_columns(inputs, features)
    if columns is None:
        columns = _columns([_parse_tensor(item, i) for i, item in enumerate(inputs)], features)
    return InferRequest(request_id, columns, _requested(payload.get("outputs"), outputs))


_KIND_OF = {"FP64": "numeric", "FP32": "numeric", "FP16": "numeric", "BYTES": "categorical"}


def _plain_columns(inputs: list[Any], features: Sequence[FeatureSpec]) -> dict[str, Any] | None:
    """The columns of the common request, checked in one tight loop: one tensor per feature,
    ``FP*`` for numeric ones and ``BYTES`` for categorical ones, shape ``[n]`` or ``[n, 1]``
    alike, flat data, no parameters. None for anything else, which then gets the full checks
    (they name every problem; this never refuses anything itself). The values are checked by
    validation, as for every request."""
    if len(inputs) != len(features):
        return None
    kinds = {f.name: f.kind for f in features}
    columns: dict[str, Any] = {}
    n = -1
    try:
        for item in inputs:
            data = item["data"]
            name = item["name"]
            kind = kinds.get(name)
            if (
                kind is None
                or kind != _KIND_OF.get(item["datatype"])
                or type(data) is not list
                or item.get("parameters")
                or name in columns
            ):
                return None
            size = len(data)
            if n < 0:
                n = size
            shape = item["shape"]
            if size != n or (shape != [n] and shape != [n, 1]) or type(data[0]) is list:
                return None
            columns[name] = data
    except (KeyError, TypeError, IndexError):  # not a dict, unhashable name, no data
        return None
    return columns


def _parse_tensor(item: Any, i: int) -> _Tensor:
    where = f"inputs[{i}]"
    if not isinstance(item, dict):
        raise bad_request(f"{where} is a JSON {_json_kind(item)}", where, "a tensor object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request(f"{where} has no 'name'", f"{where}.name", "the name of a feature")
    parameters = item.get("parameters")
    if isinstance(parameters, dict):
        if "binary_data_size" in parameters:
            raise bad_request(
                f"input tensor {name!r} is sent as binary data (Triton's binary tensor "
                "extension), which kyklos does not support",
                name,
                BINARY_HINT,
            )
        if "shared_memory_region" in parameters:
            raise bad_request(
                f"input tensor {name!r} is in shared memory, which kyklos does not support",
                name,
                "the tensor's values in a 'data' list",
            )
    datatype = item.get("datatype")
    if datatype not in _DATATYPES:
        raise bad_request(
            f"input tensor {name!r} has datatype {datatype!r}",
            name,
            "one of " + ", ".join(_DATATYPES),
        )
    shape = item.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise bad_request(
            f"input tensor {name!r} has shape {shape!r}", name, "a list of sizes such as [n]"
        )
    data = item.get("data")
    if not isinstance(data, list):
        raise bad_request(
            f"input tensor {name!r} has no 'data' list", name, "the tensor's values, row-major"
        )
    return _Tensor(name, datatype, tuple(shape), data)


def _columns(tensors: Sequence[_Tensor], features: Sequence[FeatureSpec]) -> dict[str, Any]:
    by_name = {f.name: f for f in features}
    names = ", ".join(by_name)
    numeric = all(f.kind == "numeric" for f in features)
    if len(tensors) == 1 and tensors[0].name not in by_name and numeric:
        return _single(tensors[0], features)
    problems: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    rows: dict[str, int] = {}
    columns: dict[str, Any] = {}
    for tensor in tensors:
        name = tensor.name
        spec = by_name.get(name)
        if spec is None:
            hint = (
                f"; or one {len(features)}-column tensor of every feature, shape "
                f"[n, {len(features)}]"
                if numeric
                else ""
            )
            close = difflib.get_close_matches(name, list(by_name), n=1)
            mean = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                (name, f"input tensor {name!r} is not a feature of the model{mean}", names + hint)
            )
            continue
        if name in seen:
            problems.append((name, f"input tensor {name!r} is given twice", "one tensor each"))
            continue
        seen.add(name)
        if spec.kind == "numeric" and tensor.datatype not in _NUMERIC_TYPES:
            problems.append(
                (
                    name,
                    f"input tensor {name!r} has datatype {tensor.datatype}",
                    "FP64 (or another numeric datatype) for a numeric feature",
                )
            )
            continue
        if spec.kind != "numeric" and tensor.datatype != "BYTES":
            problems.append(
                (
                    name,
                    f"input tensor {name!r} has datatype {tensor.datatype}",
                    "BYTES (JSON strings) for a categorical feature",
                )
            )
            continue
        shape = tensor.shape
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            problems.append(
                (name, f"input tensor {name!r} has shape {list(shape)}", "[n] or [n, 1]")
            )
            continue
        try:
            columns[name] = _values(tensor)
        except RequestError as exc:
            problems.append((name, str(exc), exc.expected))
            continue
        rows[name] = shape[0]
    missing = [name for name in by_name if name not in seen]
    if missing:
        problems.append(
            (
                missing[0],
                "input tensor(s) missing: " + ", ".join(missing),
                "one tensor per feature: " + names,
            )
        )
    if rows and not problems:
        n = Counter(rows.values()).most_common(1)[0][0]  # the odd tensors are the wrong ones
        odd = [name for name, size in rows.items() if size != n]
        if odd:
            problems.extend(
                (
                    name,
                    f"input tensor {name!r} has {rows[name]} rows, the others {n}",
                    "the same first dimension n in every input tensor",
                )
                for name in odd
            )
        elif n == 0:
            problems.append(
                ("inputs", "the input tensors have 0 rows", "at least one row: shape [n], n >= 1")
            )
    if problems:
        field, _, expected = problems[0]
        raise bad_request("; ".join(p[1] for p in problems), field, expected)
    return columns


def _single(tensor: _Tensor, features: Sequence[FeatureSpec]) -> dict[str, Any]:
    """The columns of one ``[n, n_features]`` tensor holding every (numeric) feature."""
    width = len(features)
    names = ", ".join(f.name for f in features)
    if tensor.datatype not in _NUMERIC_TYPES or len(tensor.shape) != 2 or tensor.shape[1] != width:
        raise bad_request(
            f"input tensor {tensor.name!r} ({tensor.datatype}, shape {list(tensor.shape)}) is "
            "not a feature of the model, nor one numeric tensor of every feature",
            tensor.name,
            f"one tensor per feature ({names}), or one FP32/FP64 tensor of shape "
            f"[n, {width}] with the features in that order",
        )
    matrix = _array(tensor).reshape(tensor.shape)
    return {f.name: matrix[:, i] for i, f in enumerate(features)}


def _values(tensor: _Tensor) -> list[Any] | np.ndarray:
    """The tensor's data, flat, checked against its shape and datatype.

    Flat data of the right length (the common case) is handed on as the list it is: validation
    checks the values of every column anyway, so only the integer and boolean datatypes are
    checked here. Nested data goes through numpy to check its nesting."""
    datatype, data, size = tensor.datatype, tensor.data, math.prod(tensor.shape)
    if len(data) == size and not (data and isinstance(data[0], list)):
        if datatype in _INTEGER_TYPES and not set(map(type, data)) <= {int}:
            raise _not_integers(tensor)
        if datatype == "BOOL" and not set(map(type, data)) <= {bool}:
            raise _not_booleans(tensor)
        return data
    return _array(tensor)


def _array(tensor: _Tensor) -> np.ndarray:
    """The tensor's data as a flat array, its nesting checked against its shape."""
    name, datatype = tensor.name, tensor.datatype
    try:
        array = np.asarray(tensor.data, dtype=object if datatype == "BYTES" else None)
    except (ValueError, TypeError):
        raise bad_request(
            f"input tensor {name!r}: the data is nested unevenly",
            name,
            f"{math.prod(tensor.shape)} values, flat or nested as the shape {list(tensor.shape)}",
        ) from None
    size = math.prod(tensor.shape)
    if array.ndim > 1 and array.shape != tensor.shape:
        raise bad_request(
            f"input tensor {name!r}: the data is nested as {list(array.shape)}, the shape says "
            f"{list(tensor.shape)}",
            name,
            "data nested as the shape, or flat",
        )
    if array.size != size:
        raise bad_request(
            f"input tensor {name!r}: shape {list(tensor.shape)} needs {size} values, the data "
            f"has {array.size}",
            name,
            f"{size} values",
        )
    array = array.reshape(-1)
    kind = array.dtype.kind
    if datatype == "BOOL" and kind != "b" and array.size:
        raise _not_booleans(tensor)
    if datatype in _INTEGER_TYPES and kind not in "iu" and array.size:
        raise _not_integers(tensor)
    if datatype.startswith("FP") and kind not in "biufO":
        bad = _first(tensor, lambda v: isinstance(v, int | float) and not isinstance(v, bool))
        raise bad_request(
            f"input tensor {name!r} ({datatype}) holds {bad!r}",
            name,
            "numbers (null for a missing value)",
        )
    return array


def _not_integers(tensor: _Tensor) -> RequestError:
    bad = _first(tensor, lambda v: isinstance(v, int) and not isinstance(v, bool))
    return bad_request(
        f"input tensor {tensor.name!r} ({tensor.datatype}) holds {bad!r}",
        tensor.name,
        "integers (send numbers with fractions, or null for a missing value, as FP64)",
    )


def _not_booleans(tensor: _Tensor) -> RequestError:
    bad = _first(tensor, lambda v: isinstance(v, bool))
    return bad_request(
        f"input tensor {tensor.name!r} (BOOL) holds {bad!r}", tensor.name, "true/false"
    )


def _first(tensor: _Tensor, ok: Callable[[Any], bool]) -> Any:
    """The first value of the tensor's data (as sent) that is not ``ok`` (error path only)."""
    flat = np.asarray(tensor.data, dtype=object).reshape(-1)
    return next((v for v in flat if not ok(v)), None)


def _requested(value: Any, available: Sequence[str]) -> tuple[str, ...] | None:
    if value is None:
        return None
    expected = 'a list of {"name": ...} with names among ' + ", ".join(available)
    if not isinstance(value, list):
        raise bad_request(f"'outputs' is a JSON {_json_kind(value)}", "outputs", expected)
    names: list[str] = []
    for i, item in enumerate(value):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise bad_request(f"outputs[{i}] has no 'name'", f"outputs[{i}]", expected)
        if name not in available:
            raise bad_request(f"output {name!r} is not an output of the model", name, expected)
        parameters = item.get("parameters")
        if isinstance(parameters, dict) and parameters.get("classification"):
            raise bad_request(
                f"output {name!r} asks for Triton's classification extension, which kyklos "
                "does not support",
                name,
                "'predict' for the label and 'probability' for its probability",
            )
        if name not in names:
            names.append(name)
    return tuple(names) or None


def bad_request(message: str, field: str, expected: str) -> RequestError:
    return RequestError(message, field=field, status=400, expected=expected)
