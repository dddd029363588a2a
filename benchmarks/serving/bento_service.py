"""The BentoML contenders of the serving benchmark: what a BentoML 1.4 user writes for this model.

``run.py`` starts them with ``bentoml serve`` from their own venv (BentoML 1.4 pins an older
OpenTelemetry than MLflow, so it cannot live in kyklos's venv)::

    BENCH_MODEL=.../model.pkl bentoml serve bento_service:Records \\
        --working-dir benchmarks/serving --host 127.0.0.1 -p 3000

``BENCH_MODEL`` names the pickled scikit-learn pipeline of the champion's MLflow model folder
(``model.pkl``, cloudpickle), loaded as ``apps.py`` loads it: no MLflow in this venv.

- ``Records``: ``POST /predict`` with ``{"rows": [record, ...]}`` (one row is a list of one)
  answers ``[{"prediction": 0 | 1, "score": p}, ...]``, one per row:
  ``predict_proba(pd.DataFrame(rows))`` in a plain ``def`` API, which BentoML runs in its thread
  pool (``threads=1``, its default).
- ``BatchedRecords``: the same API with ``@bentoml.api(batchable=True)``: BentoML's adaptive
  batching queues concurrent requests, concatenates their rows (``batch_dim`` 0) into one call,
  and splits the answers back per request. ``max_batch_size`` (100 rows) and
  ``max_latency_ms`` (60 s) are BentoML's defaults.

Both keep BentoML's defaults otherwise: 1 worker, access log and Prometheus metrics on.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import cloudpickle
import pandas as pd


def _load() -> Any:
    with open(os.environ["BENCH_MODEL"], "rb") as fh:
        return cloudpickle.load(fh)


def _answer(model: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    proba = model.predict_proba(pd.DataFrame(rows))[:, 1]
    return [{"prediction": int(p >= 0.5), "score": float(p)} for p in proba]


@bentoml.service
class Records:
    def __init__(self) -> None:
        self.model = _load()

    @bentoml.api
    def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _answer(self.model, rows)


@bentoml.service
class BatchedRecords:
    def __init__(self) -> None:
        self.model = _load()

    @bentoml.api(batchable=True)
    def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _answer(self.model, rows)
