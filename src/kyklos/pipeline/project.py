"""The project pipeline: load → validate → (user steps) → split → train → evaluate → profile.

This module wires the generic runner (:mod:`kyklos.pipeline.runner`) to dataset versions
(:mod:`kyklos.data`) and, after the steps, to tracking and the registry (:mod:`kyklos.registry`).

Caching: every step is keyed by its code, parameters, input hashes and environment. When every
step is a cache hit and a finished run already recorded the final key, nothing is tracked again:
the result points at that run and model version, and neither MLflow nor scikit-learn is imported.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kyklos._version import __version__
from kyklos.config import Project, infer_task
from kyklos.errors import PipelineError
from kyklos.pipeline.cache import StepCache
from kyklos.pipeline.hooks import Hook
from kyklos.pipeline.runner import Node, Runner
from kyklos.pipeline.step import StepSpec, load_step, step

__all__ = ["PipelineOutcome", "build_nodes", "run_project"]

FINAL_STEP = "profile"
REFERENCE_BINS = 100


@dataclass(frozen=True)
class PipelineOutcome:
    """What ``kyklos run`` did: steps, run, metrics, gates and the model version."""

    project: str
    run_id: str | None
    reused: bool
    dataset_version: str
    dataset_created: bool
    steps: list[dict[str, Any]]
    metrics: dict[str, float]
    gates: list[dict[str, Any]] = field(default_factory=list)
    gates_passed: bool | None = None
    model_version: int | None = None
    aliases: list[str] = field(default_factory=list)
    alias_note: str = ""
    tracking_uri: str = ""
    predictions_digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "run_id": self.run_id,
            "reused": self.reused,
            "dataset_version": self.dataset_version,
            "dataset_created": self.dataset_created,
            "steps": self.steps,
            "metrics": self.metrics,
            "gates": self.gates,
            "gates_passed": self.gates_passed,
            "model_version": self.model_version,
            "aliases": self.aliases,
            "alias_note": self.alias_note,
            "tracking_uri": self.tracking_uri,
            "predictions_digest": self.predictions_digest,
        }


# -- built-in steps -----------------------------------------------------------------------------
# Each is a plain function; the runner passes upstream outputs by parameter name and node
# params as keyword arguments. They are small on purpose: the work lives in split/validate/
# train/evaluate so that it can be tested without the runner.


@step(name="load")
def load_step_fn(*, artifacts: str, storage_key: str, digest: str) -> Any:
    """Read the stored, canonical dataset version as a pandas DataFrame."""
    import pyarrow.parquet as pq

    from kyklos.store import ArtifactStore

    store = ArtifactStore(artifacts)
    with store.open(storage_key) as fh:
        table = pq.read_table(fh)
    return table.to_pandas()


@step(name="validate")
def validate_step_fn(
    df: Any,
    *,
    target: str,
    features: list[str] | None,
    previous_kinds: dict[str, str] | None,
    task: str | None,
) -> list[str]:
    """Reject bad training data; return warnings."""
    from kyklos.pipeline.validate import column_kinds_of, validate_training_frame

    return validate_training_frame(
        df,
        target=target,
        features=features,
        column_kinds=column_kinds_of(df),
        previous_kinds=previous_kinds,
        task=task,
    )


@step(name="split")
def split_step_fn(
    df: Any,
    validated: Any,
    *,
    target: str,
    method: str,
    test_size: float,
    time_column: str | None,
    seed: int,
) -> tuple[Any, Any]:
    """Cut the test split (by time, at random or stratified)."""
    from kyklos.pipeline.split import split_frame

    return split_frame(
        df,
        target=target,
        method=method,
        test_size=test_size,
        time_column=time_column,
        seed=seed,
    )


@step(name="train")
def train_step_fn(split: tuple[Any, Any], *, config: dict[str, Any]) -> Any:
    """Fit preprocessing and estimator as one sklearn Pipeline."""
    from kyklos.config.project import PreprocessingConfig
    from kyklos.pipeline.train import build_model, fit_model, select_features, to_xy

    train_df, _ = split
    data = config["data"]
    model_cfg = config["model"]
    numeric, categorical = select_features(
        train_df,
        target=data["target"],
        time_column=data.get("time_column"),
        features=data.get("features"),
        drop=data.get("drop", []),
    )
    model = build_model(
        estimator=model_cfg["estimator"],
        params=model_cfg.get("params", {}),
        preprocessing=PreprocessingConfig.model_validate(model_cfg.get("preprocessing", {})),
        numeric=numeric,
        categorical=categorical,
        seed=int(model_cfg["seed"]),
    )
    x, y = to_xy(train_df, target=data["target"], columns=numeric + categorical)
    fit_model(model, x, y, int(model_cfg["seed"]))
    return model


@step(name="evaluate")
def evaluate_step_fn(
    model: Any, split: tuple[Any, Any], *, target: str, metrics: list[str], threshold: float
) -> dict[str, Any]:
    """Metrics and predictions on the test split."""
    import numpy as np

    from kyklos.pipeline.evaluate import compute_metrics, predict_for_eval
    from kyklos.pipeline.train import infer_task as task_of
    from kyklos.pipeline.train import to_xy

    _, test_df = split
    features = list(model.feature_names_in_)
    task = task_of(model)
    x, y = to_xy(test_df, target=target, columns=features)
    y_pred, y_score = predict_for_eval(model, x, task)
    labels = getattr(model, "classes_", None)
    if (
        task == "classification"
        and labels is not None
        and y_score is not None
        and getattr(y_score, "ndim", 0) == 1
    ):
        # binary: labels follow the project's decision threshold, like the metrics do
        y_pred = np.where(np.asarray(y_score) >= threshold, labels[1], labels[0])
    values = compute_metrics(
        task,
        y.to_numpy(),
        y_pred=y_pred,
        y_score=y_score,
        metrics=metrics,
        threshold=threshold,
        labels=labels,
    )
    predictions = np.asarray(y_score if y_score is not None else y_pred, dtype=np.float64)
    return {
        "task": task,
        "metrics": values,
        "y_true": y.to_numpy(),
        "labels": None if labels is None else list(labels),
        "y_pred": np.asarray(y_pred),
        "y_score": None if y_score is None else np.asarray(y_score),
        "predictions_digest": hashlib.sha256(
            np.ascontiguousarray(predictions).tobytes()
        ).hexdigest(),
        "n_test": len(x),
        "n_features": len(features),
        "features": features,
    }


@step(name="profile")
def profile_step_fn(
    model: Any, split: tuple[Any, Any], evaluation: dict[str, Any]
) -> dict[str, Any]:
    """Reference profile of the training features and of the model's predictions."""
    import numpy as np
    import pyarrow as pa

    from kyklos.data.profile import profile_table
    from kyklos.data.schema import infer_schema

    train_df, _ = split
    features = list(model.feature_names_in_)
    table = pa.Table.from_pandas(train_df[features], preserve_index=False)
    # 100 quantile bins: monitoring's KS/Wasserstein work on these histograms, never on raw data
    feature_profile = profile_table(table, infer_schema(table), n_bins=REFERENCE_BINS)
    task = evaluation["task"]
    x = train_df[features]
    if task == "classification" and hasattr(model, "predict_proba"):
        scores = model.predict_proba(x)
        pred = scores[:, 1] if scores.shape[1] == 2 else scores.max(axis=1)
    else:
        pred = model.predict(x)
    pred_table = pa.table({"prediction": np.asarray(pred, dtype=np.float64)})
    pred_profile = profile_table(pred_table, infer_schema(pred_table), n_bins=REFERENCE_BINS)
    return {
        "features": feature_profile.to_dict(),
        "predictions": pred_profile.to_dict(),
        "metrics": evaluation["metrics"],
        "kyklos_version": __version__,
    }


