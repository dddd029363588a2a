"""CLI start-up time: ``kyklos --help`` next to its anchors ``mlflow --help`` and ``dvc --help``.

Each command runs in a fresh process (``subprocess``), as a user types it. We report the first
run (coldest: the OS file cache may still be warm from earlier work, so it is a lower bound of a
true cold start) and the median of ``--runs`` warm runs after one warm-up. When ``hyperfine`` is on
PATH it measures the same commands too (``--warmup 1``), as an independent check.

An anchor that is not installed is listed as such. The ratio is anchor / kyklos (how many times
faster kyklos starts).

    python benchmarks/cli_startup.py [--runs 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
TOOLS = ("kyklos", "mlflow", "dvc")


def executable(name: str) -> str | None:
    """The tool next to this interpreter (the venv), else on PATH."""
    local = BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def time_once(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def measure(command: list[str], runs: int) -> dict[str, float]:
    first = time_once(command)
    time_once(command)  # warm-up
    warm = [time_once(command) for _ in range(runs)]
    return {
        "first_ms": first * 1000,
        "median_ms": statistics.median(warm) * 1000,
        "min_ms": min(warm) * 1000,
        "max_ms": max(warm) * 1000,
    }


def hyperfine(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Mean ms per tool from hyperfine, or {} when hyperfine is not installed."""
    binary = shutil.which("hyperfine")
    if binary is None or not commands:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "hyperfine.json"
        args = [binary, "--warmup", "1", "--runs", str(runs), "--export-json", str(out), "-N"]
        names: list[str] = []
        for name, command in commands.items():
            args += ["--command-name", name, " ".join(command)]
            names.append(name)
        subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        results = json.loads(out.read_text())["results"]
    return {r["command"]: r["median"] * 1000 for r in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="warm runs per tool (default 15)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    commands = {name: [path, "--help"] for name in TOOLS if (path := executable(name)) is not None}
    if "kyklos" not in commands:
        sys.exit("kyklos is not installed: pip install -e '.[dev]'")
    results = {name: measure(command, args.runs) for name, command in commands.items()}
    for name, ms in hyperfine(commands, args.runs).items():
        results[name]["hyperfine_median_ms"] = ms
    base = results["kyklos"]["median_ms"]
    for row in results.values():
        row["ratio_vs_kyklos"] = row["median_ms"] / base

    if args.json:
        print(json.dumps({"runs": args.runs, "results": results, "missing": missing(commands)}))
        return
    print(f"CLI start-up, `<tool> --help`, median of {args.runs} warm runs (subprocess)")
    header = f"{'tool':<8} {'first ms':>9} {'median ms':>10} {'min ms':>8} {'hyperfine ms':>13} {'× kyklos':>9}"
    print(header)
    print("-" * len(header))
    for name, row in results.items():
        hf = row.get("hyperfine_median_ms")
        print(
            f"{name:<8} {row['first_ms']:>9.0f} {row['median_ms']:>10.0f} {row['min_ms']:>8.0f} "
            f"{'-' if hf is None else f'{hf:.0f}':>13} {row['ratio_vs_kyklos']:>9.1f}"
        )
    for name in missing(commands):
        print(f"{name:<8} not installed")
    if not shutil.which("hyperfine"):
        print("(hyperfine not on PATH: subprocess timings only)")


def missing(commands: dict[str, list[str]]) -> list[str]:
    return [name for name in TOOLS if name not in commands]


if __name__ == "__main__":
    main()
