"""Export a registered model version to ONNX, after checking it against scikit-learn.

:func:`export_onnx` loads the version (hash-checked, scikit-learn), builds its graph
(:mod:`kyklos.serving.onnx_graph`), runs it with onnxruntime next to scikit-learn on a sample of
real rows, the version's own training dataset version after the project's user steps, and
stores three files in the artifact store (layout in :mod:`kyklos.serving.onnx_runtime`):
``sample.parquet``, then ``model.onnx``, then ``parity.json``. Each is written atomically; the
record, written last, is what makes the export exist.

When parity fails the tolerance nothing is written and a
:class:`~kyklos.errors.ServingError` names the version and the figures.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kyklos._version import __version__
from kyklos.errors import DataError, MissingExtraError, ServingError
from kyklos.serving.onnx_runtime import (
    EXPORT_FORMAT,
    OnnxSession,
    Parity,
    Tolerance,
    columns_from_table,
    compare,
    export_keys,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from kyklos.config import Project
    from kyklos.registry import ModelVersion
    from kyklos.serving.model import FeatureSpec

__all__ = ["DEFAULT_SAMPLE_ROWS", "OnnxExport", "export_onnx"]

#: Rows of the training data parity is checked on (and re-checked on at every load).
DEFAULT_SAMPLE_ROWS = 2000


@dataclass(frozen=True)
class OnnxExport:
    """What ``kyklos models export --format onnx`` made."""

    model_name: str
    version: int
    model_hash: str
    dataset_version_id: str
    onnx_uri: str
    record_uri: str
    sample_uri: str
    onnx_sha256: str
    onnx_bytes: int
    parity: Parity
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "version": self.version,
            "format": "onnx",
            "model_hash": self.model_hash,
            "dataset_version_id": self.dataset_version_id,
            "onnx_uri": self.onnx_uri,
            "record_uri": self.record_uri,
            "sample_uri": self.sample_uri,
            "onnx_sha256": self.onnx_sha256,
            "onnx_bytes": self.onnx_bytes,
            "parity": self.parity.to_dict(),
            "seconds": round(self.seconds, 3),
        }


def export_onnx(
    project: Project,
    ref: str | int = "champion",
    *,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    tolerance: Tolerance | None = None,
    seed: int = 0,
) -> OnnxExport:
    """Export version ``ref`` of ``project``'s model to ONNX (see the module docstring).

    Raises :class:`~kyklos.errors.MissingExtraError` without the ``onnx`` extra,
    :class:`~kyklos.errors.NotFoundError` for an unknown version, and
    :class:`~kyklos.errors.ServingError` (409) when the model cannot be translated or parity
    fails ``tolerance``.
    """
    _require_extra()
    from kyklos.registry import ModelRegistry
    from kyklos.serving.model import load_version
    from kyklos.serving.onnx_graph import build_onnx

    started = time.perf_counter()
    if sample_rows < 1:
        raise DataError(f"sample_rows must be at least 1, got {sample_rows}")
    tolerance = tolerance or Tolerance()
    version = ModelRegistry.for_project(project).get(ref)
    where = f"{version.model_name} v{version.version}"
    model = load_version(project, version.version, runtime="sklearn")  # hash-checked
    if model.task == "classification" and model.classes is None:  # pragma: no cover
        raise ServingError(f"{where} cannot be exported: it has no classes", status=409)
    graph = build_onnx(
        model._model,
        model.features,
        task=model.task,
        where=where,
        metadata={
            "kyklos.model": version.model_name,
            "kyklos.version": str(version.version),
            "kyklos.model_hash": version.model_hash,
            "kyklos.missing_string": '""',
        },
    )
    dataset_id, sample = training_sample(project, version, model.features, sample_rows, seed)
    session = OnnxSession(graph.model, model.features, task=model.task, where=where)
    parity = compare(model, session, columns_from_table(sample, model.features), tolerance)
    if not parity.passed:
        raise ServingError(
            f"ONNX export of {where} refused: onnxruntime disagrees with scikit-learn on "
            f"{parity.rows:,} rows of its training data ({dataset_id}): "
            f"{'; '.join(parity.failures)}. Nothing was written",
            status=409,
        )
    return _store(project, version, graph, sample, parity, dataset_id, started=started, seed=seed)


def _require_extra() -> None:
    """MissingExtraError (with the pip line) before any work when the onnx extra is missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import skl2onnx  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(exc.name or "skl2onnx", "onnx") from exc


