"""After the steps: track the run in MLflow, register the model version, apply the gates.

One run records: parameters, metrics, the dataset version (an MLflow dataset input with its
digest), git commit and dirty flag, the environment, the seed, the step code hashes, evaluation
plots, the resolved project configuration and the model (signature + input example). The same
facts go into kyklos's metadata DB (``runs``, ``run_inputs``, ``model_versions``) for lineage,
caching and ``kyklos reproduce``.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import insert, update

from kyklos._version import __version__
from kyklos.config import Project
from kyklos.config.actor import current_actor
from kyklos.data.versions import DatasetVersion
from kyklos.errors import KyklosError, PipelineError
from kyklos.pipeline.runner import Node, RunResult
from kyklos.registry.aliases import promote, set_alias
from kyklos.registry.gate import evaluate_gates
from kyklos.registry.models import ModelRegistry
from kyklos.registry.provenance import run_context_tags
from kyklos.registry.tracking import Tracker, environment, git_state
from kyklos.store import ArtifactStore, open_db
from kyklos.store.schema import run_inputs, runs

__all__ = ["flat_params", "predictions_key", "track_run"]


def predictions_key(run_id: str) -> str:
    """Artifact-store key of a run's test-split predictions (used by ``kyklos reproduce``)."""
    return f"runs/{run_id}/predictions.npy"


def flat_params(config: Mapping[str, Any]) -> dict[str, str]:
    """The parameters worth comparing across runs, flattened to MLflow's string params."""
    data = config["data"]
    model = config["model"]
    evaluate = config["evaluate"]
    params: dict[str, Any] = {
        "estimator": model["estimator"],
        "seed": model["seed"],
        "task": model["task"],
        "target": data["target"],
        "split.method": evaluate["split"]["method"],
        "split.test_size": evaluate["split"]["test_size"],
        "threshold": evaluate["threshold"],
    }
    for key, value in sorted(model.get("params", {}).items()):
        params[f"model.{key}"] = value
    for key, value in sorted(model.get("preprocessing", {}).items()):
        params[f"preprocessing.{key}"] = value
    if data.get("features"):
        params["features"] = ",".join(data["features"])
    if data.get("drop"):
        params["drop"] = ",".join(data["drop"])
    return {k: str(v) for k, v in params.items()}


