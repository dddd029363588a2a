"""Benchmark (not a test): durable prediction-log throughput, group commit vs fsync per request.

THREADS threads each append single-row requests (a prediction, a score and 2 features, like a
server answering one row) and wait until each is durable before the next, as a server does
before it answers. kyklos's ``PredictionLogWriter`` (group commit: one write + one fdatasync for
every request that arrived meanwhile) runs side by side with the anchor: an Arrow IPC
write-ahead file (kyklos's format before its row frames) written with one write + one fdatasync
per request under a lock (what a hand-written durable logger does). Runs alternate, after a warm-up; medians are printed, with
the ratio. Also printed: the latency of one durable append with a single thread, and the rate
with durability off (no fdatasync) to show what the fsyncs cost.

    .venv/bin/python benchmarks/predlog_throughput.py [--threads 64] [--records 64000]
        [--anchor-records 8000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kyklos.data.predlog import PredictionLogWriter, prediction_schema

FEATURES = [("distance", "numeric"), ("carrier", "categorical")]


def request(request_id: str) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "model": "flights",
        "version": 3,
        "latency_ms": 0.4,
        "prediction": 1.0,
        "score": 0.81,
        "f.distance": 1089.0,
        "f.carrier": "UA",
    }


class FsyncPerRequest:
    """The anchor: an Arrow IPC WAL, one write + fdatasync per request, under a lock."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.schema = prediction_schema(FEATURES)
        self.arrow = self.schema.arrow("naive")
        self.fd = os.open(folder / "wal-naive.arrows", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(self.fd, self.arrow.serialize().to_pybytes())
        self.lock = threading.Lock()
        self.seq = 0

    def append_and_wait(self, records: dict[str, Any]) -> None:
        batch = self.schema.normalize(records)
        with self.lock:
            data = self.schema.build(
                [batch], writer="naive", first_seq=self.seq, schema=self.arrow
            ).serialize()
            os.write(self.fd, data)
            os.fdatasync(self.fd)
            self.seq += batch.rows

    def close(self) -> None:
        os.close(self.fd)


def drive(append_and_wait: Callable[[dict[str, Any]], None], threads: int, per: int) -> float:
    """Records per second of ``threads`` threads doing ``per`` durable appends each."""
    start = threading.Barrier(threads + 1)

    def work(t: int) -> None:
        start.wait()
        for i in range(per):
            append_and_wait(request(f"{t}-{i}"))

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in pool:
        thread.join()
    return threads * per / (time.perf_counter() - began)


def run_kyklos(threads: int, per: int, *, fsync: bool = True) -> tuple[float, float]:
    folder = Path(tempfile.mkdtemp(prefix="predlog-bench-"))
    try:
        writer = PredictionLogWriter(folder, features=FEATURES, fsync=fsync)
        rate = drive(lambda r: writer.append(r).wait(), threads, per)
        stats = writer.stats()
        writer.close()
        return rate, stats.rows / max(stats.commits, 1)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_anchor(threads: int, per: int) -> float:
    folder = Path(tempfile.mkdtemp(prefix="predlog-bench-"))
    try:
        writer = FsyncPerRequest(folder)
        rate = drive(writer.append_and_wait, threads, per)
        writer.close()
        return rate
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def single_latency(n: int = 2000) -> float:
    """Median microseconds of one durable single-row append with one thread."""
    folder = Path(tempfile.mkdtemp(prefix="predlog-bench-"))
    try:
        writer = PredictionLogWriter(folder, features=FEATURES)
        times = []
        for i in range(n):
            began = time.perf_counter()
            writer.append(request(str(i))).wait()
            times.append(time.perf_counter() - began)
        writer.close()
        return statistics.median(times) * 1e6
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--records", type=int, default=64_000, help="per run, over all threads")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--anchor-records", type=int, default=8_000, help="per anchor run (it is slow)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    per = max(args.records // args.threads, 1)

    run_kyklos(args.threads, max(per // 10, 1))  # warm-up
    run_anchor(args.threads, max(per // 10, 1))
    kyklos_rates, anchor_rates, group_sizes = [], [], []
    for _ in range(args.repeat):
        rate, group = run_kyklos(args.threads, per)
        kyklos_rates.append(rate)
        group_sizes.append(group)
        anchor_rates.append(run_anchor(args.threads, max(args.anchor_records // args.threads, 1)))
    no_fsync, _ = run_kyklos(args.threads, per, fsync=False)
    result = {
        "threads": args.threads,
        "records_per_run": per * args.threads,
        "repeat": args.repeat,
        "kyklos_group_commit_records_per_s": round(statistics.median(kyklos_rates)),
        "anchor_fsync_per_request_records_per_s": round(statistics.median(anchor_rates)),
        "ratio": round(statistics.median(kyklos_rates) / statistics.median(anchor_rates), 2),
        "rows_per_group_commit": round(statistics.median(group_sizes), 1),
        "kyklos_durability_off_records_per_s": round(no_fsync),
        "single_thread_durable_append_p50_us": round(single_latency(), 1),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"durable single-row appends, {args.threads} threads, {per * args.threads:,} per run")
    print(f"  kyklos group commit      {result['kyklos_group_commit_records_per_s']:>9,} rec/s")
    print(
        f"  anchor fsync per request {result['anchor_fsync_per_request_records_per_s']:>9,} rec/s"
    )
    print(f"  ratio                    {result['ratio']:>9}x")
    print(f"  rows per group commit    {result['rows_per_group_commit']:>9}")
    print(f"  kyklos, durability off   {result['kyklos_durability_off_records_per_s']:>9,} rec/s")
    print(f"  1 thread: durable append p50 {result['single_thread_durable_append_p50_us']} µs")


if __name__ == "__main__":
    main()