def training_sample(
    project: Project,
    version: ModelVersion,
    features: tuple[FeatureSpec, ...],
    rows: int,
    seed: int,
) -> tuple[str, pa.Table]:
    """Up to ``rows`` random rows of the version's training dataset version, after the project's
    user steps, as a table of the model's features (float64; strings with nulls)."""
    import pyarrow as pa

    from kyklos.data import DatasetStore
    from kyklos.serving.batch import UserStepError, run_user_steps, user_steps

    where = f"{version.model_name} v{version.version}"
    if not version.dataset_version_id:
        raise ServingError(
            f"{where} records no training dataset version, so there are no real rows to check "
            "ONNX parity on. Hint: retrain it with `kyklos run`",
            status=409,
        )
    table = DatasetStore.for_project(project).load(version.dataset_version_id)
    if table.num_rows > rows:
        picked = np.random.default_rng(seed).choice(table.num_rows, size=rows, replace=False)
        table = table.take(pa.array(np.sort(picked)))
    try:
        frame = run_user_steps(user_steps(project), table.to_pandas())
    except UserStepError as exc:
        raise DataError(f"{where}: {exc} (on the training sample)") from exc
    lacking = [f.name for f in features if f.name not in frame.columns]
    if lacking:
        raise DataError(
            f"{where}: the training data of {version.dataset_version_id} has no column(s) "
            f"{lacking} after the user steps; the model needs them"
        )
    arrays: dict[str, pa.Array] = {}
    for spec in features:
        series: Any = frame[spec.name]
        if spec.kind == "numeric":
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            arrays[spec.name] = pa.array(values, type=pa.float64())
        else:
            values = series.to_numpy(dtype=object, na_value=None)
            arrays[spec.name] = pa.array(
                [None if v is None else str(v) for v in values], type=pa.string()
            )
    return str(version.dataset_version_id), pa.table(arrays)


def _store(
    project: Project,
    version: ModelVersion,
    graph: Any,
    sample: pa.Table,
    parity: Parity,
    dataset_id: str,
    *,
    started: float,
    seed: int,
) -> OnnxExport:
    import onnx
    import onnxruntime
    import pyarrow.parquet as pq
    import skl2onnx
    import sklearn

    from kyklos.store import ArtifactStore

    store = ArtifactStore(project.artifacts_uri)
    keys = export_keys(version.model_name, version.version)
    buffer = io.BytesIO()
    pq.write_table(sample, buffer)
    sample_bytes = buffer.getvalue()
    onnx_sha = hashlib.sha256(graph.model).hexdigest()
    record = {
        "format": EXPORT_FORMAT,
        "model_name": version.model_name,
        "version": version.version,
        "model_hash": version.model_hash,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "onnx_sha256": onnx_sha,
        "onnx_bytes": len(graph.model),
        "sample_sha256": hashlib.sha256(sample_bytes).hexdigest(),
        "sample_rows": sample.num_rows,
        "sample_seed": seed,
        "dataset_version_id": dataset_id,
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
        "opset": graph.opset,
        "parity": parity.to_dict(),
        "tolerance": parity.tolerance.to_dict(),
        "versions": {
            "kyklos": __version__,
            "skl2onnx": skl2onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__,
            "scikit-learn": sklearn.__version__,
        },
    }
    sample_uri = store.put_bytes(keys["sample"], sample_bytes)
    onnx_uri = store.put_bytes(keys["model"], graph.model)
    record_uri = store.put_bytes(
        keys["record"], (json.dumps(record, indent=2, allow_nan=False) + "\n").encode()
    )
    return OnnxExport(
        model_name=version.model_name,
        version=version.version,
        model_hash=version.model_hash,
        dataset_version_id=dataset_id,
        onnx_uri=onnx_uri,
        record_uri=record_uri,
        sample_uri=sample_uri,
        onnx_sha256=onnx_sha,
        onnx_bytes=len(graph.model),
        parity=parity,
        seconds=time.perf_counter() - started,
    )
