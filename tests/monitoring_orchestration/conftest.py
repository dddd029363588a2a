"""A trained flights project (v1 champion, v2), copied per test, and prediction-log helpers.

Training happens once per session (two real runs into a real MLflow store); each test gets its
own copy of the folder, so its metadata DB, log and reports are its own.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import kyklos
from kyklos.data.predlog import PredictionLogWriter
from kyklos.store.db import close_all

MODEL = "p"  # the project (and registered model) name


@pytest.fixture(scope="session")
def _trained(tmp_path_factory: pytest.TempPathFactory, _mlflow_template: Path) -> Path:
    root = tmp_path_factory.mktemp("trained") / MODEL
    kyklos.init_project(root, rows=6000)
    (root / ".kyklos").mkdir(exist_ok=True)
    shutil.copyfile(_mlflow_template, root / ".kyklos" / "mlflow.db")
    first = kyklos.run(root)
    second = kyklos.run(root, overrides={"model.params.max_iter": 20})
    assert (first.model_version, second.model_version) == (1, 2)
    close_all()
    return root


@pytest.fixture
def project(_trained: Path, tmp_path: Path) -> Iterator[Path]:
    """A fresh copy of the trained project (v1 champion, v2 registered)."""
    root = tmp_path / MODEL
    shutil.copytree(_trained, root)
    yield root
    close_all()


@pytest.fixture(scope="session")
def flights(flights_path: Path) -> pa.Table:
    """All flights, with the features the project's own step adds (what serving logs)."""
    return add_step_features(pq.read_table(flights_path))


def add_step_features(table: pa.Table) -> pa.Table:
    """``day_of_week``, ``is_weekend``, ``dep_hour_local`` as the scaffolded steps.py adds them."""
    when = pd.Series(table.column("time_hour").to_pandas()).dt.tz_convert("America/New_York")
    day_of_week = when.dt.day_of_week.to_numpy().astype("int8")
    sched = np.asarray(table.column("sched_dep_time").to_numpy(zero_copy_only=False))
    return (
        table.append_column("day_of_week", pa.array(day_of_week))
        .append_column("is_weekend", pa.array((day_of_week >= 5).astype("int8")))
        .append_column("dep_hour_local", pa.array((sched // 100).astype("int8")))
    )


def months(table: pa.Table, *wanted: int) -> pa.Table:
    return table.filter(
        pc.is_in(table.column("month"), pa.array(wanted, table.column("month").type))
    )


LogWriter = Callable[..., list[str]]


@pytest.fixture
def write_log(project: Path) -> LogWriter:
    """``write_log(rows, version=1, ts=None, batch=100)`` logs ``rows`` (a flights table) as
    answered by ``version`` with the real writer; returns the request ids. ``ts`` (µs since
    the epoch, one per row) defaults to the flights' ``time_hour``."""
    features = _features(project)

    def write(
        rows: pa.Table,
        *,
        version: int = 1,
        ts: np.ndarray | None = None,
        batch: int = 100,
        prefix: str = "r",
        writer: PredictionLogWriter | None = None,
    ) -> list[str]:
        times = (
            ts
            if ts is not None
            else rows.column("time_hour").cast(pa.int64()).to_numpy(zero_copy_only=False)
        )
        scores = synthetic_scores(rows)
        ids: list[str] = []
        own = writer is None
        if writer is None:
            writer = PredictionLogWriter(
                project / ".kyklos" / "logs", features=features, fsync=False
            )
        try:
            for start in range(0, rows.num_rows, batch):
                part = rows.slice(start, batch)
                n = part.num_rows
                rid = f"{prefix}-v{version}-{start}"
                ids.append(rid)
                record: dict[str, object] = {
                    "request_id": rid,
                    "model": MODEL,
                    "version": version,
                    "ts": np.asarray(times[start : start + n], dtype=np.int64),
                    "prediction": (scores[start : start + n] >= 0.5).astype(float),
                    "score": scores[start : start + n],
                    "latency_ms": 1.0,
                }
                for name, kind in features:
                    column = part.column(name)
                    record[f"f.{name}"] = (
                        column.cast(pa.float64()).to_numpy(zero_copy_only=False)
                        if kind == "numeric"
                        else column.to_pylist()
                    )
                writer.append(record)
            writer.flush()
        finally:
            if own:
                writer.close()
        return ids

    return write


@pytest.fixture
def open_writer(project: Path) -> Iterator[PredictionLogWriter]:
    """A prediction-log writer left open (its rows stay in a live WAL until closed)."""
    writer = PredictionLogWriter(
        project / ".kyklos" / "logs", features=_features(project), fsync=False
    )
    yield writer
    writer.close()


@pytest.fixture
def write_labels(project: Path) -> Callable[[list[str], pa.Table, int], None]:
    """``write_labels(request_ids, rows, batch)``: the ``late`` column of ``rows`` as labels."""
    from kyklos.data.predlog import LabelLogWriter

    def write(ids: list[str], rows: pa.Table, batch: int = 100) -> None:
        late = rows.column("late").cast(pa.float64()).to_numpy(zero_copy_only=False)
        writer = LabelLogWriter(project / ".kyklos" / "logs", fsync=False)
        try:
            for i, rid in enumerate(ids):
                labels = late[i * batch : (i + 1) * batch]
                writer.append({"request_id": rid, "label": labels})
            writer.flush()
        finally:
            writer.close()

    return write


def synthetic_scores(rows: pa.Table) -> np.ndarray:
    """A deterministic stand-in for the model's probabilities (later departures: later)."""
    hour = np.asarray(rows.column("dep_hour_local").to_numpy(zero_copy_only=False), float)
    precip = np.nan_to_num(np.asarray(rows.column("precip").to_numpy(zero_copy_only=False), float))
    return 1.0 / (1.0 + np.exp(-(0.15 * (hour - 14.0) + 8.0 * precip - 1.2)))


def _features(project: Path) -> list[tuple[str, str]]:
    from kyklos.config import load_project
    from kyklos.registry import ModelRegistry

    version = ModelRegistry.for_project(load_project(project)).get(1)
    assert version.profile is not None
    kinds = {c["name"]: c["kind"] for c in version.profile["features"]["columns"]}
    return [
        (name, "numeric" if kind == "numeric" else "categorical") for name, kind in kinds.items()
    ]


def set_window(project: Path, window: str) -> None:
    """Add ``monitor: {window: <window>}`` to the project file."""
    path = project / "kyklos.yaml"
    path.write_text(path.read_text() + f"\nmonitor:\n  window: {window}\n")
