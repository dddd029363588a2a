"""Training data for a retrain, per the policy's ``retrain.data``.

* ``recent``: the latest labelled rows of the prediction log (``retrain.recent_rows``, or those
  of the last ``retrain.recent_duration``), features as the server received them and the label
  as the target;
* ``all``: every labelled row of the log;
* ``reference_and_recent``: the champion's own training dataset version, followed by the recent
  rows (the model keeps what it knew and learns what changed).

Canary and champion rows are both used (each is real traffic with its label); shadow rows are
copies of champion rows and are skipped. The table becomes a dataset version like any other,
with the champion's dataset as parent and the log window it came from in its ``source`` and
``note`` (lineage from the new model back to the traffic that taught it).

Logged features are the model's inputs, i.e. the *outputs* of the project's user steps; the
reference rows are put through the same user steps, and the retrain runs without them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from kyklos.config import Project
    from kyklos.data.versions import DatasetVersion
    from kyklos.registry.models import ModelVersion

__all__ = ["TrainingData", "labelled_rows", "training_data"]


@dataclass(frozen=True)
class TrainingData:
    """The dataset version a cycle trains on, and where its rows came from."""

    dataset: DatasetVersion | None
    created: bool
    recent_rows: int
    reference_rows: int
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    reason: str = ""  # why there is no dataset (too few labelled rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_version": self.dataset.id if self.dataset is not None else None,
            "created": self.created,
            "recent_rows": self.recent_rows,
            "reference_rows": self.reference_rows,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "reason": self.reason,
        }


def training_data(
    project: Project, champion: ModelVersion, *, now: dt.datetime | None = None
) -> TrainingData:
    """Build (or find) the dataset version for a retrain of ``project`` (see the module doc)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from kyklos.config.project import parse_duration
    from kyklos.data.predlog import PredictionLog
    from kyklos.data.versions import DatasetStore

    policy = project.config.retrain
    target = project.config.data.target
    signature = champion.signature or {}
    names = [str(n) for n in signature.get("features") or []] or None
    since = None
    if policy.data != "all" and policy.recent_duration:
        since = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(
            seconds=parse_duration(policy.recent_duration)
        )
    log = PredictionLog.for_project(project)
    joined = log.joined(since=since)
    joined = joined.filter(pc.not_equal(joined.column("arm"), "shadow"))
    joined = joined.filter(pc.is_valid(joined.column("label")))
    if policy.data != "all" and not policy.recent_duration:
        joined = joined.slice(max(0, joined.num_rows - policy.recent_rows))
    if joined.num_rows < policy.min_labelled:
        return TrainingData(
            None,
            False,
            joined.num_rows,
            0,
            None,
            None,
            reason=f"{joined.num_rows} labelled rows in the prediction log; the policy needs "
            f"{policy.min_labelled} (retrain.min_labelled)",
        )
    prefix = "f."
    logged = [c for c in joined.column_names if c.startswith(prefix)]
    if names is not None:
        logged = [prefix + n for n in names if prefix + n in joined.column_names]
    recent = pa.table({c[len(prefix) :]: joined.column(c) for c in logged})
    label = joined.column("label")
    if (
        signature.get("task") == "classification"
        and pc.all(pc.equal(label, pc.floor(label))).as_py()
    ):
        label = label.cast(pa.int64())
    recent = recent.append_column(target, label)
    time_column = project.config.data.time_column
    if time_column and time_column not in recent.column_names:
        recent = recent.append_column(time_column, joined.column("ts"))
    start = joined.column("ts")[0].as_py()
    end = joined.column("ts")[-1].as_py()
    datasets = DatasetStore.for_project(project)
    reference_rows = 0
    table = recent
    parents: list[str] = []
    if policy.data == "reference_and_recent" and champion.dataset_version_id:
        reference = _reference(project, datasets, champion.dataset_version_id, recent.schema)
        reference_rows = reference.num_rows
        table = pa.concat_tables([reference, recent])
        parents.append(champion.dataset_version_id)
    elif champion.dataset_version_id:
        parents.append(champion.dataset_version_id)
    source = f"predlog:{project.state_dir / 'logs'}#{_iso(start)}..{_iso(end)}"
    note = (
        f"loop retrain data ({policy.data}): {recent.num_rows} labelled logged rows "
        f"{_iso(start)} .. {_iso(end)}"
        + (
            f" after {reference_rows} rows of {champion.dataset_version_id}"
            if reference_rows
            else ""
        )
    )
    version, created = datasets.add(
        source, name=project.dataset_name, parents=parents, note=note, table=table
    )
    return TrainingData(version, created, recent.num_rows, reference_rows, start, end)


def labelled_rows(project: Project) -> int:
    """Labelled rows in the prediction log (shadow copies not counted)."""
    import pyarrow.compute as pc

    from kyklos.data.predlog import PredictionLog

    joined = PredictionLog.for_project(project).joined(columns=["arm"])
    if joined.num_rows == 0:
        return 0
    mask = pc.and_(
        pc.is_valid(joined.column("label")), pc.not_equal(joined.column("arm"), "shadow")
    )
    return int(pc.sum(mask.cast("int64")).as_py() or 0)


def _reference(project: Project, datasets: Any, ref: str, schema: pa.Schema) -> pa.Table:
    """The champion's training rows with the user steps applied, in ``schema``'s columns."""
    import pyarrow as pa

    table = datasets.load(ref)
    steps = _user_steps(project)
    if steps:
        from kyklos.serving.batch import run_user_steps

        frame = run_user_steps(steps, table.to_pandas())
        from kyklos.data.table import frame_to_arrow

        table = frame_to_arrow(frame)
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        from kyklos.errors import DataError

        raise DataError(
            f"the champion's training data {ref} lacks {', '.join(missing)}, which the logged "
            "rows have. Hint: use retrain.data: recent"
        )
    columns = []
    for f in schema:
        column = table.column(f.name)
        columns.append(column.cast(f.type) if column.type != f.type else column)
    return pa.table(dict(zip(schema.names, columns, strict=True)))


def _user_steps(project: Project) -> list[Any]:
    from kyklos.serving.batch import user_steps

    return list(user_steps(project))


def _iso(value: Any) -> str:
    return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else str(value)
