"""The MLflow tracking adapter: runs, params, metrics, dataset inputs, artifacts and models.

A :class:`Tracker` talks to one tracking URI through an explicit :class:`mlflow.MlflowClient`,
never through MLflow's fluent, process-global "active run": two trainings in two threads of one
process each log to their own run. MLflow is imported on first use (``import mlflow`` costs ~1 s).

* Embedded default: ``sqlite:///<project>/.kyklos/mlflow.db`` with artifacts in a local folder
  (the experiment's ``artifact_location``); ``KYKLOS_TRACKING_URI`` points at a server instead.
* Params, metrics and tags go in one ``log_batch`` call (chunked at MLflow's batch limits), not
  one request per value.
* Datasets are real MLflow dataset inputs (name, digest, source, schema, row count): they show
  in the UI's "Dataset" column of the run.
* Models are logged as MLflow 3 "logged models" of the sklearn flavour, serialised with
  cloudpickle (skops refuses HistGradientBoosting), with an explicit signature, input example
  and pinned pip requirements (no slow inference).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from kyklos._version import __version__
from kyklos.errors import NotFoundError, RegistryError
from kyklos.registry.provenance import GitState, environment, git_state
from kyklos.store import redact_url

__all__ = [
    "SERIALIZATION_FORMAT",
    "GitState",
    "TrackedRun",
    "Tracker",
    "directory_digest",
    "environment",
    "git_state",
]

#: How models are pickled: cloudpickle accepts every scikit-learn estimator (skops, MLflow's
#: default, refuses HistGradientBoosting's tree predictors unless told to trust them).
SERIALIZATION_FORMAT = "cloudpickle"

# MLflow's limits (mlflow.utils.validation); kept here so the module imports without MLflow.
_MAX_PARAM_VALUE = 6000
_MAX_TAG_VALUE = 8000
_MAX_PARAMS_TAGS_PER_BATCH = 100
_MAX_ENTITIES_PER_BATCH = 1000
_MAX_DIGEST = 36
_MAX_INPUT_TAG_VALUE = 500

_import_lock = threading.Lock()
_mlflow_module: ModuleType | None = None
_flavour_loaded = False


@dataclass(frozen=True)
class TrackedRun:
    """One run as MLflow stores it."""

    run_id: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifact_uri: str
    status: str
    inputs: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "tags": dict(self.tags),
            "artifact_uri": self.artifact_uri,
            "status": self.status,
            "inputs": [dict(i) for i in self.inputs],
        }


class Tracker:
    """Runs of one experiment on one MLflow tracking server (or embedded store).

    ``artifact_location`` is where a newly created experiment keeps its artifacts (the embedded
    store's ``.kyklos/mlruns``); None lets the server decide. Thread-safe.
    """

    def __init__(
        self, tracking_uri: str, artifact_location: str | None = None, experiment: str = "Default"
    ) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_location = artifact_location
        self.experiment = experiment
        self._lock = threading.Lock()
        self._client: Any = None
        self._experiment_id: str | None = None

    def __repr__(self) -> str:
        return f"Tracker({redact_url(self.tracking_uri)!r}, experiment={self.experiment!r})"

    # -- connection ---------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The :class:`mlflow.MlflowClient` (tracking and registry on the same URI)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    mlflow = _mlflow()
                    if self.tracking_uri.startswith("sqlite:///"):
                        path = self.tracking_uri.removeprefix("sqlite:///")
                        if path and path != ":memory:":
                            Path(path).parent.mkdir(parents=True, exist_ok=True)
                    with self.errors("connect to"), _quiet_mlflow_imports():
                        client = mlflow.MlflowClient(
                            tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                        )
                    self._client = client
        return self._client

    @property
    def experiment_id(self) -> str:
        """The experiment's id; the experiment is created on first use."""
        if self._experiment_id is None:
            client = self.client
            with self._lock:
                if self._experiment_id is None:
                    self._experiment_id = self._get_or_create_experiment(client)
        return self._experiment_id

    def _get_or_create_experiment(self, client: Any) -> str:
        from mlflow.exceptions import MlflowException

        with self.errors("open the experiment of"):
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                try:
                    return str(
                        client.create_experiment(
                            self.experiment, artifact_location=self.artifact_location
                        )
                    )
                except MlflowException as exc:
                    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    found = client.get_experiment_by_name(self.experiment)  # created meanwhile
        if found is None:  # pragma: no cover - created and deleted between two calls
            raise RegistryError(f"MLflow experiment {self.experiment!r} vanished while opening it")
        if found.lifecycle_stage == "deleted":
            raise RegistryError(
                f"MLflow experiment {self.experiment!r} at {redact_url(self.tracking_uri)} is "
                "deleted. Hint: restore it (`mlflow experiments restore`) or set "
                "tracking.experiment in kyklos.yaml to a new name"
            )
        return str(found.experiment_id)

    # -- runs ---------------------------------------------------------------------------------
    def start_run(
        self,
        *,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        start_time: float | None = None,
    ) -> str:
        """Create a run in the experiment; return its id. ``start_time`` (epoch seconds)
        defaults to now; pass when the work began so the UI's duration covers it."""
        experiment_id = self.experiment_id
        with self.errors("start a run on"):
            run = self.client.create_run(
                experiment_id,
                start_time=int(start_time * 1000) if start_time is not None else None,
                run_name=run_name,
                tags={k: _truncate(str(v), _MAX_TAG_VALUE) for k, v in (tags or {}).items()},
            )
        return str(run.info.run_id)

    def log(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
        model_id: str | None = None,
    ) -> None:
        """Log params (stringified, truncated to MLflow's limit), metrics and tags in one batch.

        More than MLflow's batch limits (100 params, 100 tags, 1000 entities) are split into as
        few ``log_batch`` calls as the limits allow.
        """
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        param_list = [Param(str(k), _param_value(v)) for k, v in (params or {}).items()]
        tag_list = [
            RunTag(str(k), _truncate(str(v), _MAX_TAG_VALUE)) for k, v in (tags or {}).items()
        ]
        metric_list = [
            Metric(str(k), float(v), now, 0, model_id=model_id, run_id=run_id)
            for k, v in (metrics or {}).items()
        ]
        with self.errors(f"log to run {run_id} on"):
            while param_list or tag_list or metric_list:
                p = param_list[:_MAX_PARAMS_TAGS_PER_BATCH]
                t = tag_list[:_MAX_PARAMS_TAGS_PER_BATCH]
                room = _MAX_ENTITIES_PER_BATCH - len(p) - len(t)
                m = metric_list[:room]
                self.client.log_batch(run_id, metrics=m, params=p, tags=t, synchronous=True)
                param_list = param_list[len(p) :]
                tag_list = tag_list[len(t) :]
                metric_list = metric_list[len(m) :]

    def log_dataset(
        self,
        run_id: str,
        *,
        name: str,
        digest: str,
        source: str,
        n_rows: int | None = None,
        schema: Mapping[str, Any] | None = None,
        context: str = "training",
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Record a dataset version as an MLflow dataset input of the run.

        MLflow keeps at most 36 characters of a digest; the full digest is kept in the input
        tag ``kyklos.digest``. ``schema`` maps column names to type names (pandas, Arrow or
        MLflow spelling), or is already MLflow's ``{"mlflow_colspec": [...]}``.
        """
        from mlflow.entities import Dataset, DatasetInput, InputTag

        scheme = urlparse(source).scheme if "://" in source else ""
        source_type = "local" if scheme in {"", "file"} else scheme
        source_json = {"url": source} if scheme in {"http", "https"} else {"uri": source}
        entity = Dataset(
            name=name,
            digest=digest[:_MAX_DIGEST],
            source_type=source_type,
            source=json.dumps(source_json),
            schema=json.dumps(_dataset_schema(schema)) if schema is not None else None,
            profile=json.dumps({"num_rows": int(n_rows)}) if n_rows is not None else None,
        )
        input_tags = [
            InputTag("mlflow.data.context", context),
            InputTag("kyklos.digest", digest[:_MAX_INPUT_TAG_VALUE]),
        ]
        input_tags += [
            InputTag(str(k), _truncate(str(v), _MAX_INPUT_TAG_VALUE))
            for k, v in (tags or {}).items()
        ]
        with self.errors(f"log a dataset input to run {run_id} on"):
            self.client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=input_tags)])

    def log_artifacts(self, run_id: str, files: Mapping[str, bytes]) -> None:
        """Upload several in-memory files (``{"plots/roc.png": b"..."}``) in one call."""
        if not files:
            return
        with tempfile.TemporaryDirectory(prefix="kyklos-artifacts-") as tmp:
            for key, data in files.items():
                target = Path(tmp, *_relative_parts(key))
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            with self.errors(f"upload artifacts of run {run_id} to"):
                self.client.log_artifacts(run_id, tmp)

    def log_bytes(self, run_id: str, artifact_path: str, data: bytes) -> None:
        """Upload one in-memory file as ``artifact_path`` (e.g. ``plots/roc.png``)."""
        self.log_artifacts(run_id, {artifact_path: data})

    def log_json(self, run_id: str, artifact_path: str, data: Any) -> None:
        """Upload ``data`` as a JSON file (keys sorted, two-space indent)."""
        text = json.dumps(data, indent=2, sort_keys=True, default=str)
        self.log_artifacts(run_id, {artifact_path: text.encode("utf-8")})

    def log_model(
        self,
        run_id: str,
        model: Any,
        *,
        input_example: Any,
        signature_output: Any = None,
        name: str = "model",
        pip_requirements: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Log a fitted scikit-learn model of the run; return its URI (``models:/<model_id>``).

        The signature is built from ``input_example`` (a small DataFrame) and the model's output
        on it (or ``signature_output``); requirements are pinned from the classes inside the
        model unless ``pip_requirements`` is given. The run's current metrics are linked to the
        logged model, as MLflow's own ``log_model`` does, so the UI's model view shows them.
        """
        mlflow = _mlflow(flavour=True)
        import pandas as pd
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric
        from mlflow.models import Model

        from kyklos.registry.signature import model_signature
        from kyklos.registry.signature import pip_requirements as infer_requirements

        if not isinstance(input_example, pd.DataFrame):
            raise RegistryError(
                f"input_example must be a pandas DataFrame, got {type(input_example).__name__}"
            )
        output = signature_output if signature_output is not None else model.predict(input_example)
        signature = model_signature(input_example, output)
        example = input_example.copy()
        # MLflow compares the column index with a range (a pandas 3 deprecation for str indexes)
        example.columns = pd.Index([str(c) for c in example.columns], dtype=object)
        requirements = (
            list(pip_requirements) if pip_requirements is not None else infer_requirements(model)
        )
        client = self.client
        with self.errors(f"log the model of run {run_id} to"):
            run = client.get_run(run_id)
            # who and what logged it (the UI's "Created by" / "Logged from"), as MLflow's own
            # log_model does through its run-context tags
            context = {
                k: v
                for k, v in run.data.tags.items()
                if k == "mlflow.user" or k.startswith("mlflow.source.")
            }
            logged = client.create_logged_model(
                run.info.experiment_id,
                name=name,
                source_run_id=run_id,
                params=dict(run.data.params),
                tags={**context, "kyklos.version": __version__},
            )
            try:
                mlflow_model = Model(
                    artifact_path=logged.artifact_location,
                    model_uuid=logged.model_id,
                    run_id=run_id,
                    model_id=logged.model_id,
                    metadata={"kyklos_version": __version__, **(metadata or {})},
                )
                with tempfile.TemporaryDirectory(prefix="kyklos-model-") as tmp:
                    local = str(Path(tmp) / "model")
                    mlflow.sklearn.save_model(
                        model,
                        local,
                        mlflow_model=mlflow_model,
                        serialization_format=SERIALIZATION_FORMAT,
                        signature=signature,
                        input_example=example,
                        pip_requirements=requirements,
                    )
                    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
                    client.log_model_artifacts(logged.model_id, local)
                now = int(time.time() * 1000)
                # metrics that name the training dataset fill the UI's "Datasets used"
                training = [
                    item.dataset
                    for item in (run.inputs.dataset_inputs if run.inputs else []) or []
                    if any(
                        t.key == "mlflow.data.context" and t.value == "training" for t in item.tags
                    )
                ]
                dataset = training[0] if len(training) == 1 else None
                linked = [
                    Metric(
                        key,
                        value,
                        now,
                        0,
                        run_id=run_id,
                        model_id=logged.model_id,
                        dataset_name=dataset.name if dataset else None,
                        dataset_digest=dataset.digest if dataset else None,
                    )
                    for key, value in run.data.metrics.items()
                ]
                if linked:
                    client.log_batch(run_id, metrics=linked, synchronous=True)
                client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
            except BaseException:
                client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
                raise
        return f"models:/{logged.model_id}"

    def end_run(
        self, run_id: str, status: Literal["FINISHED", "FAILED", "KILLED"] = "FINISHED"
    ) -> None:
        """Mark the run as ended with ``status``."""
        with self.errors(f"end run {run_id} on"):
            self.client.set_terminated(run_id, status=status)

    def get_run(self, run_id: str) -> TrackedRun:
        """The run's params, metrics, tags, artifact URI, status and dataset inputs."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise NotFoundError(
                    f"run {run_id!r} does not exist at {redact_url(self.tracking_uri)}"
                ) from exc
            raise RegistryError(
                f"MLflow at {redact_url(self.tracking_uri)} failed to read run {run_id}: {exc.message}"
            ) from exc
        inputs = []
        for item in (run.inputs.dataset_inputs if run.inputs else []) or []:
            tags = {t.key: t.value for t in item.tags}
            inputs.append(
                {
                    "name": item.dataset.name,
                    "digest": tags.get("kyklos.digest", item.dataset.digest),
                    "source_type": item.dataset.source_type,
                    "source": item.dataset.source,
                    "context": tags.get("mlflow.data.context"),
                    "profile": json.loads(item.dataset.profile) if item.dataset.profile else None,
                }
            )
        return TrackedRun(
            run_id=run.info.run_id,
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            tags=dict(run.data.tags),
            artifact_uri=str(run.info.artifact_uri),
            status=str(run.info.status),
            inputs=tuple(inputs),
        )

    # -- model artifacts ----------------------------------------------------------------------
    @contextmanager
    def model_files(self, model_uri: str) -> Iterator[Path]:
        """A local folder with the model's files: the store's own folder when it is local,
        else a temporary download (removed on exit)."""
        location = self._model_location(model_uri)
        local = _local_dir(location)
        if local is not None:
            yield local
            return
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory(prefix="kyklos-model-") as tmp:
            with self.errors(f"download {model_uri} ({location}) from"):
                # ``location`` is the underlying artifact URI (mlflow-artifacts:/..., s3://...),
                # resolved through *this* tracker's client: MLflow resolves a ``models:/`` URI
                # through the process-wide tracking URI, which is not ours.
                path = download_artifacts(
                    artifact_uri=location, dst_path=tmp, tracking_uri=self.tracking_uri
                )
            yield Path(path)

    def model_hash(self, model_uri: str) -> str:
        """sha256 over the model's files (sorted relative paths and their contents)."""
        with self.model_files(model_uri) as folder:
            return directory_digest(folder)

    def _model_location(self, model_uri: str) -> str:
        """The artifact URI behind ``models:/<model_id>``, ``models:/<name>/<version>`` or
        ``models:/<name>@<alias>`` (any trailing path kept); other URIs unchanged."""
        if not model_uri.startswith("models:/"):
            return model_uri
        ref, _, sub = model_uri.removeprefix("models:/").partition("/")
        with self.errors(f"resolve {model_uri} on"):
            if ref.startswith("m-"):
                base = str(self.client.get_logged_model(ref).artifact_location)
            elif "@" in ref:
                name, _, alias = ref.partition("@")
                version = str(self.client.get_model_version_by_alias(name, alias).version)
                base = str(self.client.get_model_version_download_uri(name, version))
            else:
                version, _, sub = sub.partition("/")
                base = str(self.client.get_model_version_download_uri(ref, version))
        return f"{base.rstrip('/')}/{sub}" if sub else base

    # -- errors -------------------------------------------------------------------------------
    @contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Turn an MLflow failure inside the block into a RegistryError naming ``action``."""
        try:
            yield
        except Exception as exc:
            if not _is_mlflow_error(exc):
                raise
            message = getattr(exc, "message", str(exc))
            raise RegistryError(
                f"cannot {action} MLflow at {redact_url(self.tracking_uri)}: {message}"
            ) from exc


def _local_dir(location: str) -> Path | None:
    """The folder behind a ``file:`` URI or a plain path, if it exists; None for remote URIs."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif parsed.scheme == "" or (len(parsed.scheme) == 1 and location[1:3] in {":/", ":\\"}):
        path = Path(location)
    else:
        return None
    return path if path.is_dir() else None


def directory_digest(folder: str | Path) -> str:
    """sha256 over every file below ``folder``: sorted relative POSIX paths and file contents.

    Renaming, adding, removing or changing any file changes the digest.
    """
    root = Path(folder)
    digest = hashlib.sha256()
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file())
    for rel, path in files:
        digest.update(rel.encode("utf-8") + b"\0")
        with path.open("rb") as fh:
            inner = hashlib.sha256()
            while chunk := fh.read(1 << 20):
                inner.update(chunk)
        digest.update(inner.digest())
    return digest.hexdigest()


# -- helpers ----------------------------------------------------------------------------------
def _mlflow(*, flavour: bool = False) -> ModuleType:
    """``mlflow`` (and, with ``flavour``, its sklearn and pyfunc flavours), imported once."""
    global _mlflow_module, _flavour_loaded
    if _mlflow_module is None or (flavour and not _flavour_loaded):
        with _import_lock, _quiet_mlflow_imports():
            # MlflowClient.set_terminated writes "🏃 View run ... at: <url>" to *stdout* when the
            # tracking URI is a server, which breaks `kyklos ... --json`; the CLI prints the
            # run's URL itself. An explicit user setting wins.
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            import mlflow

            # MLflow logs store migrations ("Creating initial MLflow database tables...") at INFO
            # on its own handler; kyklos reports what matters itself.
            store_logger = logging.getLogger("mlflow.store.db.utils")
            if store_logger.level == logging.NOTSET:
                store_logger.setLevel(logging.WARNING)
            alembic_logger = logging.getLogger("alembic.runtime.migration")
            if alembic_logger.level == logging.NOTSET:
                alembic_logger.setLevel(logging.WARNING)

            if flavour and not _flavour_loaded:
                import mlflow.pyfunc
                import mlflow.sklearn

                logging.getLogger("mlflow.sklearn").addFilter(_PickleNotice())
                _flavour_loaded = True
            _mlflow_module = mlflow
    return _mlflow_module


@contextmanager
def _quiet_mlflow_imports() -> Iterator[None]:
    """Silence the two warnings MLflow 3 emits once while importing under SQLAlchemy 2.1 and
    pandas 3 (import-time only, never about our data)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"The ``noload`` loader strategy is deprecated",
            category=DeprecationWarning,
        )
        warnings.filterwarnings(
            "ignore", message=r".*Any type hint is inferred as AnyType", category=UserWarning
        )
        yield


class _PickleNotice(logging.Filter):
    """Drops MLflow's notice that cloudpickle is not skops: kyklos chooses it on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(
            "Saving scikit-learn models in the pickle or cloudpickle format"
        )