BUILTIN_ORDER = ("load", "validate", "split", "train", "evaluate", "profile")


def build_nodes(
    project: Project,
    *,
    artifacts: str,
    storage_key: str,
    digest: str,
    previous_kinds: Mapping[str, str] | None,
    step_root: Path | None = None,
) -> list[Node]:
    """The pipeline of ``project`` as runner nodes (built-ins with user steps spliced in)."""
    config = project.config
    resolved = config.model_dump(mode="json")
    task = infer_task(config)
    env = _environment_key()
    root = step_root or project.root
    user: dict[str, list[tuple[str, StepSpec, dict[str, Any]]]] = {}
    seen: set[str] = set(BUILTIN_ORDER)
    for i, user_step in enumerate(config.pipeline.steps):
        spec = load_step(user_step.function, root)
        name = user_step.name or spec.name
        if name in seen:
            raise PipelineError(
                f"pipeline.steps[{i}]: step name {name!r} is already used; give it a `name:`",
                step=name,
            )
        seen.add(name)
        if user_step.retries and user_step.retries > spec.retries:
            spec = StepSpec(
                name=spec.name,
                func=spec.func,
                retries=user_step.retries,
                cache=spec.cache,
                code_hash=spec.code_hash,
            )
        user.setdefault(user_step.after, []).append((name, spec, dict(user_step.params)))

    nodes: list[Node] = []
    frame = "load"  # the node whose output is the current DataFrame

    def splice(after: str) -> None:
        nonlocal frame
        for name, spec, params in user.get(after, []):
            if after in {"split", "train", "evaluate"}:
                raise PipelineError(
                    f"user step {name!r}: after: {after} is not supported yet; "
                    "user steps transform the table, so use after: load or after: validate",
                    step=name,
                )
            first_param = _first_parameter(spec)
            nodes.append(Node(name=name, spec=spec, inputs={first_param: frame}, params=params))
            frame = name

    nodes.append(
        Node(
            name="load",
            spec=_spec(load_step_fn),
            inputs={},
            params={"artifacts": artifacts, "storage_key": storage_key, "digest": digest},
        )
    )
    splice("load")
    nodes.append(
        Node(
            name="validate",
            spec=_spec(validate_step_fn),
            inputs={"df": frame},
            params={
                "target": config.data.target,
                "features": config.data.features,
                "previous_kinds": dict(previous_kinds) if previous_kinds else None,
                "task": task,
            },
        )
    )
    splice("validate")
    nodes.append(
        Node(
            name="split",
            spec=_spec(split_step_fn),
            inputs={"df": frame, "validated": "validate"},
            params={
                "target": config.data.target,
                "method": config.evaluate.split.method,
                "test_size": config.evaluate.split.test_size,
                "time_column": config.data.time_column,
                "seed": config.model.seed,
            },
        )
    )
    nodes.append(
        Node(
            name="train",
            spec=_spec(train_step_fn),
            inputs={"split": "split"},
            params={"config": {"data": resolved["data"], "model": resolved["model"]}},
            env=env,
        )
    )
    nodes.append(
        Node(
            name="evaluate",
            spec=_spec(evaluate_step_fn),
            inputs={"model": "train", "split": "split"},
            params={
                "target": config.data.target,
                "metrics": list(config.evaluate.metrics),
                "threshold": config.evaluate.threshold,
            },
            env=env,
        )
    )
    nodes.append(
        Node(
            name="profile",
            spec=_spec(profile_step_fn),
            inputs={"model": "train", "split": "split", "evaluation": "evaluate"},
            params={},
            env=env,
        )
    )
    return nodes


