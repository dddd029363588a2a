"""Benchmark (not a test): the cost of logging one one-row prediction, row frame vs Arrow batch.

What ``kyklos serve`` pays per single-row request to log it (no fsync, committed on the event
loop): ``LogWriter.append_async`` of a record with the flights model's 22 features. Beside it,
the two ways one group commit of that row can reach the WAL, each timed alone on the same
normalised record: the row frame kyklos writes (``encode_rows``: ``marshal`` + CRC-32) and the
Arrow record batch it wrote before (``LogSchema.build`` + IPC serialisation, the anchor).
Medians of ``--repeat`` rounds of ``--appends`` appends.

    .venv/bin/python benchmarks/predlog_append.py [--appends 3000] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kyklos.data.predlog import PredictionLogWriter
from kyklos.data.predlog_frames import encode_arrow, encode_rows

FEATURES = [(f"num_{i:02d}", "numeric") for i in range(18)] + [
    (f"cat_{i}", "categorical") for i in range(4)
]


def record() -> dict[str, Any]:
    """One answered row as the server logs it: numpy columns of one value."""
    out: dict[str, Any] = {
        "request_id": "0f8c2a1e9b7d4c3a8e6f5b4a3c2d1e0f",
        "model": "flights",
        "version": 3,
        "endpoint": "predict",
        "latency_ms": 0.41,
        "prediction": np.array([1.0]),
        "score": np.array([0.73]),
    }
    for name, kind in FEATURES:
        out["f." + name] = np.array([1089.5]) if kind == "numeric" else np.array(["UA"], object)
    return out


def timed(fn: Callable[[], Any], number: int, repeat: int) -> float:
    """Median microseconds per call."""
    fn()
    rounds = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        rounds.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rec = record()
    with tempfile.TemporaryDirectory() as folder:
        writer = PredictionLogWriter(Path(folder), features=FEATURES, fsync=False)
        schema = writer._schema
        arrow = schema.arrow(writer.writer_id)
        normalized = schema.normalize(rec)

        async def appends() -> float:
            rounds = []
            await writer.append_async(rec)
            for _ in range(args.repeat):
                start = time.perf_counter()
                for _ in range(args.appends):
                    await writer.append_async(rec)
                rounds.append((time.perf_counter() - start) / args.appends * 1e6)
            return statistics.median(rounds)

        results = {
            "append_async, 1 row (normalise + frame + write + await)": asyncio.run(appends()),
            "normalise the record": timed(lambda: schema.normalize(rec), args.appends, args.repeat),
            "row frame (kyklos)": timed(
                lambda: encode_rows(0, [normalized.values]), args.appends, args.repeat
            ),
            "Arrow record batch frame (anchor)": timed(
                lambda: encode_arrow(
                    schema.build([normalized], writer="w", first_seq=0, schema=arrow)
                ),
                args.appends,
                args.repeat,
            ),
        }
        writer.close()
    ratio = results["Arrow record batch frame (anchor)"] / results["row frame (kyklos)"]
    if args.json:
        print(json.dumps({"us": results, "arrow_over_rows": ratio}, indent=1))
        return
    print(f"one one-row record, {len(FEATURES)} features (µs, median of {args.repeat}):")
    for name, value in results.items():
        print(f"  {name:58s} {value:8.1f}")
    print(f"  Arrow batch ÷ row frame: {ratio:.1f}×")


if __name__ == "__main__":
    main()
