"""Monitoring verbs: the Python twins of ``kyklos monitor run``, ``show`` and ``check``.

``project`` is a folder, a ``kyklos.yaml`` path or a loaded :class:`~kyklos.config.Project`
(default: the nearest ``kyklos.yaml`` upwards).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kyklos.config import Project, load_project
from kyklos.config.loader import find_project_file
from kyklos.errors import ConfigError, MonitorError

if TYPE_CHECKING:
    from kyklos.monitoring.incremental import MonitorRun
    from kyklos.monitoring.metrics import MonitorMetrics
    from kyklos.monitoring.monitor import Monitor
    from kyklos.monitoring.results import CheckResult
    from kyklos.monitoring.store import MonitorStore, StoredResult
    from kyklos.registry import ModelRegistry, ModelVersion

__all__ = ["monitor_check", "monitor_rules", "monitor_run", "monitor_show", "report_path"]

ProjectRef = str | Path | Project | None

_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".csv.gz", ".tsv.gz")


def monitor_run(
    project: ProjectRef = None,
    *,
    version: int | str | None = None,
    report_dir: str | Path | None = None,
    reports: bool = True,
    metrics: MonitorMetrics | None = None,
) -> MonitorRun:
    """Check the windows of the prediction log that became complete since the last run.

    Rows answered by model version ``V`` are checked against ``V``'s reference profile
    (``version`` limits the run to one version: ``3``, ``"v3"``, ``"champion"``; default: every
    version in the log). Each result is stored in the metadata DB in the same transaction as
    the cursor move that consumes its rows; then an HTML report is written to ``report_dir``
    (default ``.kyklos/reports``; ``reports=False`` writes none), the project's alert rules
    are evaluated and ``metrics`` (a :class:`~kyklos.monitoring.metrics.MonitorMetrics`, e.g.
    the server's) are updated. Returns a :class:`~kyklos.monitoring.incremental.MonitorRun`:
    the sequence of new :class:`CheckResult` objects, with the stored ids, late rows, pending
    rows and skipped versions.
    """
    from kyklos.data.predlog import PredictionLog
    from kyklos.monitoring.incremental import run_incremental

    loaded = _project(project)
    registry = _registry(loaded)
    store = _store(loaded, registry)
    config = loaded.config.monitor
    selected = None if version is None else {registry.get(version).version}
    cache: dict[int, Monitor] = {}

    def monitors(number: int) -> Monitor:
        if number not in cache:
            cache[number] = _fitted(loaded, registry.get(number))
        return cache[number]

    folder = Path(report_dir) if report_dir is not None else loaded.state_dir / "reports"
    written: list[str] = []
    after = _after_commit(loaded, store, folder if reports else None, metrics, written)
    run = run_incremental(
        PredictionLog.for_project(loaded),
        store,
        window=config.window,
        monitors=monitors,
        versions=selected,
        after_commit=after,
    )
    return replace(run, reports=tuple(written))


def monitor_show(
    project: ProjectRef = None, *, limit: int | None = 20, version: int | str | None = None
) -> list[StoredResult]:
    """The stored monitor results, newest first (of one model ``version``)."""
    loaded = _project(project)
    registry = _registry(loaded)
    number = None
    if version is not None:
        text = str(version).strip().lower().removeprefix("v")
        number = int(text) if text.isdigit() else registry.get(version).version
    return _store(loaded, registry).list(limit=limit, version=number)


def monitor_check(
    reference: str,
    current: str,
    *,
    project: ProjectRef = None,
    report: str | Path | None = None,
) -> CheckResult:
    """Check a table (``current``: a CSV or Parquet path) against a reference, once.

    ``reference`` is a model version of the project (``3``, ``v3``, ``champion``: its stored
    profile; the model's features are checked, a missing one is a quality error), a dataset
    version (``ds-...``: its profile) or another CSV/Parquet file (profiled now; no project
    needed). For dataset and file references the columns both tables share are checked. A
    current table holding prediction-log columns (``f.<feature>``, ``score``, ``label``) is
    read as log records; otherwise ``score`` / ``prediction`` columns give prediction drift and,
    with the project's target column, live performance. Against a model version, a raw table
    that lacks some of the model's features first goes through the project's user steps
    (``pipeline.steps`` after ``load`` and ``validate``, as in training and ``kyklos
    predict``), so that the features those steps add are checked too; when a step cannot run
    on it (the file lacks a column the step reads), the quality errors of the missing features
    say so. ``report`` writes the report (JSON when it ends in ``.json``, else HTML). Nothing
    is stored.
    """
    from kyklos.data.profile import profile_table
    from kyklos.data.table import canonicalize, read_table
    from kyklos.monitoring.monitor import FEATURE_PREFIX, log_window_spec

    table = canonicalize(read_table(current))
    label = Path(current).name
    target: str | None = None
    note: str | None = None  # why the user steps could not add the model's features
    if _is_table_path(reference):
        loaded = _optional_project(project)
        ref_table = canonicalize(read_table(reference))
        monitor = _monitor(loaded, features=_shared(ref_table.column_names, table, reference))
        monitor.fit(profile_table(ref_table))
        version_number = None
    else:
        loaded = _project(project)
        target = loaded.config.data.target
        if reference.strip().lower().startswith("ds-") or "@" in reference:
            from kyklos.data import DatasetStore

            dataset = DatasetStore.for_project(loaded).get(reference)
            features = _shared(dataset.profile.names, table, reference)
            monitor = _monitor(loaded, features=features).fit(dataset.profile)
            version_number = None
        else:
            found = _registry(loaded).get(reference)
            monitor = _fitted(loaded, found)
            version_number = found.version
            if not any(name.startswith(FEATURE_PREFIX) for name in table.column_names):
                table, note = _with_step_features(loaded, table, monitor.features_, label)
    if any(name.startswith(FEATURE_PREFIX) for name in table.column_names):
        spec = replace(log_window_spec(table, label=label), model_version=version_number)
        result = monitor.check_log_window(table, window=spec)
    else:
        result = _check_plain(monitor, table, target, version_number, label)
        result = _explain_missing(result, table, note)
    if report is not None:
        from kyklos.monitoring.report import write_report

        write_report(result, report)
    return result


def monitor_rules(project: ProjectRef = None, *, output: str | Path | None = None) -> str:
    """Prometheus alert rules for the project's ``monitor.alerts`` (YAML text; written
    atomically to ``output`` when given), over the gauges that ``/metrics`` exports."""
    from kyklos.monitoring.prometheus_rules import prometheus_rules
    from kyklos.store import ArtifactStore

    loaded = _project(project)
    text = prometheus_rules(loaded.config.monitor.alerts, model=loaded.registered_model)
    if output is not None:
        target = Path(output).resolve()
        ArtifactStore(str(target.parent)).put_bytes(target.name, text.encode())
    return text


def report_path(folder: str | Path, stored: StoredResult) -> Path:
    """Where ``kyklos monitor run`` writes the report of a stored result."""
    version = "" if stored.model_version is None else f"-v{stored.model_version}"
    return Path(folder) / f"monitor-{stored.id:06d}{version}.html"


# -- helpers ------------------------------------------------------------------------------------
def _project(project: ProjectRef) -> Project:
    return project if isinstance(project, Project) else load_project(project)


def _optional_project(project: ProjectRef) -> Project | None:
    """The project when there is one (plain-file checks work without)."""
    if project is not None:
        return _project(project)
    try:
        path = find_project_file(None)
    except ConfigError:
        return None
    return load_project(path)


def _registry(project: Project) -> ModelRegistry:
    from kyklos.registry import ModelRegistry

    return ModelRegistry.for_project(project)


def _store(project: Project, registry: ModelRegistry) -> MonitorStore:
    from kyklos.monitoring.store import MonitorStore

    return MonitorStore(registry.db, project=project.name, model_name=registry.model_name)


def _monitor(
    project: Project | None, *, features: list[str] | None = None, task: str | None = None
) -> Monitor:
    from kyklos.monitoring.monitor import Monitor

    if project is None:
        return Monitor(task=task, features=features)
    config = project.config
    return Monitor(
        drift=config.monitor.drift,
        performance=config.monitor.performance,
        task=task,
        features=features,
        decision_threshold=config.evaluate.threshold,
    )


def _fitted(project: Project, version: ModelVersion) -> Monitor:
    """The monitor of a model version, fitted on its stored reference profile."""
    from kyklos.config.project import infer_task

    if not version.profile:
        raise MonitorError(
            f"model version {version.version} of {version.model_name!r} has no reference "
            "profile, so it cannot be monitored. Hint: retrain it with `kyklos run` (the "
            "profile step stores one)"
        )
    task = (version.signature or {}).get("task") or infer_task(project.config)
    return _monitor(project, task=task).fit(version.profile)


def _shared(reference: list[str], table: Any, name: str) -> list[str]:
    shared = [c for c in reference if c in table.column_names]
    if not shared:
        raise MonitorError(
            f"the current table shares no column with the reference {name!r}: it has "
            f"{table.column_names[:10]}, the reference {reference[:10]}. Hint: compare tables of "
            "the same kind"
        )
    return shared


def _check_plain(
    monitor: Monitor, table: Any, target: str | None, version: int | None, label: str
) -> CheckResult:
    import pyarrow.compute as pc

    from kyklos.monitoring.results import WindowSpec

    names = table.column_names
    predictions = None
    if monitor.prediction_reference_ is not None:
        if "score" in names and table.column("score").null_count < table.num_rows:
            predictions = _floats(table.column("score").drop_null())
        elif "prediction" in names and monitor.task_ == "regression":
            predictions = _floats(table.column("prediction").drop_null())
    y_true = y_pred = y_score = None
    if target is not None and target in names and "prediction" in names:
        labelled = table.filter(pc.is_valid(table.column(target)))
        if labelled.num_rows:
            y_true = _floats(labelled.column(target))
            y_pred = _floats(labelled.column("prediction"))
            if "score" in names and labelled.column("score").null_count == 0:
                y_score = _floats(labelled.column("score"))
    window = WindowSpec(None, None, table.num_rows, model_version=version, label=label)
    return monitor.check(
        table, predictions=predictions, y_true=y_true, y_pred=y_pred, y_score=y_score, window=window
    )


def _with_step_features(
    project: Project, table: Any, features: list[str], source: str
) -> tuple[Any, str | None]:
    """``(table, note)``: ``table`` after the project's user steps when it lacks some of the
    model's ``features`` (a raw file, as the training data was before the steps), unchanged
    otherwise. When a step cannot run on it (typically: the file lacks a column the step
    reads), the table is checked as it is and ``note`` says why the step features are missing.
    """
    if all(name in table.column_names for name in features):
        return table, None
    import pyarrow as pa

    from kyklos.data.table import frame_to_arrow
    from kyklos.serving.batch import UserStepError, run_user_steps, user_steps

    steps = user_steps(project)
    if not steps:
        return table, None
    try:
        frame = run_user_steps(steps, table.to_pandas())
    except UserStepError as exc:
        cause = exc.cause
        return table, (
            f"user step {exc.name!r} could not run on {source} ({type(cause).__name__}: "
            f"{cause}); it needs the columns the training data had before the steps"
        )
    try:
        return frame_to_arrow(frame), None
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, AttributeError) as exc:
        return table, f"the user steps' output on {source} is not a table ({exc})"


def _explain_missing(result: CheckResult, table: Any, note: str | None) -> CheckResult:
    """``result`` with ``note`` added to the issues of the features ``table`` lacks."""
    if note is None:
        return result
    issues = tuple(
        replace(q, detail=f"{q.detail}: {note}") if q.feature not in table.column_names else q
        for q in result.quality
    )
    return replace(result, quality=issues)


def _floats(column: Any) -> Any:
    import numpy as np

    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _is_table_path(reference: str) -> bool:
    lowered = reference.lower()
    return lowered.endswith(_TABLE_SUFFIXES) or "/" in reference or Path(reference).is_file()


def _after_commit(
    project: Project,
    store: MonitorStore,
    folder: Path | None,
    metrics: MonitorMetrics | None,
    written: list[str],
) -> Callable[[StoredResult], None]:
    """What follows each stored window: its report, the alert rules, the gauges."""
    alerts_config = project.config.monitor.alerts
    manager = None
    if alerts_config.rules:
        from kyklos.monitoring.alerts import AlertManager

        manager = AlertManager(store.db, project=project.name, config=alerts_config)

    def after(stored: StoredResult) -> None:
        result = stored.result
        if folder is not None:
            from kyklos.monitoring.report import write_report

            history = store.history(stored.model_version, before=stored.id, limit=49)
            title = f"{store.model_name} v{stored.model_version} · {result.window.label}"
            path = write_report(result, report_path(folder, stored), history=history, title=title)
            written.append(str(path))
        if manager is not None:
            manager.evaluate(result, model=store.model_name, version=stored.model_version)
        if metrics is not None:
            metrics.update(result, model=store.model_name, version=stored.model_version)

    return after
