"""The closed loop, measured: the flights replay of ``kyklos demo`` through a live server.

Prints, from drift onset in the replayed traffic: the first drifted monitor window, the retrain
trigger (after enough labels arrived), the challenger registered, the promotion and the new
champion serving; requests failed during the switches; and ROC AUC of what was served before
and after the loop acted, against the first model never retrained, on the same rows (the
anchor: what a team without the loop would have served).

    .venv/bin/python benchmarks/loop/run.py [--fast] [--json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="the short replay of `demo --fast`")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--keep", help="run in this folder and keep it")
    args = parser.parse_args()

    from kyklos import __version__
    from kyklos.api.demo import run_demo

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="kyklos-loop-"))
    try:
        result = run_demo(folder / "project", fast=args.fast, force=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    data = result.to_dict()
    data["machine"] = {
        "python": platform.python_version(),
        "kyklos": __version__,
        "cpus": __import__("os").cpu_count(),
        "platform": platform.platform(),
    }
    if args.json:
        json.dump(data, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    print(
        f"kyklos {__version__}, Python {platform.python_version()}, {data['machine']['cpus']} CPUs"
    )
    print(f"replay: {result.requests:,} requests, {result.failed_requests} failed")
    print("seconds from drift onset:")
    for name, value in result.timings.items():
        if name != "drift_onset_s":
            print(f"  {name.replace('_', ' '):<24} {value if value is not None else '-':>8}")
    print("ROC AUC served vs the first model never retrained (same rows):")
    for row in result.quality:
        base_key = next(k for k in row if k.startswith("roc_auc_v"))
        ratio = row["roc_auc_served"] - row[base_key]
        print(
            f"  {row['period']:<28} {row['rows']:>7,} rows  served {row['roc_auc_served']:.3f}"
            f"  never retrained {row[base_key]:.3f}  ({ratio:+.3f})"
        )
    print(f"total {result.seconds:.0f} s")


if __name__ == "__main__":
    main()