def _spec(fn: Any) -> StepSpec:
    spec: StepSpec = fn.__kyklos_step__
    return spec


def _first_parameter(spec: StepSpec) -> str:
    name = spec.first_parameter()
    if name is None:
        raise PipelineError(
            f"user step {spec.name!r} takes no arguments; it must take the table (a DataFrame) "
            "as its first argument",
            step=spec.name,
        )
    return name


def _environment_key() -> dict[str, str]:
    """The parts of the environment a trained model depends on (part of cache keys)."""
    from importlib.metadata import PackageNotFoundError, version

    env = {"python": platform.python_version(), "kyklos": __version__}
    for package in ("numpy", "pandas", "scikit-learn", "scipy", "lightgbm", "xgboost"):
        try:
            env[package] = version(package)
        except PackageNotFoundError:
            continue
    return env


# -- the run --------------------------------------------------------------------------------------


def run_project(
    project: Project,
    *,
    use_cache: bool = True,
    hooks: Sequence[Hook] = (),
    dataset_ref: str | None = None,
    track: bool = True,
) -> PipelineOutcome:
    """Run the pipeline of ``project``; track and register the model when something changed."""
    import time

    from kyklos.data.versions import DatasetStore

    started_at = time.time()
    datasets = DatasetStore.for_project(project)
    if dataset_ref is not None:
        version = datasets.get(dataset_ref)
        created = False
    else:
        latest = datasets.latest(project.dataset_name)
        version, created = datasets.add(
            project.resolve(project.config.data.source),
            name=project.dataset_name,
            parents=[latest.id] if latest is not None else [],
        )
    previous = datasets.previous(project.dataset_name, version.id)
    previous_kinds = (
        {c.name: c.kind for c in previous.schema.columns} if previous is not None else None
    )
    storage_key = _storage_key(version.digest)
    nodes = build_nodes(
        project,
        artifacts=project.artifacts_uri,
        storage_key=storage_key,
        digest=version.digest,
        previous_kinds=previous_kinds,
    )
    cache = StepCache(project.cache_dir) if project.config.pipeline.cache else None
    runner = Runner(cache, hooks=hooks)
    result = runner.run(nodes, use_cache=use_cache and cache is not None)
    final_key = result.records[FINAL_STEP].key
    steps = [
        {
            "name": r.name,
            "cached": r.cached,
            "seconds": round(r.seconds, 4),
            "attempts": r.attempts,
        }
        for r in result.records.values()
    ]
    if use_cache and all(r.cached for r in result.records.values()):
        previous_run = _finished_run_for_key(project, final_key)
        if previous_run is not None:
            return _reused_outcome(project, previous_run, version.id, created, steps)
    if not track:
        evaluation = result.output("evaluate")
        return PipelineOutcome(
            project=project.name,
            run_id=None,
            reused=False,
            dataset_version=version.id,
            dataset_created=created,
            steps=steps,
            metrics=dict(evaluation["metrics"]),
            predictions_digest=evaluation["predictions_digest"],
        )
    from kyklos.pipeline.tracking import track_run

    outcome: PipelineOutcome = track_run(
        project,
        result=result,
        nodes=nodes,
        dataset=version,
        dataset_created=created,
        final_key=final_key,
        steps=steps,
        started_at=started_at,
    )
    return outcome


