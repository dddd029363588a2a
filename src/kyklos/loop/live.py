"""Live comparison of two model versions on the same traffic, from the prediction log.

The figures behind every loop decision. Traffic changes by the hour (summer storms, rush
hours): comparing two models on different rows mostly measures the rows. So the decision is
**paired**: on every labelled row either version answered live, the other version's answer is
computed now from the logged features, and both are scored on exactly the same rows
(:func:`paired`).

* During a **canary** the champion's rows (``arm="champion"``) and the canary's
  (``arm="canary"``) together form the paired set; each arm's figures on its own live rows
  are kept alongside (``live``).
* During a **shadow** rollout both versions answered the very same rows already.
* After a **promotion** (``compare_periods``), the new champion's labelled rows since the
  switch are scored with the previous champion too: the check that decides a rollback.

``verdict`` is ``better``/``same``/``worse`` from :func:`kyklos.monitoring.performance.metric_drop`
on the watched metric, or ``undecided`` while a minimum (rows, labels, time) is not met; the
reasons are in ``waiting_for``.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

    from kyklos.config import Project
    from kyklos.registry.rollouts import Rollout

__all__ = [
    "ArmFigures",
    "LiveComparison",
    "arm_figures",
    "compare_arms",
    "compare_periods",
    "compare_rollout",
]


@dataclass(frozen=True)
class ArmFigures:
    """What one version did on live traffic: rows answered, labelled rows, metrics."""

    version: int | None
    arm: str
    rows: int
    labelled: int
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class LiveComparison:
    """Champion against challenger on live traffic (see the module doc)."""

    kind: str  # canary | shadow | after_promotion
    metric: str
    champion: ArmFigures
    challenger: ArmFigures
    drop: float | None  # how much worse the challenger is (positive = worse)
    max_drop: float
    verdict: str  # better | same | worse | undecided
    waiting_for: list[str] = field(default_factory=list)
    seconds: float = 0.0  # how long the comparison has run
    live: dict[str, Any] = field(default_factory=dict)  # each arm on its own live rows

    @property
    def decided(self) -> bool:
        return self.verdict != "undecided"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "metric": self.metric,
            "champion": self.champion.to_dict(),
            "challenger": self.challenger.to_dict(),
            "drop": self.drop,
            "max_drop": self.max_drop,
            "verdict": self.verdict,
            "waiting_for": list(self.waiting_for),
            "seconds": round(self.seconds, 3),
            "live": dict(self.live),
        }

    def sentence(self) -> str:
        """One line for a human: ``canary v3 roc_auc 0.71 vs champion v2 0.66 (+0.05)``."""
        a = self.challenger.metrics.get(self.metric)
        b = self.champion.metrics.get(self.metric)
        if a is None or b is None:
            return (
                f"{self.kind}: v{self.challenger.version} {self.challenger.labelled} labelled, "
                f"v{self.champion.version} {self.champion.labelled} labelled"
            )
        return (
            f"{self.metric} v{self.challenger.version} {a:.4f} vs v{self.champion.version} "
            f"{b:.4f} on the same {self.challenger.labelled} labelled live rows"
        )


def _joined(project: Project, since: dt.datetime | None, until: dt.datetime | None) -> pa.Table:
    from kyklos.data.predlog import PredictionLog

    return PredictionLog.for_project(project).joined(since=since, until=until)


def arm_figures(
    table: pa.Table,
    *,
    version: int | None,
    arm: str | None,
    task: str,
    metrics: list[str],
    threshold: float = 0.5,
    keys: set[tuple[str, int]] | None = None,
) -> ArmFigures:
    """Figures of the rows of ``version`` (answered under ``arm``) in a joined log table."""
    import pyarrow.compute as pc

    mask = None
    if version is not None:
        mask = pc.equal(table.column("version"), version)
    if arm is not None:
        by_arm = pc.equal(table.column("arm"), arm)
        mask = by_arm if mask is None else pc.and_(mask, by_arm)
    rows = table.filter(mask) if mask is not None else table
    if keys is not None:
        ids = rows.column("request_id").to_pylist()
        idx = rows.column("row").to_pylist()
        keep = np.fromiter(((i, r) in keys for i, r in zip(ids, idx, strict=True)), bool, len(ids))
        rows = rows.filter(keep)
    labelled = rows.filter(pc.is_valid(rows.column("label")))
    values: dict[str, float] = {}
    if labelled.num_rows:
        values = _metrics(labelled, task=task, metrics=metrics, threshold=threshold)
    return ArmFigures(
        version=version,
        arm=arm or "any",
        rows=rows.num_rows,
        labelled=labelled.num_rows,
        metrics=values,
    )


def _metrics(
    labelled: pa.Table, *, task: str, metrics: list[str], threshold: float
) -> dict[str, float]:
    from kyklos.pipeline.evaluate import compute_metrics

    y_true = labelled.column("label").to_numpy(zero_copy_only=False)
    y_pred = labelled.column("prediction").to_numpy(zero_copy_only=False)
    score_col = labelled.column("score")
    y_score = None
    if task == "classification" and score_col.null_count == 0:
        y_score = score_col.to_numpy(zero_copy_only=False)
    wanted = list(metrics)
    if y_score is None:
        wanted = [m for m in wanted if m not in _SCORE_METRICS]
    if task == "classification" and len(np.unique(y_true)) < 2:
        wanted = [m for m in wanted if m not in _SCORE_METRICS]
    if not wanted:
        return {}
    try:
        computed = compute_metrics(
            task, y_true, y_pred=y_pred, y_score=y_score, metrics=wanted, threshold=threshold
        )
    except ValueError:
        return {}
    return {k: float(v) for k, v in computed.items() if math.isfinite(float(v))}


_SCORE_METRICS = frozenset(
    {"average_precision", "brier", "calibration_error", "log_loss", "roc_auc"}
)


def compare_arms(
    project: Project,
    *,
    champion: int,
    challenger: int,
    strategy: str,
    since: dt.datetime,
    min_requests: int = 0,
    min_labelled: int = 0,
    min_seconds: float = 0.0,
    now: dt.datetime | None = None,
) -> LiveComparison:
    """Champion ``champion`` against ``challenger`` during a rollout started at ``since``."""
    metric, max_drop, metrics, task, threshold = _settings(project)
    table = _joined(project, since, None)
    challenger_arm = "canary" if strategy == "canary" else "shadow"
    keys = None
    if strategy == "shadow":
        keys = _shared_keys(table, champion, challenger)
    ours = arm_figures(
        table,
        version=challenger,
        arm=challenger_arm,
        task=task,
        metrics=metrics,
        threshold=threshold,
        keys=keys,
    )
    theirs = arm_figures(
        table,
        version=champion,
        arm="champion",
        task=task,
        metrics=metrics,
        threshold=threshold,
        keys=keys,
    )
    seconds = ((now or dt.datetime.now(dt.UTC)) - since).total_seconds()
    pair = paired(
        project,
        table,
        champion=champion,
        challenger=challenger,
        live_arms={champion: "champion", challenger: challenger_arm},
        task=task,
        metrics=metrics,
        threshold=threshold,
    )
    waiting: list[str] = []
    if ours.rows < min_requests:
        waiting.append(_more(min_requests - ours.rows, f"answered by v{challenger}"))
    for figures in (ours, theirs):
        if figures.labelled < max(min_labelled, 1):
            need = max(min_labelled, 1) - figures.labelled
            waiting.append(_more(need, f"labelled, of v{figures.version}"))
    if seconds < min_seconds:
        waiting.append(f"{min_seconds - seconds:.0f} s more of rollout")
    comparison = _verdict(strategy, metric, pair[0], pair[1], max_drop, waiting, seconds)
    return replace(comparison, live={"champion": theirs.to_dict(), "challenger": ours.to_dict()})


def compare_rollout(
    project: Project, rollout: Rollout, *, now: dt.datetime | None = None
) -> LiveComparison:
    """:func:`compare_arms` for ``rollout`` with the minimums of ``serve.rollout`` (rows,
    labelled rows, duration): the figures the loop decides on, and ``kyklos rollout status``
    shows. An ended rollout is measured up to its end."""
    from kyklos.config.project import parse_duration

    plan = project.config.serve.rollout
    return compare_arms(
        project,
        champion=rollout.champion_version or 0,
        challenger=rollout.challenger_version,
        strategy=rollout.strategy,
        since=rollout.started_at,
        min_requests=plan.min_requests,
        min_labelled=plan.min_labelled,
        min_seconds=parse_duration(plan.duration) if plan.duration else 0.0,
        now=rollout.ended_at or now,
    )


def compare_periods(
    project: Project,
    *,
    previous: int,
    current: int,
    switched_at: dt.datetime,
    min_labelled: int,
    margin: float,
    now: dt.datetime | None = None,
) -> LiveComparison:
    """A new champion (``current``, serving since ``switched_at``) against the one before it
    (``previous``), on the same labelled rows: the new champion's logged answers, and the
    previous champion's answers to the very same requests computed from the logged features.
    The check that decides a rollback (traffic changes by the hour: comparing two periods
    would mostly measure the traffic, not the models)."""
    metric, _, metrics, task, threshold = _settings(project)
    after = _joined(project, switched_at, None)
    live = arm_figures(
        after, version=current, arm="champion", task=task, metrics=metrics, threshold=threshold
    )
    old, new = paired(
        project,
        after,
        champion=previous,
        challenger=current,
        live_arms={current: "champion"},
        task=task,
        metrics=metrics,
        threshold=threshold,
    )
    waiting: list[str] = []
    if new.labelled < min_labelled:
        waiting.append(_more(min_labelled - new.labelled, f"labelled, of v{current}"))
    seconds = ((now or dt.datetime.now(dt.UTC)) - switched_at).total_seconds()
    comparison = _verdict("after_promotion", metric, old, new, margin, waiting, seconds)
    return replace(comparison, live={"challenger": live.to_dict()})


def paired(
    project: Project,
    table: pa.Table,
    *,
    champion: int,
    challenger: int,
    live_arms: dict[int, str],
    task: str,
    metrics: list[str],
    threshold: float,
) -> tuple[ArmFigures, ArmFigures]:
    """Both versions on the very same labelled rows: each row's logged answer for the version
    that gave it (``live_arms``: version → arm), and the other version's answer computed now
    from the logged features. Returns ``(champion, challenger)`` figures."""
    import pyarrow.compute as pc

    versions = pc.is_in(table.column("version"), value_set=pa_array([champion, challenger]))
    rows = table.filter(pc.and_(versions, pc.is_valid(table.column("label"))))
    arms = rows.column("arm").to_pylist()
    answered = rows.column("version").to_numpy(zero_copy_only=False)
    keep = np.array(
        [live_arms.get(int(v)) == a for v, a in zip(answered, arms, strict=True)], dtype=bool
    )
    rows = rows.filter(keep)
    out = []
    for version in (champion, challenger):
        if rows.num_rows == 0:
            out.append(ArmFigures(version, "paired", 0, 0, {}))
            continue
        prediction = rows.column("prediction").to_numpy(zero_copy_only=False).copy()
        score = rows.column("score").to_numpy(zero_copy_only=False).astype(float).copy()
        other = rows.column("version").to_numpy(zero_copy_only=False) != version
        if other.any():
            model = _model(project, version)
            columns = {
                f.name: rows.column("f." + f.name).to_numpy(zero_copy_only=False)[other]
                for f in model.features
            }
            p, sc = model.predict(columns)
            prediction[other] = p
            if sc is not None:
                score[other] = sc
        import pyarrow as pa

        scored = pa.table({"label": rows.column("label"), "prediction": prediction, "score": score})
        values = _metrics(scored, task=task, metrics=metrics, threshold=threshold)
        out.append(ArmFigures(version, "paired", rows.num_rows, rows.num_rows, values))
    return out[0], out[1]


_MODELS: dict[tuple[str, int], Any] = {}


def _model(project: Project, version: int) -> Any:
    """A loaded version (cached per process: versions never change once registered)."""
    from kyklos.serving.model import load_version

    key = (str(project.root), version)
    if key not in _MODELS:
        _MODELS[key] = load_version(project, version)
    return _MODELS[key]


def pa_array(values: list[int]) -> Any:
    import pyarrow as pa

    return pa.array(values, type=pa.int32())


def _shared_keys(table: pa.Table, champion: int, challenger: int) -> set[tuple[str, int]]:
    import pyarrow.compute as pc

    def keys(version: int, arm: str) -> set[tuple[str, int]]:
        mask = pc.and_(
            pc.equal(table.column("version"), version), pc.equal(table.column("arm"), arm)
        )
        part = table.filter(mask)
        return set(
            zip(part.column("request_id").to_pylist(), part.column("row").to_pylist(), strict=True)
        )

    return keys(champion, "champion") & keys(challenger, "shadow")


def _more(n: int, what: str) -> str:
    return f"{n} more row{'' if n == 1 else 's'} {what}"


def _settings(project: Project) -> tuple[str, float, list[str], str, float]:
    from kyklos.config.project import infer_task

    config = project.config
    metric = config.serve.rollout.metric or config.monitor.performance.metric
    metrics = list(dict.fromkeys([metric, *config.evaluate.metrics]))
    task = infer_task(config) or "classification"
    return metric, config.serve.rollout.max_drop, metrics, task, config.evaluate.threshold


def _verdict(
    kind: str,
    metric: str,
    champion: ArmFigures,
    challenger: ArmFigures,
    max_drop: float,
    waiting: list[str],
    seconds: float,
) -> LiveComparison:
    from kyklos.monitoring.performance import metric_drop

    drop: float | None = None
    a, b = challenger.metrics.get(metric), champion.metrics.get(metric)
    if a is not None and b is not None:
        drop = metric_drop(metric, b, a)
    elif not waiting:
        waiting.append(f"{metric} cannot be computed yet on both arms (one class only?)")
    if waiting or drop is None:
        verdict = "undecided"
    elif drop > max_drop:
        verdict = "worse"
    elif drop < -1e-12:
        verdict = "better"
    else:
        verdict = "same"
    return LiveComparison(
        kind=kind,
        metric=metric,
        champion=champion,
        challenger=challenger,
        drop=drop,
        max_drop=max_drop,
        verdict=verdict,
        waiting_for=waiting,
        seconds=seconds,
    )