def track_run(
    project: Project,
    *,
    result: RunResult,
    nodes: Sequence[Node],
    dataset: DatasetVersion,
    dataset_created: bool,
    final_key: str,
    steps: list[dict[str, Any]],
    started_at: float | None = None,
) -> Any:
    """Track and register; return a :class:`~kyklos.pipeline.project.PipelineOutcome`.

    ``started_at`` (epoch seconds) is when the pipeline began: the run's start time."""
    import numpy as np

    from kyklos.pipeline.project import PipelineOutcome

    config = project.config.model_dump(mode="json")
    evaluation: dict[str, Any] = result.output("evaluate")
    model = result.output("train")
    profile: dict[str, Any] = result.output("profile")
    _, test_df = result.output("split")
    metrics = {k: float(v) for k, v in evaluation["metrics"].items()}
    git = git_state(project.root)
    env = environment()
    step_hashes = {node.name: node.spec.code_hash for node in nodes}
    seed = int(project.config.model.seed)

    tracker = Tracker(project.tracking_uri, _artifact_location(project), project.experiment)
    tags = {
        "kyklos.version": __version__,
        "kyklos.project": project.name,
        "kyklos.dataset": dataset.id,
        "kyklos.dataset_digest": dataset.digest,
        "kyklos.cache_key": final_key,
        "kyklos.seed": str(seed),
        "kyklos.predictions_digest": evaluation["predictions_digest"],
        **run_context_tags(git=git, source="kyklos run"),
    }
    for name, code_hash in step_hashes.items():
        tags[f"kyklos.step.{name}"] = code_hash[:16]
    # unique per data + code + config (two runs on one dataset version differ in the key)
    run_id = tracker.start_run(
        run_name=f"{project.name}-{dataset.id}-{final_key[:6]}",
        tags=tags,
        start_time=started_at,
    )
    db = open_db(project.db_url)
    started = dt.datetime.now(dt.UTC)
    with db.write() as conn:
        conn.execute(
            insert(runs).values(
                run_id=run_id,
                project=project.name,
                started_at=started,
                status="RUNNING",
                cache_key=final_key,
                git_commit=git.commit if git else None,
                git_dirty=git.dirty if git else None,
                seed=seed,
                params=flat_params(config),
                metrics=metrics,
                config=config,
                environment=env,
                step_hashes=step_hashes,
                predictions_digest=evaluation["predictions_digest"],
            )
        )
        conn.execute(
            insert(run_inputs).values(run_id=run_id, dataset_version_id=dataset.id, role="training")
        )
    try:
        tracker.log(run_id, params=flat_params(config), metrics=metrics, tags={})
        tracker.log_dataset(
            run_id,
            name=project.dataset_name,
            digest=dataset.digest,
            source=dataset.source,
            n_rows=dataset.n_rows,
            schema=dataset.schema.to_dict() if hasattr(dataset.schema, "to_dict") else None,
        )
        tracker.log_json(run_id, "kyklos/config.json", config)
        tracker.log_json(run_id, "kyklos/environment.json", env)
        tracker.log_json(run_id, "kyklos/steps.json", steps)
        if project.config.evaluate.plots:
            from kyklos.pipeline.plots import evaluation_plots

            plots = evaluation_plots(
                evaluation["task"],
                evaluation["y_true"],
                evaluation["y_pred"],
                evaluation["y_score"],
                labels=evaluation.get("labels"),
            )
            tracker.log_artifacts(
                run_id, {f"plots/{filename}": png for filename, png in plots.items()}
            )
        features = evaluation["features"]
        model_uri = tracker.log_model(
            run_id, model, input_example=test_df[features].head(5), name=project.registered_model
        )
        buffer = io.BytesIO()
        np.save(buffer, _prediction_array(evaluation), allow_pickle=False)
        ArtifactStore(project.artifacts_uri).put_bytes(predictions_key(run_id), buffer.getvalue())

        registry = ModelRegistry.for_project(project)
        champion = registry.champion()
        report = evaluate_gates(
            project.config.gates, metrics, champion.metrics if champion is not None else None
        )
        version = registry.register(
            run_id=run_id,
            model_uri=model_uri,
            metrics=metrics,
            gate_report=report,
            dataset_version_id=dataset.id,
            profile=profile,
            signature={"features": features, "task": evaluation["task"]},
        )
        note = _apply_policy(project, registry, version.version, report.passed, champion is None)
        tracker.end_run(run_id, "FINISHED")
        with db.write() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.run_id == run_id)
                .values(status="FINISHED", finished_at=dt.datetime.now(dt.UTC))
            )
    except BaseException as exc:
        tracker.end_run(run_id, "FAILED")
        with db.write() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.run_id == run_id)
                .values(status="FAILED", finished_at=dt.datetime.now(dt.UTC))
            )
        if isinstance(exc, KyklosError | KeyboardInterrupt):
            raise
        raise PipelineError(
            f"tracking run {run_id} failed: {type(exc).__name__}: {exc}", step="track"
        ) from exc
    current = registry.get(version.version)
    return PipelineOutcome(
        project=project.name,
        run_id=run_id,
        reused=False,
        dataset_version=dataset.id,
        dataset_created=dataset_created,
        steps=steps,
        metrics=metrics,
        gates=[r.to_dict() if hasattr(r, "to_dict") else dict(vars(r)) for r in report.results],
        gates_passed=report.passed,
        model_version=version.version,
        aliases=list(current.aliases),
        alias_note=note,
        tracking_uri=project.tracking_uri,
        predictions_digest=evaluation["predictions_digest"],
    )


def _prediction_array(evaluation: Mapping[str, Any]) -> Any:
    import numpy as np

    values = evaluation["y_score"] if evaluation["y_score"] is not None else evaluation["y_pred"]
    return np.ascontiguousarray(np.asarray(values, dtype=np.float64))


def _artifact_location(project: Project) -> str | None:
    return project.mlflow_artifacts_uri if project.config.tracking.uri is None else None


def _apply_policy(
    project: Project, registry: ModelRegistry, version: int, passed: bool, no_champion: bool
) -> str:
    """Apply ``registry.promote``: first → champion when none exists, else challenger."""
    policy = project.config.registry.promote
    who = current_actor()
    if not passed:
        return "failed its gates: registered only (promote with --force and a reason)"
    if policy == "never":
        return "registered (registry.promote is 'never')"
    if policy == "first" and no_champion:
        promote(registry, version, actor=who, reason="first model to pass its gates")
        return "became champion (first model to pass its gates)"
    set_alias(registry, version, alias="challenger", actor=who, reason="passed its gates")
    return "became challenger (promote it with `kyklos models promote`)"