def _storage_key(digest: str) -> str:
    return f"datasets/{digest[:2]}/{digest}.parquet"


def _finished_run_for_key(project: Project, key: str) -> dict[str, Any] | None:
    from sqlalchemy import select

    from kyklos.store import open_db
    from kyklos.store.schema import model_versions, runs

    db = open_db(project.db_url)
    with db.read() as conn:
        row = conn.execute(
            select(runs.c.run_id, runs.c.metrics, runs.c.predictions_digest)
            .where(
                runs.c.cache_key == key, runs.c.status == "FINISHED", runs.c.project == project.name
            )
            .order_by(runs.c.started_at.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        mv = conn.execute(
            select(
                model_versions.c.version,
                model_versions.c.gate_results,
                model_versions.c.gates_passed,
            ).where(model_versions.c.run_id == row.run_id)
        ).first()
    return {
        "run_id": row.run_id,
        "metrics": row.metrics,
        "predictions_digest": row.predictions_digest,
        "model_version": mv.version if mv else None,
        "gate_results": mv.gate_results if mv else [],
        "gates_passed": mv.gates_passed if mv else None,
    }


def _reused_outcome(
    project: Project,
    previous: dict[str, Any],
    dataset_id: str,
    created: bool,
    steps: list[dict[str, Any]],
) -> PipelineOutcome:
    return PipelineOutcome(
        project=project.name,
        run_id=previous["run_id"],
        reused=True,
        dataset_version=dataset_id,
        dataset_created=created,
        steps=steps,
        metrics=dict(previous["metrics"]),
        gates=list(previous["gate_results"] or []),
        gates_passed=previous["gates_passed"],
        model_version=previous["model_version"],
        alias_note="nothing changed: the pipeline is up to date with this run",
        tracking_uri=project.tracking_uri,
        predictions_digest=previous["predictions_digest"],
    )
