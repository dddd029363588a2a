"""The fitted preprocessing of kyklos's pipelines, replayed on numpy arrays (no pandas, no sklearn
dispatch), checked against scikit-learn before it is used.

A kyklos model is ``Pipeline([("preprocess", ColumnTransformer), ("model", estimator)])`` (see
:func:`kyklos.pipeline.train.build_model`). Through scikit-learn, one call of its
``ColumnTransformer`` costs ~2-4 ms whatever the row count (a DataFrame, column selection,
input checks in every step): more than the trees. :func:`compile_preprocess` turns the *fitted*
transformer into plain array operations:

- numeric block: stack the columns, put each imputer statistic where a value is NaN, then
  ``(x - mean_) / scale_`` exactly as ``StandardScaler.transform`` computes it;
- categorical block: one lookup table per column, built by asking the fitted categorical
  pipeline itself what it outputs for every known category, for a missing value and for an
  unseen one (so ``infrequent_if_exist``, ``__missing__`` and ordinal codes come out as they
  would through scikit-learn).

Anything else (another step, another transformer, an imputer that drops a column, an estimator
fitted on named columns) is not compiled and the model keeps the scikit-learn path.
:func:`compile_preprocess` returns a compiled transform only when it reproduces
``ColumnTransformer.transform`` bit for bit on probe rows covering every category, missing and
unknown values. At predict time an input it cannot map (an unknown category when the encoder
refuses unknowns) makes :meth:`CompiledPreprocess.transform` return None, and the caller takes the
scikit-learn path for that call, with scikit-learn's own behaviour.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CompiledPreprocess", "compile_preprocess"]

log = logging.getLogger("kyklos.serving")

_UNSEEN = "\x00kyklos-unseen-category\x00"


@dataclass(frozen=True)
class _NumericBlock:
    names: tuple[str, ...]
    out: slice
    fill: np.ndarray | None  # imputer statistics (None: no imputer)
    mean: np.ndarray | None
    scale: np.ndarray | None


@dataclass(frozen=True)
class _CategoricalColumn:
    name: str
    lookup: dict[Any, int]  # category -> row of ``table``
    missing: int  # row of ``table`` for a missing value
    unseen: int  # row for a category never seen in training; -1: the encoder refuses it
    table: np.ndarray  # (rows, width) float64: the encoder's output for that input
    out: slice  # where this column's output goes in the transformed matrix


class CompiledPreprocess:
    """The fitted ``ColumnTransformer`` of a kyklos pipeline as numpy operations."""

    def __init__(
        self,
        width: int,
        numeric: Sequence[_NumericBlock],
        categorical: Sequence[_CategoricalColumn],
    ) -> None:
        self.width = width
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)

    def transform(self, columns: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """The transformed matrix for validated columns (float64 numeric with NaN for missing,
        object categorical with None for missing), or None when scikit-learn must decide."""
        first = columns[next(iter(columns))]
        n = len(first)
        out = np.empty((n, self.width), dtype=np.float64)
        for block in self.numeric:
            part = out[:, block.out]
            # one copy of the block's columns (per-column assignments cost ~1 µs each)
            part.T[...] = [columns[name] for name in block.names]
            if block.fill is not None:
                missing = np.isnan(part)
                if missing.any():
                    rows, cols = np.nonzero(missing)
                    part[rows, cols] = block.fill[cols]
            if block.mean is not None:
                part -= block.mean
            if block.scale is not None:
                part /= block.scale
        for column in self.categorical:
            lookup = column.lookup
            missing_row = column.missing
            unseen = column.unseen
            if n == 1:  # one request's row: plain indexing, no index array
                value = columns[column.name].item(0)
                row = missing_row if value is None else lookup.get(value, unseen)
                if row < 0:
                    return None
                out[0, column.out] = column.table[row]
                continue
            index = np.empty(n, dtype=np.intp)
            for i, value in enumerate(columns[column.name].tolist()):
                row = missing_row if value is None else lookup.get(value, unseen)
                if row < 0:
                    return None
                index[i] = row
            out[:, column.out] = column.table[index]
        return out


def compile_preprocess(model: Any, features: Sequence[Any]) -> CompiledPreprocess | None:
    """A :class:`CompiledPreprocess` of ``model`` (a fitted kyklos pipeline) that reproduces its
    ``ColumnTransformer`` exactly on probe rows; None when the pipeline has another shape or the
    probe disagrees."""
    try:
        compiled = _compile(model)
        if compiled is None:
            return None
        if not _agrees(model, compiled, features):
            log.warning("the numpy preprocessing disagrees with scikit-learn: not used")
            return None
        return compiled
    except Exception as exc:  # an unexpected pipeline: scikit-learn keeps serving it
        log.debug("preprocessing not compiled: %s: %s", type(exc).__name__, exc)
        return None


def _compile(model: Any) -> CompiledPreprocess | None:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    steps = getattr(model, "steps", None)
    if not isinstance(model, Pipeline) or not steps or len(steps) != 2:
        return None
    preprocess = steps[0][1]
    estimator = steps[1][1]
    if not isinstance(preprocess, ColumnTransformer) or hasattr(estimator, "feature_names_in_"):
        return None
    if getattr(preprocess, "_sklearn_output_config", {}).get("transform") not in (None, "default"):
        return None
    numeric: list[_NumericBlock] = []
    categorical: list[_CategoricalColumn] = []
    width = 0
    for label, transformer, cols in preprocess.transformers_:
        out = preprocess.output_indices_[label]
        width = max(width, out.stop)
        if transformer == "drop" or out.stop == out.start:
            continue
        if not isinstance(transformer, Pipeline) or not isinstance(cols, list):
            return None
        names = tuple(str(c) for c in cols)
        first = transformer.steps[0][1]
        if not isinstance(first, FunctionTransformer) or first.inverse_func is not None:
            return None
        dtype = (first.kw_args or {}).get("dtype")
        if label == "num" and dtype == "float64":
            fill = mean = scale = None
            for _, step in transformer.steps[1:]:
                if isinstance(step, SimpleImputer) and fill is None and mean is None:
                    stats = np.asarray(step.statistics_, dtype=np.float64)
                    if (
                        step.add_indicator
                        or not np.isfinite(stats).all()
                        or len(stats) != len(names)
                    ):
                        return None
                    if not (
                        isinstance(step.missing_values, float) and np.isnan(step.missing_values)
                    ):
                        return None
                    fill = stats
                elif isinstance(step, StandardScaler) and mean is None and scale is None:
                    mean = None if step.mean_ is None else np.asarray(step.mean_, dtype=np.float64)
                    scale = (
                        None if step.scale_ is None else np.asarray(step.scale_, dtype=np.float64)
                    )
                else:
                    return None
            if out.stop - out.start != len(names):
                return None
            numeric.append(_NumericBlock(names, out, fill, mean, scale))
        elif label == "cat" and dtype is object:
            probed = _probe_categorical(transformer, names, out)
            if probed is None:
                return None
            categorical.extend(probed)
        else:
            return None
    if not numeric and not categorical:
        return None
    return CompiledPreprocess(width, numeric, categorical)


def _probe_categorical(
    pipeline: Any, names: tuple[str, ...], out: slice
) -> list[_CategoricalColumn] | None:
    """Ask the fitted categorical pipeline what it outputs for each category of each column."""
    import pandas as pd

    encoder = pipeline.steps[-1][1]
    categories = getattr(encoder, "categories_", None)
    if categories is None or len(categories) != len(names):
        return None
    index_names = [str(i) for i in range(len(names))]
    owners = [int(str(n).split("_", 1)[0]) for n in encoder.get_feature_names_out(index_names)]
    if len(owners) != out.stop - out.start or owners != sorted(owners):
        return None
    base = [_first_string(c) for c in categories]
    columns: list[_CategoricalColumn] = []
    for j, name in enumerate(names):
        known = [str(v) for v in categories[j] if isinstance(v, str)]
        values: list[Any] = [*known, None, _UNSEEN]
        frame = pd.DataFrame({n: [base[k]] * len(values) for k, n in enumerate(names)})
        frame[name] = pd.Series(values, dtype=object)
        block = [k for k, owner in enumerate(owners) if owner == j]
        start, stop = block[0] + out.start, block[-1] + out.start + 1
        if stop - start != len(block):
            return None
        try:
            table = _quiet_transform(pipeline, frame)[:, block]
            unseen = len(values) - 1
        except ValueError:  # the encoder refuses unseen categories: leave them to scikit-learn
            table = _quiet_transform(pipeline, frame.iloc[:-1])[:, block]
            unseen = -1
        lookup = {value: i for i, value in enumerate(known)}
        columns.append(
            _CategoricalColumn(name, lookup, len(known), unseen, table, slice(start, stop))
        )
    return columns


def _first_string(values: Any) -> str:
    for value in values:
        if isinstance(value, str):
            return value
    return _UNSEEN


def _agrees(model: Any, compiled: CompiledPreprocess, features: Sequence[Any]) -> bool:
    """Whether ``compiled`` gives exactly what scikit-learn gives on probe rows: every known
    category, a missing and an unseen one per categorical column; typical, zero, negative,
    large and missing numbers."""
    import pandas as pd

    preprocess = model.steps[0][1]
    rows = 8
    for column in compiled.categorical:
        rows = max(rows, len(column.lookup) + 2)
    numbers = np.array([0.0, 1.0, -1.0, 1e6, -3.5, np.nan, 0.25, 1234.5], dtype=np.float64)
    columns: dict[str, np.ndarray] = {}
    for block in compiled.numeric:
        for j, name in enumerate(block.names):
            columns[name] = np.resize(np.roll(numbers, j), rows)
    for column in compiled.categorical:
        cats: list[Any] = list(column.lookup)
        extra: list[Any] = [None] + ([_UNSEEN] if column.unseen >= 0 else [])
        cycle = cats + extra
        columns[column.name] = np.array([cycle[i % len(cycle)] for i in range(rows)], dtype=object)
    ours = compiled.transform(columns)
    if ours is None:
        return False
    order = getattr(model, "feature_names_in_", None)
    names = [str(n) for n in order] if order is not None else [f.name for f in features]
    frame = pd.DataFrame({n: columns[n] for n in names}, copy=False)
    theirs = _quiet_transform(preprocess, frame)
    return theirs.shape == ours.shape and bool(np.array_equal(theirs, ours, equal_nan=True))


def _quiet_transform(transformer: Any, frame: Any) -> np.ndarray:
    """``transformer.transform(frame)`` without the warning an encoder gives for the unseen
    category that the probe sends on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Found unknown categories", category=UserWarning)
        return np.asarray(transformer.transform(frame), dtype=np.float64)
