"""Translate a fitted kyklos model into one ONNX graph, with one input per feature.

kyklos trains one scikit-learn ``Pipeline([("preprocess", ColumnTransformer), ("model", est)])``
(:func:`kyklos.pipeline.train.build_model`). The graph built here has:

* one input per feature, named after it, shape ``[N, 1]``: numeric features ``double`` (NaN for
  a missing value), categorical features ``string`` (the empty string ``""`` for a missing value);
* kyklos's own preprocessing, translated step by step: numeric columns are imputed
  (``Where(IsNaN)``) and standardised (``Sub``, ``Div``) in float64, exactly the operations
  scikit-learn performs, then cast to float32; each categorical column goes through an
  ``ai.onnx.ml`` ``LabelEncoder`` (category → row number) and a ``Gather`` of the fitted
  encoder's own output rows, so one-hot, ordinal, infrequent buckets and unknown categories come
  out as the encoder computes them (the rows are obtained by calling the fitted encoder);
* the estimator, converted by skl2onnx from the float32 feature matrix;
* outputs ``label`` and ``probabilities`` (classifiers; ``label`` is ONNX's argmax, kyklos
  derives its own label from the probabilities and the project's threshold) or ``prediction``
  (regressors, shape ``[N, 1]``).

Why not skl2onnx for the whole pipeline: its imputer and scaler compute in float32 and its
HistGradientBoosting converter cannot take float64, so on the flights model 0.17 % of labels
flipped and probabilities moved by up to 0.16; and its OneHotEncoder converter makes
onnxruntime fail on a category unseen in training where scikit-learn (``handle_unknown=
"infrequent_if_exist"``) maps it to the infrequent bucket. Translated this way, the preprocessing
matches scikit-learn bit for bit and only the estimator runs in float32.

Anything else in the pipeline (another transformer, a custom step, ``unknown: error``) is refused
with a :class:`~kyklos.errors.ServingError` that names it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kyklos.errors import MissingExtraError, ServingError
from kyklos.serving.model import FeatureSpec

__all__ = [
    "MISSING_STRING",
    "OUTPUT_LABEL",
    "OUTPUT_PREDICTION",
    "OUTPUT_PROBABILITIES",
    "OnnxGraph",
    "build_onnx",
]

#: What a missing categorical value is in the ONNX graph (string tensors cannot hold nulls).
MISSING_STRING = ""
OUTPUT_LABEL = "label"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_PREDICTION = "prediction"

#: Opsets the graph is built for: old enough for most ONNX runtimes at the edge.
OPSET: dict[str, int] = {"": 17, "ai.onnx.ml": 3}

_FEATURES = "kyklos/features"
_UNKNOWN = "\x00kyklos: a category never seen in training\x00"


@dataclass(frozen=True)
class OnnxGraph:
    """A serialised ONNX model and what its inputs and outputs are."""

    model: bytes
    inputs: tuple[dict[str, str], ...]
    outputs: tuple[str, ...]
    opset: dict[str, int]
    width: int


def build_onnx(
    model: Any,
    features: Sequence[FeatureSpec],
    *,
    task: str,
    where: str,
    metadata: Mapping[str, str] | None = None,
) -> OnnxGraph:
    """The ONNX graph of ``model`` (a fitted kyklos Pipeline) for ``features``.

    ``where`` names the model in error messages (``"p v3"``); ``metadata`` is stored in the
    model's ``metadata_props``. Raises :class:`~kyklos.errors.MissingExtraError` without
    skl2onnx/onnx, and :class:`~kyklos.errors.ServingError` for a step it cannot translate.
    """
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError as exc:
        raise MissingExtraError(exc.name or "onnx", "onnx") from exc

    preprocess, estimator = _split(model, where)
    by_name = {f.name: f for f in features}
    builder = _Builder()
    blocks: list[str] = []
    width = 0
    for label, inner, columns in getattr(preprocess, "transformers_", []):
        if isinstance(inner, str):
            if inner == "drop":
                continue
            raise _unsupported(where, f"the {label!r} columns are passed through ({inner!r})")
        names = [str(c) for c in columns] if isinstance(columns, list | tuple) else []
        if not names or any(not isinstance(c, str) for c in columns):
            raise _unsupported(where, f"the {label!r} transformer selects columns by position")
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise _unsupported(where, f"the {label!r} transformer uses non-features {unknown}")
        kinds = {by_name[n].kind for n in names}
        if kinds == {"numeric"}:
            out, w = _numeric_block(builder, inner, names, where)
        elif kinds == {"categorical"}:
            out, w = _categorical_block(builder, inner, names, where)
        else:
            raise _unsupported(where, f"the {label!r} transformer mixes numeric and text columns")
        blocks.append(out)
        width += w
    expected = getattr(estimator, "n_features_in_", width)
    if not blocks or width != expected:
        raise _unsupported(
            where, f"the preprocessing gives {width} columns, the estimator takes {expected}"
        )
    builder.node("Concat", blocks, [_FEATURES], axis=1)

    est = _convert_estimator(estimator, width, task, where)
    outputs: tuple[str, ...]
    if task == "classification":
        outputs = (OUTPUT_LABEL, OUTPUT_PROBABILITIES)
    else:
        outputs = (OUTPUT_PREDICTION,)
    clash = sorted(set(outputs) & set(by_name))
    if clash:
        raise _unsupported(where, f"feature(s) {clash} have the names of the graph's outputs")
    renamed = _rename(est.graph, inputs={est.graph.input[0].name: _FEATURES}, outputs=outputs)

    graph_inputs = [
        helper.make_tensor_value_info(
            f.name, TensorProto.DOUBLE if f.kind == "numeric" else TensorProto.STRING, [None, 1]
        )
        for f in features
    ]
    graph = helper.make_graph(
        builder.nodes + list(renamed.node),
        "kyklos",
        graph_inputs,
        list(renamed.output),
        initializer=builder.initializers + list(renamed.initializer),
    )
    opset = {d.domain: int(d.version) for d in est.opset_import}
    opset[""] = max(opset.get("", 0), OPSET[""])
    opset["ai.onnx.ml"] = max(opset.get("ai.onnx.ml", 0), 2)
    result = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, version) for domain, version in opset.items()],
        producer_name="kyklos",
    )
    result.ir_version = est.ir_version
    if metadata:
        helper.set_model_props(result, dict(metadata))
    try:
        onnx.checker.check_model(result)
    except onnx.checker.ValidationError as exc:  # pragma: no cover - a bug in this module
        raise ServingError(f"{where}: the ONNX graph is invalid: {exc}", status=500) from exc
    described = tuple(
        {
            "name": f.name,
            "kind": f.kind,
            "type": "double" if f.kind == "numeric" else "string",
            "missing": "NaN" if f.kind == "numeric" else repr(MISSING_STRING),
        }
        for f in features
    )
    return OnnxGraph(
        model=result.SerializeToString(),
        inputs=described,
        outputs=outputs,
        opset=opset,
        width=width,
    )


# -- the pipeline -------------------------------------------------------------------------------
def _split(model: Any, where: str) -> tuple[Any, Any]:
    steps = getattr(model, "steps", None)
    if not isinstance(steps, list) or len(steps) != 2:
        raise _unsupported(
            where,
            f"the model is a {type(model).__name__}, not kyklos's "
            "Pipeline([('preprocess', ColumnTransformer), ('model', estimator)])",
        )
    preprocess, estimator = steps[0][1], steps[1][1]
    if type(preprocess).__name__ != "ColumnTransformer":
        raise _unsupported(where, f"its first step is a {type(preprocess).__name__}")
    return preprocess, estimator


def _steps(inner: Any) -> list[Any]:
    steps = getattr(inner, "steps", None)
    return [step for _, step in steps] if isinstance(steps, list) else [inner]


def _is_to_numpy(step: Any) -> bool:
    """kyklos's ``FunctionTransformer(pd.DataFrame.to_numpy)``: the graph's inputs already
    have the dtypes it converts to."""
    func = getattr(step, "func", None)
    return (
        type(step).__name__ == "FunctionTransformer"
        and getattr(func, "__qualname__", "") == "DataFrame.to_numpy"
    )


def _imputes_nan(step: Any) -> bool:
    missing = getattr(step, "missing_values", None)
    return missing is None or (isinstance(missing, float) and math.isnan(missing))


def _numeric_block(builder: _Builder, inner: Any, names: list[str], where: str) -> tuple[str, int]:
    x = builder.node("Concat", names, axis=1) if len(names) > 1 else names[0]
    width = len(names)
    for step in _steps(inner):
        kind = type(step).__name__
        if _is_to_numpy(step):
            continue
        if kind == "SimpleImputer" and _imputes_nan(step):
            if getattr(step, "indicator_", None) is not None:
                raise _unsupported(where, "SimpleImputer(add_indicator=True)")
            stats = np.asarray(step.statistics_, dtype=np.float64)
            empty = np.isnan(stats)
            if empty.any():
                if getattr(step, "keep_empty_features", False):
                    stats = np.where(empty, 0.0, stats)
                else:  # scikit-learn drops the columns that were empty in training
                    keep = np.flatnonzero(~empty).astype(np.int64)
                    x = builder.node("Gather", [x, builder.constant(keep)], axis=1)
                    stats = stats[keep]
                    width = len(keep)
            fill = builder.constant(stats.reshape(1, -1))
            x = builder.node("Where", [builder.node("IsNaN", [x]), fill, x])
        elif kind == "StandardScaler":
            mean = getattr(step, "mean_", None)
            scale = getattr(step, "scale_", None)
            if getattr(step, "with_mean", True) and mean is not None:
                x = builder.node("Sub", [x, builder.constant(np.asarray(mean, np.float64))])
            if getattr(step, "with_std", True) and scale is not None:
                x = builder.node("Div", [x, builder.constant(np.asarray(scale, np.float64))])
        else:
            raise _unsupported(where, f"numeric step {kind}")
    from onnx import TensorProto

    return builder.node("Cast", [x], to=TensorProto.FLOAT), width


def _categorical_block(
    builder: _Builder, inner: Any, names: list[str], where: str
) -> tuple[str, int]:
    fills: list[Any] | None = None
    encoder: Any = None
    for step in _steps(inner):
        kind = type(step).__name__
        if _is_to_numpy(step):
            continue
        if encoder is None and kind == "SimpleImputer" and _imputes_nan(step):
            if getattr(step, "indicator_", None) is not None:
                raise _unsupported(where, "SimpleImputer(add_indicator=True)")
            fills = list(step.statistics_)
        elif encoder is None and kind in {"OneHotEncoder", "OrdinalEncoder"}:
            encoder = step
        else:
            raise _unsupported(where, f"categorical step {kind}")
    if encoder is None or fills is None or len(fills) != len(names):
        raise _unsupported(where, "categorical columns need an imputer and an encoder")
    categories = [list(c) for c in encoder.categories_]
    placeholders = [f"c{j}" for j in range(len(names))]
    try:
        out_names = [str(n) for n in encoder.get_feature_names_out(placeholders)]
    except ValueError as exc:  # an encoder fitted on named columns
        raise _unsupported(where, f"its encoder's output columns are unknown ({exc})") from exc
    first = [c[0] for c in categories]
    blocks: list[str] = []
    width = 0
    for j, name in enumerate(names):
        known = categories[j]
        if not all(isinstance(c, str) for c in known):
            raise _unsupported(where, f"feature {name!r} has non-text categories")
        if MISSING_STRING in known:
            raise _unsupported(
                where, f"feature {name!r} has the empty string as a category (it marks missing)"
            )
        fill = fills[j]
        if not isinstance(fill, str):
            raise _unsupported(where, f"feature {name!r} has no fill value for missing values")
        columns = [
            i
            for i, n in enumerate(out_names)
            if n == placeholders[j] or n.startswith(placeholders[j] + "_")
        ]
        if not columns or columns != list(range(columns[0], columns[0] + len(columns))):
            raise _unsupported(where, f"cannot find the encoder's columns of {name!r}")
        values = [*known, fill, _UNKNOWN]
        probe = np.empty((len(values), len(names)), dtype=object)
        probe[:] = first
        probe[:, j] = values
        try:
            with warnings.catch_warnings():  # "unknown categories ... encoded as all zeros"
                warnings.simplefilter("ignore", UserWarning)
                out = encoder.transform(probe)
                encoded = np.asarray(out.toarray() if hasattr(out, "toarray") else out, np.float64)
        except ValueError as exc:
            raise ServingError(
                f"{where} cannot be exported: its encoder refuses categories unseen in training "
                f"({exc}), which an ONNX graph cannot mirror. Hint: train with "
                "model.preprocessing.unknown: ignore",
                status=409,
            ) from exc
        table = encoded[:, columns[0] : columns[0] + len(columns)].astype(np.float32)
        if not np.array_equal(table.astype(np.float64), encoded[:, columns]):
            raise _unsupported(where, f"the encoding of {name!r} is not exact in float32")
        ids = builder.node(
            "LabelEncoder",
            [name],
            domain="ai.onnx.ml",
            keys_strings=[*known, MISSING_STRING],
            values_int64s=[*range(len(known)), len(known)],
            default_int64=len(known) + 1,
        )
        flat = builder.node("Reshape", [ids, builder.constant(np.array([-1], dtype=np.int64))])
        blocks.append(builder.node("Gather", [builder.constant(table), flat], axis=0))
        width += len(columns)
    out = builder.node("Concat", blocks, axis=1) if len(blocks) > 1 else blocks[0]
    return out, width


# -- the estimator ------------------------------------------------------------------------------
def _convert_estimator(estimator: Any, width: int, task: str, where: str) -> Any:
    try:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError as exc:
        raise MissingExtraError(exc.name or "skl2onnx", "onnx") from exc
    options = {id(estimator): {"zipmap": False}} if task == "classification" else None
    name = f"{type(estimator).__module__}.{type(estimator).__name__}"
    try:
        with warnings.catch_warnings():
            # skl2onnx 1.20 hands protobuf Python bools for int attributes of tree ensembles
            # (nodes_missing_value_tracks_true); protobuf 6 warns, and accepts them
            warnings.filterwarnings(
                "ignore", message=r".*Expected an int, got a boolean", category=DeprecationWarning
            )
            return convert_sklearn(
                estimator,
                initial_types=[("X", FloatTensorType([None, width]))],
                options=options,
                target_opset=dict(OPSET),
            )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ServingError(
            f"{where} cannot be exported: skl2onnx cannot convert its estimator {name}: "
            f"{type(exc).__name__}: {first}",
            status=409,
        ) from exc


def _rename(graph: Any, *, inputs: Mapping[str, str], outputs: Sequence[str]) -> Any:
    """A copy of ``graph`` whose names are prefixed ``est/`` (so no feature name can clash),
    its input renamed per ``inputs`` and its outputs named ``outputs``."""
    from onnx import GraphProto

    out = GraphProto()
    out.CopyFrom(graph)
    names: dict[str, str] = dict(inputs)
    for value, new in zip(out.output, outputs, strict=False):
        names[value.name] = new

    def rename(name: str) -> str:
        return name if not name else names.setdefault(name, "est/" + name)

    for node in out.node:
        node.name = "est/" + node.name if node.name else node.name
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    for tensor in out.initializer:
        tensor.name = rename(tensor.name)
    for value in (*out.input, *out.output, *out.value_info):
        value.name = rename(value.name)
    del out.output[len(outputs) :]
    return out


# -- building -----------------------------------------------------------------------------------
class _Builder:
    """Nodes and constants with unique ``kyklos/...`` names."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"kyklos/{stem}{self._count}"

    def constant(self, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self._name("const")
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(
        self,
        op: str,
        inputs: Sequence[str],
        outputs: Sequence[str] | None = None,
        *,
        domain: str = "",
        **attrs: Any,
    ) -> str:
        from onnx import helper

        targets = list(outputs) if outputs is not None else [self._name(op.lower())]
        self.nodes.append(
            helper.make_node(
                op, list(inputs), targets, name=self._name(op), domain=domain or None, **attrs
            )
        )
        return targets[0]


def _unsupported(where: str, what: str) -> ServingError:
    return ServingError(
        f"{where} cannot be exported to ONNX: {what}. kyklos exports the models it trains "
        "(imputation, scaling, one-hot or ordinal encoding, then one estimator skl2onnx converts)",
        status=409,
    )
