"""Benchmark (not a test): tracking cost per run, kyklos Tracker vs hand-written MLflow logging.

Both sides log the same things to their own fresh SQLite store: 20 params, 12 metrics, 2 tags, a
dataset input with a digest, 3 plots + environment.json, and a HistGradientBoosting model
(cloudpickle, signature, input example, the same pinned requirements). Runs alternate, in one
process, after one warm-up run each; medians. Measured figures: BENCHMARKS.md.

    .venv/bin/python benchmarks/tracking_cost.py [N_RUNS]
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any


def main(n_runs: int) -> None:
    warnings.simplefilter("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import mlflow
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from sklearn.ensemble import HistGradientBoostingClassifier

    from kyklos.registry import Tracker
    from kyklos.registry.signature import pip_requirements

    root = Path(tempfile.mkdtemp(prefix="bench-"))
    rng = np.random.default_rng(0)
    x = pd.DataFrame({f"x{i}": rng.normal(size=2000) for i in range(10)})
    y = (x.x0 + rng.normal(size=2000) > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=50).fit(x, y)
    params = {f"p{i}": i for i in range(20)}
    metrics = {f"m{i}": float(i) / 10 for i in range(12)}
    tags = {"kyklos.seed": "42", "mlflow.source.git.commit": "a" * 40}
    plots = {f"plots/{n}.png": os.urandom(30_000) for n in ("roc", "pr", "confusion")}
    env = {"python": "3.11", "numpy": "2"}
    reqs = pip_requirements(model)

    tracker = Tracker(
        f"sqlite:///{root}/k.db", artifact_location=(root / "k-art").as_uri(), experiment="bench"
    )
    _ = tracker.experiment_id
    mlflow.set_tracking_uri(f"sqlite:///{root}/m.db")
    mlflow.create_experiment("bench", artifact_location=(root / "m-art").as_uri())
    mlflow.set_experiment("bench")

    def kyklos_run() -> None:
        run_id = tracker.start_run(run_name="r", tags=tags)
        tracker.log(run_id, params=params, metrics=metrics)
        tracker.log_dataset(
            run_id,
            name="flights",
            digest="d" * 64,
            source="/data/flights.parquet",
            n_rows=2000,
            schema=dict.fromkeys(x.columns, "double"),
        )
        tracker.log_artifacts(run_id, {**plots, "environment.json": json.dumps(env).encode()})
        tracker.log_model(run_id, model, input_example=x.head(5), pip_requirements=reqs)
        tracker.end_run(run_id)

    def mlflow_run() -> None:
        with mlflow.start_run(run_name="r", tags=tags):
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            source = HTTPDatasetSource("https://example.org/flights.parquet")
            mlflow.log_input(
                MetaDataset(source, name="flights", digest="d" * 32), context="training"
            )
            with tempfile.TemporaryDirectory() as tmp:
                for key, data in plots.items():
                    target = Path(tmp, key)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                mlflow.log_artifacts(tmp)
            mlflow.log_dict(env, "environment.json")
            signature = mlflow.models.infer_signature(x.head(5), model.predict(x.head(5)))
            mlflow.sklearn.log_model(
                model,
                name="model",
                serialization_format="cloudpickle",
                signature=signature,
                input_example=x.head(5),
                pip_requirements=reqs,
            )

    kyklos_run()  # warm up both
    mlflow_run()
    timings: dict[str, list[float]] = {"kyklos": [], "mlflow": []}
    runners: dict[str, Any] = {"kyklos": kyklos_run, "mlflow": mlflow_run}
    for _ in range(n_runs):
        for name, fn in runners.items():
            start = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - start)
    k, m = (statistics.median(timings[n]) * 1000 for n in ("kyklos", "mlflow"))
    print(f"kyklos Tracker {k:.0f} ms/run, hand-written MLflow {m:.0f} ms/run, ratio {k / m:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
