"""Predict latency of one model version: scikit-learn against onnxruntime, side by side.

Scaffolds the flights project (HistGradientBoosting, 22 features, the winter flights by default),
trains it, exports v1 to ONNX (``kyklos models export v1 --format onnx``), then times
``LoadedModel.predict`` (what the server calls per batch: numpy columns in, labels and scores
out) on 1 row and on 1,000 rows with each runtime, plus the plain scikit-learn
``Pipeline.predict_proba`` on a DataFrame (what a hand-written server calls). Rounds alternate
between the runtimes so that load from other processes hits both alike; the median per call is
reported, and the ratio to onnxruntime. One thread each (threadpoolctl / intra_op_num_threads).

Usage::

    .venv/bin/python benchmarks/onnx_runtime.py [--rows N] [--rounds 30] [--calls 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="training rows (default: all)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=200, help="calls per round (1-row case)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import kyklos
    from kyklos.api.models import export_model
    from kyklos.config import load_project
    from kyklos.serving.batch import frame_columns, run_user_steps, user_steps
    from kyklos.serving.model import load_version

    work = Path(tempfile.mkdtemp(prefix="kyklos-onnx-bench-"))
    try:
        root = work / "flights"
        kyklos.init_project(root, rows=args.rows)
        started = time.perf_counter()
        kyklos.run(root)
        trained = time.perf_counter() - started
        exported = export_model("v1", project=root)
        project = load_project(root)
        onnx_model = load_version(project, 1, runtime="onnx")
        sklearn_model = load_version(project, 1, runtime="sklearn")
        import pandas as pd

        frame = run_user_steps(
            user_steps(project), pd.read_parquet(root / "data" / "flights.parquet")
        )
        pipeline = sklearn_model._model
        names = list(pipeline.feature_names_in_)
        results: dict[str, Any] = {
            "model": f"{type(pipeline.steps[-1][1]).__name__}, {len(names)} features",
            "training_rows": len(frame),
            "train_seconds": round(trained, 1),
            "export_seconds": round(exported.seconds, 2),
            "onnx_bytes": exported.onnx_bytes,
            "parity": exported.parity.summary(),
            "sklearn_compiled_preprocessing": hasattr(sklearn_model, "_compiled")
            and sklearn_model._compiled is not None,
            "cases": {},
        }
        for n in (1, 1000):
            rows = frame.iloc[:n]
            columns = frame_columns(rows, onnx_model.features)
            subject = rows[names]
            calls = args.calls if n == 1 else max(args.calls // 20, 5)
            timings = _alternate(
                {
                    "onnxruntime": lambda c=columns: onnx_model.predict(c),
                    "sklearn (kyklos)": lambda c=columns: sklearn_model.predict(c),
                    "sklearn Pipeline.predict_proba(DataFrame)": lambda s=subject: (
                        pipeline.predict_proba(s)
                    ),
                },
                rounds=args.rounds,
                calls=calls,
            )
            base = timings["onnxruntime"]
            results["cases"][f"{n} row{'s' if n > 1 else ''}"] = {
                name: {"ms": round(t * 1e3, 4), "x_onnxruntime": round(t / base, 2)}
                for name, t in timings.items()
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
        return
    print(f"model: {results['model']}, trained on {results['training_rows']:,} rows")
    print(f"export: {results['export_seconds']} s, {results['onnx_bytes'] / 1024:,.0f} KiB")
    print(f"parity: {results['parity']}")
    print(f"sklearn path with compiled preprocessing: {results['sklearn_compiled_preprocessing']}")
    for case, timings in results["cases"].items():
        print(f"\n{case}: median per predict call")
        for name, figures in timings.items():
            print(f"  {name:<44} {figures['ms']:>9.4f} ms   {figures['x_onnxruntime']:>6.2f}x")


def _alternate(
    subjects: dict[str, Callable[[], Any]], *, rounds: int, calls: int
) -> dict[str, float]:
    """Median seconds per call of each subject, rounds interleaved."""
    for fn in subjects.values():  # warm up
        for _ in range(20):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(rounds):
        for name, fn in subjects.items():
            started = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - started) / calls)
    return {name: statistics.median(values) for name, values in samples.items()}


if __name__ == "__main__":
    main()
