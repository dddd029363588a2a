"""A trained flights project whose prediction log is written the way the server writes it:
real model predictions, the real log writers, labels joined by request id."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import kyklos
from kyklos.config import Project, load_project
from kyklos.data.table import frame_to_arrow
from project.conftest import edit_yaml, make_project

__all__ = ["LOOP_POLICY", "Loop", "loop_project", "make_project"]

LOOP_POLICY = """
serve:
  rollout: {strategy: canary, fraction: 0.5, min_requests: 200, min_labelled: 200}
monitor:
  window: {rows: 1000}
  drift: {method: psi}
  performance: {metric: roc_auc, max_drop: 0.03}
retrain:
  "on": [drift, performance]
  data: reference_and_recent
  recent_rows: 3000
  min_labelled: 1000
  cooldown: 0s
  max_per_day: 10
  watch_labelled: 200
  rollback_margin: 0.03
"""

_ids = itertools.count()


@dataclass
class Loop:
    """A project with a champion, and ways to put traffic in its prediction log."""

    root: Path
    summer: pa.Table  # June–July flights (after the project's steps), in time order

    @property
    def project(self) -> Project:
        return load_project(self.root, env={})

    def serve(
        self,
        rows: pa.Table,
        *,
        version: int,
        arm: str = "champion",
        labels: bool = True,
        flip: bool = False,
        batch: int = 100,
    ) -> list[str]:
        """Log ``rows`` as answered by ``version`` under ``arm`` (its real predictions, or
        their opposite with ``flip``), and post their labels (``late``)."""
        from kyklos.data.predlog import LabelLogWriter, PredictionLogWriter
        from kyklos.serving.model import load_version

        project = self.project
        model = load_version(project, version)
        features = [(f.name, f.kind) for f in model.features]
        logs = project.state_dir / "logs"
        ids: list[str] = []
        with (
            PredictionLogWriter(logs, features=features, fsync=False) as writer,
            LabelLogWriter(logs, fsync=False) as label_writer,
        ):
            for start in range(0, rows.num_rows, batch):
                part = rows.slice(start, batch)
                columns = {
                    name: (
                        part.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False)
                        if kind == "numeric"
                        else np.asarray(part.column(name).to_pylist(), dtype=object)
                    )
                    for name, kind in features
                }
                prediction, score = model.predict(columns)
                if flip:
                    assert score is not None
                    score = 1.0 - score
                    prediction = (score >= 0.5).astype(float)
                rid = f"req-{next(_ids)}"
                ids.append(rid)
                record: dict[str, Any] = {
                    "request_id": rid,
                    "model": model.name,
                    "version": version,
                    "arm": arm,
                    "prediction": prediction,
                    "score": score,
                    "latency_ms": 1.0,
                }
                for name, _ in features:
                    record["f." + name] = columns[name]
                writer.append(record)
                if labels:
                    label_writer.append(
                        {
                            "request_id": rid,
                            "label": part.column("late").cast(pa.float64()).to_numpy(),
                        }
                    )
            writer.flush()
            label_writer.flush()
        return ids


@pytest.fixture
def loop_project(make_project: Callable[..., Path]) -> Iterator[Loop]:
    """Trained on 6000 January flights (v1 champion) with the loop policy above."""
    root = make_project(rows=6000, name="loop")
    edit_yaml(root, "    max_iter: 100", "    max_iter: 30")
    text = (root / "kyklos.yaml").read_text()
    (root / "kyklos.yaml").write_text(text + LOOP_POLICY)
    outcome = kyklos.run(root)
    assert outcome.model_version == 1
    yield Loop(root, _summer(root))


def _summer(root: Path) -> pa.Table:
    from kyklos.serving.batch import user_steps

    source = pq.read_table(Path(kyklos.__file__).parent / "datasets" / "flights.parquet")
    months = source.column("month")
    summer = source.filter(pc.and_(pc.greater_equal(months, 6), pc.less_equal(months, 7)))
    summer = summer.sort_by("time_hour").take(np.arange(0, summer.num_rows, 8)[:8000])
    frame = summer.to_pandas()
    for step in user_steps(load_project(root, env={})):
        frame = step(frame)
    return frame_to_arrow(frame)
