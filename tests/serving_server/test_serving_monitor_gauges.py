"""The monitor's gauges on a real ``kyklos serve``'s ``/metrics``, after ``kyklos monitor run``."""

from __future__ import annotations

import math
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families

import kyklos

from .conftest import KYKLOS, Server, start_server

ROWS = 1_000  # the default window: {rows: 1000}


@pytest.fixture(scope="module")
def served(trained: Path) -> Iterator[Server]:
    srv = start_server(trained)
    yield srv
    srv.stop()


def _summer_columns(project: Path, features: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """1,000 flights of July through the project's own user steps: the model's features."""
    from kyklos.config import load_project
    from kyklos.serving.batch import user_steps

    table = pq.read_table(kyklos.__path__[0] + "/datasets/flights.parquet")
    july = table.filter(pc.equal(table.column("month"), 7)).slice(0, ROWS)
    frame = july.to_pandas()
    for step in user_steps(load_project(project)):
        frame = step(frame)
    columns: dict[str, list[Any]] = {}
    for feature in features:
        values = frame[feature["name"]].tolist()
        columns[feature["name"]] = [
            None if isinstance(v, float) and math.isnan(v) else v for v in values
        ]
    return columns


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def test_metrics_show_the_drift_gauges_of_the_stored_monitor_result(
    served: Server, trained: Path
) -> None:
    with served.client() as client:
        before = _samples(client.get("/metrics").text)
        assert "kyklos_requests_total" in before or "kyklos_queue_depth" in before
        assert "kyklos_drift_score" not in before  # nothing stored yet

        model = client.get("/model").json()["model"]
        columns = _summer_columns(trained, model["features"])
        for start in range(0, ROWS, 250):
            part = {name: values[start : start + 250] for name, values in columns.items()}
            answer = client.post("/predict", json={"columns": part})
            assert answer.status_code == 200, answer.text

    done = subprocess.run(
        [KYKLOS, "monitor", "run", "--no-reports"],
        cwd=trained,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "KYKLOS_TOKEN"},
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    stored = kyklos.monitor_show(trained)
    assert len(stored) == 1 and stored[0].model_version == model["version"]
    result = stored[0].result

    # the server reads the store at most every 5 s: poll until the gauges appear
    deadline = time.monotonic() + 60
    with served.client() as client:
        while True:
            samples = _samples(client.get("/metrics").text)
            if "kyklos_drift_score" in samples:
                break
            assert time.monotonic() < deadline, "the monitor gauges never appeared on /metrics"
            time.sleep(0.5)

    labels = {"model": model["name"], "version": str(model["version"])}
    scores = {
        s[0]["feature"]: s[1]
        for s in samples["kyklos_drift_score"]
        if {k: s[0][k] for k in labels} == labels
    }
    assert scores == pytest.approx({f.feature: f.statistic for f in result.features})
    [(share_labels, share)] = samples["kyklos_dataset_drift_share"]
    assert share_labels == labels and share == pytest.approx(result.share_drifted)
    [(_, rows)] = samples["kyklos_monitor_window_rows"]
    assert rows == ROWS
    [(_, stored_at)] = samples["kyklos_monitor_last_check_timestamp_seconds"]
    assert stored_at == pytest.approx(stored[0].created_at.timestamp())
    drifted = {s[0]["feature"] for s in samples["kyklos_feature_drifted"] if s[1] == 1.0}
    assert drifted == {f.feature for f in result.features if f.drifted}
    assert drifted  # July against the January training data: the weather drifted
    # the serving metrics are still there, in the same scrape
    assert (
        {**labels, "endpoint": "predict", "status": "200"},
        ROWS / 250,
    ) in samples["kyklos_requests_total"]
