"""A registered model version, loaded for serving: its features and a fast ``predict``.

:func:`load_version` resolves a reference (``"champion"``, ``3``, ``"v3"``, ``"latest"``) in
the project's registry, locates the version's files through the registry's tracker, refuses them
when their digest differs from the hash recorded at registration, and unpickles the scikit-learn
``Pipeline`` directly from the local folder (cloudpickle, as it was saved; never through a
``models:/`` URI, which MLflow resolves through its process-wide tracking URI, and without
importing MLflow when the model is pickled).

:meth:`LoadedModel.predict` is the hot path: numpy columns in (numeric ``float64`` with NaN for
missing, categorical ``object`` with None for missing), numpy out. For kyklos's own pipelines the
fitted ``ColumnTransformer`` is replayed on numpy arrays (:mod:`kyklos.serving.compiled`, used
only when it reproduces scikit-learn bit for bit at load) and the matrix goes straight to the
estimator; otherwise one pandas DataFrame is built per call, with ``copy=False``, in the order
the pipeline was fitted with. Classifiers answer with one ``predict_proba`` call; the label
follows from the score and the project's decision threshold (``evaluate.threshold``), exactly as
the evaluation computed it.

Measured on the flights model (HistGradientBoosting, 22 features, 2 cores under load from other
processes): through scikit-learn and pandas one call costs 2.4-8 ms whatever the batch size, most
of it in the ``ColumnTransformer``; with the numpy preprocessing ~1.3 ms for 1 row and ~1.4 ms
for 64 rows, nearly all of it the trees. Batching is what pays.

A HistGradientBoosting estimator behind that numpy preprocessing is itself evaluated with numpy
for batches of up to :data:`kyklos.serving.trees.MAX_ROWS` rows (64), when it matches
scikit-learn on probe rows at load (``trees_reason`` says why not otherwise): ~40 µs for one
row through ``predict`` instead of ~0.5 ms (flights model, one OpenMP thread).

When the version has an ONNX export (``kyklos models export vN --format onnx``) that passes its
checks at load, ``predict`` hands the columns to onnxruntime instead (``runtime`` is then
``"onnx"``; see :mod:`kyklos.serving.onnx_runtime`); ``serve.runtime`` chooses.

Predictions run with one OpenMP/BLAS thread: scikit-learn's OpenMP threads fight the server
(and each other) for the cores. The limit is set once per calling thread (threadpoolctl costs
~3 ms per call as a context manager, more than a prediction).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from kyklos.errors import ConfigError, ServingError

if TYPE_CHECKING:
    from kyklos.config import Project
    from kyklos.registry import ModelVersion
    from kyklos.serving.trees import CompiledTrees

__all__ = ["FeatureSpec", "LoadedModel", "load_version"]

FeatureKind = Literal["numeric", "categorical"]

_thread_state = threading.local()


@dataclass(frozen=True)
class FeatureSpec:
    """One input feature of a model version.

    ``nullable`` is True when the training data had missing values in the column (or when
    kyklos cannot tell); ``categories`` are the categories the fitted encoder knows (None for
    numeric features, or when they are not known).
    """

    name: str
    kind: FeatureKind
    nullable: bool
    categories: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "nullable": self.nullable,
            "categories": list(self.categories) if self.categories is not None else None,
        }


class LoadedModel:
    """A model version ready to predict: name, version, task, features, classes, hash."""

    def __init__(
        self,
        *,
        name: str,
        version: int,
        task: str,
        features: Sequence[FeatureSpec],
        model: Any,
        model_hash: str,
        threshold: float = 0.5,
    ) -> None:
        self.name = name
        self.version = int(version)
        self.task = task
        self.features: tuple[FeatureSpec, ...] = tuple(features)
        self.model_hash = model_hash
        self.threshold = float(threshold)
        self._model = model
        fitted = getattr(model, "feature_names_in_", None)
        self._order: tuple[str, ...] = (
            tuple(str(n) for n in fitted)
            if fitted is not None
            else tuple(f.name for f in self.features)
        )
        classes = getattr(model, "classes_", None) if task == "classification" else None
        self.classes: tuple[Any, ...] | None = (
            tuple(c.item() if hasattr(c, "item") else c for c in classes)
            if classes is not None
            else None
        )
        self._proba = self.classes is not None and hasattr(model, "predict_proba")
        from kyklos.serving.compiled import compile_preprocess

        self._compiled = compile_preprocess(model, self.features)
        self._estimator: Any = model.steps[-1][1] if self._compiled is not None else model
        #: why the numpy trees (kyklos.serving.trees) do not serve small batches, if they do not
        self.trees_reason: str | None = "the preprocessing is not replayed in numpy"
        self._trees: CompiledTrees | None = None
        if self._compiled is not None:
            from kyklos.serving.trees import compile_trees

            self._trees, self.trees_reason = compile_trees(self._estimator)
        self._numeric_classes: np.ndarray | None = None
        if self.classes is not None:
            try:
                self._numeric_classes = np.asarray(self.classes, dtype=np.float64)
            except (TypeError, ValueError):
                self._numeric_classes = None  # string labels: predictions are class indices
        #: ``"onnx"`` when an ONNX export serves (see kyklos.serving.onnx_runtime), else sklearn
        self.runtime = "sklearn"
        self.runtime_reason: str | None = None  # why not onnx, when an export was looked for
        self.parity: dict[str, Any] | None = None  # onnx vs sklearn on the export's sample
        self._session: Any = None

    def __repr__(self) -> str:
        return f"LoadedModel({self.name!r}, v{self.version}, {self.task}, {len(self.features)} features)"

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "model_hash": self.model_hash,
            "threshold": self.threshold,
            "classes": list(self.classes) if self.classes is not None else None,
            "features": [f.to_dict() for f in self.features],
            "runtime": self.runtime,
            "runtime_reason": self.runtime_reason,
            "parity": self.parity,
        }

    def use_onnx(self, session: Any, *, parity: Mapping[str, Any]) -> None:
        """Predict through ``session`` (an :class:`~kyklos.serving.onnx_runtime.OnnxSession`
        whose ``parity`` with this model was checked) from now on."""
        self.parity = dict(parity)
        self.runtime_reason = None
        self._session = session
        self.runtime = "onnx"

    def use_sklearn(self, reason: str | None = None) -> None:
        """Predict with scikit-learn; ``reason`` says why not with onnxruntime."""
        self._session = None
        self.runtime = "sklearn"
        self.runtime_reason = reason
        self.parity = None

    def predict(
        self, columns: Mapping[str, np.ndarray], *, runtime: str | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(prediction, score)`` for validated numpy columns (one array per feature).

        ``prediction`` is float64: the class label for a classifier with numeric labels (the
        index into :attr:`classes` when labels are strings), the value for a regressor.
        ``score`` is the positive-class probability of a binary classifier, the top class's
        probability of a multiclass one, and None for a regressor. ``runtime="sklearn"``
        bypasses onnxruntime (parity checks).
        """
        session = self._session
        if session is not None and runtime != "sklearn":  # numpy straight to onnxruntime
            return self.answer(session.run(columns))
        _limit_threads()
        model: Any = self._model
        try:
            data: Any = None
            if self._compiled is not None:  # numpy preprocessing (see kyklos.serving.compiled)
                data = self._compiled.transform(columns)
                model = self._estimator
            if data is None:
                import pandas as pd

                model = self._model
                data = pd.DataFrame({name: columns[name] for name in self._order}, copy=False)
        except KeyError as exc:
            raise ServingError(
                f"feature {exc.args[0]!r} is missing from the input of {self.name} v{self.version}",
                field=str(exc.args[0]),
                status=422,
            ) from exc
        trees = self._trees
        if trees is not None and model is self._estimator and data.shape[0] <= trees.max_rows:
            outputs = trees.predict_proba(data) if self._proba else trees.predict(data)
            if outputs is not None:  # None: an input scikit-learn must judge
                return self.answer(np.asarray(outputs, dtype=np.float64))
        if not self._proba:
            return np.asarray(model.predict(data), dtype=np.float64), None
        return self.answer(np.asarray(model.predict_proba(data), dtype=np.float64))

    def answer(self, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(prediction, score)`` from raw outputs: class probabilities ``[N, classes]`` of a
        classifier (label from the project's threshold), predictions ``[N]`` of a regressor."""
        if not self._proba:
            return outputs, None
        proba = outputs
        if proba.shape[1] == 2:
            score = np.ascontiguousarray(proba[:, 1])
            index = (score >= self.threshold).astype(np.intp)
        else:
            index = proba.argmax(axis=1)
            score = proba[np.arange(proba.shape[0]), index]
        if self._numeric_classes is not None:
            return self._numeric_classes[index], score
        return index.astype(np.float64), score


def _limit_threads() -> None:
    """One OpenMP/BLAS thread for predictions made on this thread (set once per thread)."""
    if getattr(_thread_state, "limited", False):
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    _thread_state.limited = True


# -- loading --------------------------------------------------------------------------------------
def load_version(
    project: Project, ref: str | int = "champion", *, runtime: str | None = None
) -> LoadedModel:
    """Load the model version ``ref`` of ``project`` for serving.

    ``runtime`` (default ``serve.runtime``, ``auto``): ``auto`` serves the version's ONNX export
    with onnxruntime when it passes its checks (:func:`kyklos.serving.onnx_runtime.use_onnx`)
    and scikit-learn otherwise, recording why; ``onnx`` raises instead of falling back;
    ``sklearn`` never looks for an export.

    Raises :class:`~kyklos.errors.NotFoundError` when ``ref`` names no version, and
    :class:`~kyklos.errors.ServingError` (status 409) when the version's files changed since it
    was registered, or (status 500) when they cannot be read.
    """
    runtime = runtime or getattr(project.config.serve, "runtime", "auto")
    if runtime not in {"auto", "sklearn", "onnx"}:
        raise ConfigError(f"unknown runtime {runtime!r}; choose from auto, sklearn, onnx")
    from kyklos.registry import ModelRegistry, directory_digest

    registry = ModelRegistry.for_project(project)
    version = registry.get(ref)
    with registry.tracker.model_files(version.model_uri) as folder:
        found = directory_digest(folder)
        if found != version.model_hash:
            raise ServingError(
                f"model artifact of v{version.version} changed since registration: recorded "
                f"{version.model_hash}, found {found} (in {folder}). Refusing to load it. "
                "Hint: restore the original files, or retrain and register a new version",
                field="model_hash",
                status=409,
            )
        model = _unpickle(folder, version.version)
    task = _task_of(version, model)
    features = feature_specs(version, model)
    loaded = LoadedModel(
        name=version.model_name,
        version=version.version,
        task=task,
        features=features,
        model=model,
        model_hash=version.model_hash,
        threshold=project.config.evaluate.threshold,
    )
    if runtime != "sklearn":
        from kyklos.serving.onnx_runtime import use_onnx

        use_onnx(project, version, loaded, required=runtime == "onnx")
    return loaded


def _unpickle(folder: Path, version: int) -> Any:
    """The scikit-learn model saved in an MLflow model folder."""
    import yaml

    try:
        meta = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ServingError(
            f"model v{version}: cannot read {folder / 'MLmodel'}: {exc}", status=500
        ) from exc
    flavour = (meta.get("flavors") or {}).get("sklearn") or {}
    fmt = flavour.get("serialization_format", "cloudpickle")
    pickled = flavour.get("pickled_model")
    if pickled and fmt in {"cloudpickle", "pickle"}:
        import cloudpickle

        try:
            with (folder / str(pickled)).open("rb") as fh:
                return cloudpickle.load(fh)
        except Exception as exc:
            raise ServingError(
                f"model v{version}: cannot unpickle {folder / str(pickled)}: "
                f"{type(exc).__name__}: {exc}. Hint: the model needs the package versions it "
                "was trained with (see requirements.txt next to it)",
                status=500,
            ) from exc
    try:  # other formats (skops, ...): MLflow's own loader, from the local folder
        from kyklos.registry.tracking import _mlflow

        return _mlflow(flavour=True).sklearn.load_model(str(folder))
    except Exception as exc:
        raise ServingError(
            f"model v{version}: MLflow cannot load {folder}: {type(exc).__name__}: {exc}",
            status=500,
        ) from exc


def _task_of(version: ModelVersion, model: Any) -> str:
    task = (version.signature or {}).get("task")
    if task in {"classification", "regression"}:
        return str(task)
    return "classification" if hasattr(model, "classes_") else "regression"


def feature_specs(version: ModelVersion, model: Any) -> tuple[FeatureSpec, ...]:
    """The features of ``version``: names from its signature (else the fitted pipeline), kinds
    and nullability from its reference profile, categories from the fitted encoder."""
    fitted = getattr(model, "feature_names_in_", None)
    names = [str(n) for n in (version.signature or {}).get("features") or []]
    if not names and fitted is not None:
        names = [str(n) for n in fitted]
    if not names:
        raise ServingError(
            f"model v{version.version} records no feature names (no signature, and the model "
            "was not fitted on named columns). Hint: retrain it with `kyklos run`",
            status=500,
        )
    profiled: dict[str, Mapping[str, Any]] = {}
    profile = version.profile or {}
    for column in (profile.get("features") or {}).get("columns") or []:
        if isinstance(column, Mapping) and "name" in column:
            profiled[str(column["name"])] = column
    transformer_kinds, encoder_categories = _pipeline_columns(model)
    specs = []
    for name in names:
        column = profiled.get(name)
        kind: FeatureKind
        if column is not None:
            kind = "categorical" if column.get("kind") == "categorical" else "numeric"
        else:
            kind = transformer_kinds.get(name, "numeric")
        nullable = bool(column.get("missing", 1)) if column is not None else True
        categories: tuple[str, ...] | None = None
        if kind == "categorical":
            categories = encoder_categories.get(name)
            if categories is None and column is not None and not column.get("other"):
                frequencies = column.get("frequencies") or {}
                categories = tuple(sorted(str(k) for k in frequencies)) or None
        specs.append(FeatureSpec(name=name, kind=kind, nullable=nullable, categories=categories))
    return tuple(specs)


def _pipeline_columns(model: Any) -> tuple[dict[str, FeatureKind], dict[str, tuple[str, ...]]]:
    """Kinds (``num``/``cat`` transformers) and encoder categories of kyklos's fitted
    ``Pipeline([("preprocess", ColumnTransformer), ...])``; empty for other models."""
    kinds: dict[str, FeatureKind] = {}
    categories: dict[str, tuple[str, ...]] = {}
    steps = getattr(model, "named_steps", None) or {}
    transformer = steps.get("preprocess") if isinstance(steps, Mapping) else None
    for entry in getattr(transformer, "transformers_", None) or []:
        label, inner, cols = entry
        if not isinstance(cols, list | tuple) or label not in {"num", "cat"}:
            continue
        for col in cols:
            kinds[str(col)] = "categorical" if label == "cat" else "numeric"
        encoder = getattr(inner, "named_steps", {}).get("encode") if label == "cat" else None
        known = getattr(encoder, "categories_", None)
        if known is None or len(known) != len(cols):
            continue
        for col, values in zip(cols, known, strict=True):
            categories[str(col)] = tuple(
                str(v) for v in values if isinstance(v, str) and v != "__missing__"
            )
    return kinds, categories