def _is_mlflow_error(exc: BaseException) -> bool:
    return any(cls.__name__ == "MlflowException" for cls in type(exc).__mro__)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _param_value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, Mapping | list | tuple):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    return _truncate(text, _MAX_PARAM_VALUE)


def _relative_parts(key: str) -> tuple[str, ...]:
    parts = PurePosixPath(key).parts
    if not parts or PurePosixPath(key).is_absolute() or ".." in parts:
        raise RegistryError(
            f"artifact path {key!r} must be relative and stay inside the run, like 'plots/roc.png'"
        )
    return parts


_ARROW_TO_MLFLOW = {
    "bool": "boolean",
    "boolean": "boolean",
    "int8": "integer",
    "int16": "integer",
    "int32": "integer",
    "uint8": "integer",
    "uint16": "integer",
    "int64": "long",
    "uint32": "long",
    "uint64": "long",
    "float": "float",
    "float32": "float",
    "halffloat": "float",
    "double": "double",
    "float64": "double",
    "string": "string",
    "large_string": "string",
    "str": "string",
    "object": "string",
    "category": "string",
    "binary": "binary",
    "large_binary": "binary",
}


def _dataset_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """MLflow's dataset schema (``{"mlflow_colspec": [...]}``) from kyklos's table schema
    (``{"columns": [{"name", "arrow_type", ...}]}``) or a plain ``{column: type}`` mapping."""
    if "mlflow_colspec" in schema:
        return dict(schema)
    listed = schema.get("columns")
    if isinstance(listed, Sequence) and not isinstance(listed, str):
        pairs = [
            (str(c["name"]), str(c.get("arrow_type") or c.get("type") or "string"))
            for c in listed
            if isinstance(c, Mapping) and "name" in c
        ]
    else:
        pairs = [
            (str(name), str(kind.get("type", kind)) if isinstance(kind, Mapping) else str(kind))
            for name, kind in schema.items()
        ]
    return {
        "mlflow_colspec": [
            {"type": _mlflow_type(kind), "name": name, "required": True} for name, kind in pairs
        ]
    }


def _mlflow_type(text: str) -> str:
    lowered = text.lower()
    if lowered.startswith(("timestamp", "datetime", "date")):
        return "datetime"
    if lowered.startswith("dictionary"):
        return "string"
    return _ARROW_TO_MLFLOW.get(lowered, text)
