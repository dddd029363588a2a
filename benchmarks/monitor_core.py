"""Time and memory of the monitoring core: ``check_drift`` on one window against a stored profile.

The window has 20 numeric and 5 categorical features (drift injected in 5: three numeric, two
categorical); the reference profile is computed once beforehand (its time is reported apart,
as it happens at training time). The check runs in a fresh child process, so its memory is
measured cleanly: RSS before loading the window, after loading it, and the peak while checking
(the kernel's high-water mark is reset after the load). The anchor is what a user would write
by hand: scipy's ``ks_2samp`` per numeric column and ``chisquare`` per categorical one, on the
raw reference and window (the reference rows are loaded only after kyklos is measured).

    .venv/bin/python benchmarks/monitor_core.py [--rows 1000000] [--reference-rows 1000000]
        [--repeat 5] [--chunk-rows 0] [--threads N] [--no-anchor] [--json]

``--chunk-rows N`` also streams the window through ``DriftAccumulator`` in chunks of N rows.
``--threads N`` bins the columns in N threads (default: ``check_drift``'s own choice, from the
window's size and the usable cores; 1 for none).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

N_NUMERIC, N_CATEGORICAL = 20, 5
DRIFTED = ["x00", "x01", "x02", "c0", "c1"]
CATEGORIES = [f"cat_{i:02d}" for i in range(12)]


def make_table(n: int, *, drift: bool, seed: int) -> Any:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for i in range(N_NUMERIC):
        name = f"x{i:02d}"
        if i % 4 == 1:
            values = rng.exponential(1.0 + i / 10, n)
        elif i % 4 == 2:
            values = rng.integers(0, 1_000, n).astype(np.float64)
        else:
            values = rng.normal(i, 1.0 + i / 20, n)
        if drift and name == "x00":
            values = values + 0.5  # mean shift
        if drift and name == "x01":
            values = values * 1.6  # scale change
        if drift and name == "x02":
            values = np.where(rng.random(n) < 0.3, values + 400, values)  # a new mode
        if i % 5 == 3:
            values[rng.random(n) < 0.02] = np.nan
        columns[name] = values
    weights = np.linspace(1.0, 3.0, len(CATEGORIES))
    for i in range(N_CATEGORICAL):
        p = weights / weights.sum()
        if drift and i < 2:
            p = p[::-1]
        codes = rng.choice(len(CATEGORIES), n, p=p)
        columns[f"c{i}"] = pa.DictionaryArray.from_arrays(
            pa.array(codes.astype(np.int32)), pa.array(CATEGORIES)
        ).cast(pa.large_string())
    return pa.table(columns)


def _status(field: str) -> int:
    """A /proc/self/status figure in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def child(
    folder: Path, repeat: int, chunk_rows: int, anchor: bool, threads: int | None
) -> dict[str, Any]:
    import tracemalloc

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from kyklos.config.project import DriftConfig
    from kyklos.data.profile import TableProfile
    from kyklos.monitoring.drift import DriftAccumulator, check_drift

    reference = TableProfile.from_dict(json.loads((folder / "profile.json").read_text()))
    config = DriftConfig()
    check_drift(reference, make_table(1_000, drift=False, seed=9), config=config)  # imports
    rss_before = _status("VmRSS")
    with pa.OSFile(str(folder / "current.arrow")) as source:
        window = pa.ipc.open_file(source).read_all()
    rss_loaded = _status("VmRSS")
    reset = _reset_peak()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        drifts, share, dataset = check_drift(reference, window, config=config, threads=threads)
        times.append(time.perf_counter() - start)
    peak = _status("VmHWM") if reset else None
    tracemalloc.start()
    check_drift(reference, window, config=config, threads=threads)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out: dict[str, Any] = {
        "rows": window.num_rows,
        "features": window.num_columns,
        "raw_bytes": window.nbytes,
        "seconds": times,
        "rss_before_load": rss_before,
        "rss_loaded": rss_loaded,
        "peak_rss_during_check": peak,
        "tracemalloc_peak": traced_peak,
        "flagged": sorted(d.feature for d in drifts if d.drifted),
        "methods": sorted({d.method for d in drifts}),
        "share": share,
        "dataset_drift": dataset,
    }
    if chunk_rows:
        start = time.perf_counter()
        accumulator = DriftAccumulator(reference, threads=threads)
        for offset in range(0, window.num_rows, chunk_rows):
            accumulator.update(window.slice(offset, chunk_rows))
        streamed = accumulator.result(config)
        out["chunked_seconds"] = time.perf_counter() - start
        out["chunked_equal"] = streamed == (drifts, share, dataset)
    if anchor:
        import warnings

        from scipy import stats

        with pa.OSFile(str(folder / "reference.arrow")) as source:
            raw_reference = pa.ipc.open_file(source).read_all()
        start = time.perf_counter()
        flagged = []
        for name in window.column_names:
            ref_col, cur_col = raw_reference.column(name), window.column(name)
            if pa.types.is_floating(ref_col.type):
                a = ref_col.to_numpy()
                b = cur_col.to_numpy()
                p = stats.ks_2samp(a[~np.isnan(a)], b[~np.isnan(b)]).pvalue
            else:
                rc, cc = pc.value_counts(ref_col), pc.value_counts(cur_col)
                ref_counts = dict(
                    zip(rc.field("values").to_pylist(), rc.field("counts").to_pylist(), strict=True)
                )
                cur_counts = dict(
                    zip(cc.field("values").to_pylist(), cc.field("counts").to_pylist(), strict=True)
                )
                keys = sorted(set(ref_counts) | set(cur_counts))
                f_obs = np.array([cur_counts.get(k, 0) for k in keys], dtype=float)
                f_exp = np.array([ref_counts.get(k, 0) for k in keys], dtype=float)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    p = stats.chisquare(f_obs, f_exp * f_obs.sum() / f_exp.sum()).pvalue
            if p < 0.05:
                flagged.append(name)
        out["scipy_seconds"] = time.perf_counter() - start
        out["scipy_flagged"] = sorted(flagged)
    return out


def _write(path: Path, table: Any) -> None:
    import pyarrow as pa

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chunk-rows", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-anchor", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child, args.repeat, args.chunk_rows, not args.no_anchor, args.threads)
        print(json.dumps(result))
        return

    from kyklos.data.profile import profile_table

    with tempfile.TemporaryDirectory(prefix="kyklos-monitor-bench-") as tmp:
        folder = Path(tmp)
        reference_table = make_table(args.reference_rows, drift=False, seed=1)
        start = time.perf_counter()
        profile = profile_table(reference_table)
        profile_seconds = time.perf_counter() - start
        (folder / "profile.json").write_text(json.dumps(profile.to_dict()))
        if not args.no_anchor:
            _write(folder / "reference.arrow", reference_table)
        del reference_table
        window = make_table(args.rows, drift=True, seed=2)
        _write(folder / "current.arrow", window)
        del window
        command = [sys.executable, __file__, "--child", str(folder), "--repeat", str(args.repeat)]
        command += ["--chunk-rows", str(args.chunk_rows)]
        if args.threads is not None:
            command += ["--threads", str(args.threads)]
        if args.no_anchor:
            command.append("--no-anchor")
        env = dict(os.environ)
        done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        result = json.loads(done.stdout.strip().splitlines()[-1])
    result["reference_rows"] = args.reference_rows
    result["threads"] = args.threads
    result["profile_seconds"] = profile_seconds
    if args.json:
        print(json.dumps(result, indent=2))
        return
    mib = 1024 * 1024
    seconds = result["seconds"]
    raw = result["raw_bytes"]
    print(
        f"check_drift on {result['rows']:,} rows × {result['features']} features "
        f"(reference profile of {args.reference_rows:,} rows, profiled once in "
        f"{profile_seconds:.2f} s)"
    )
    print(
        f"  time: best {min(seconds):.3f} s, median {sorted(seconds)[len(seconds) // 2]:.3f} s "
        f"over {len(seconds)} runs (threads: {args.threads or 'auto'})"
    )
    print(f"  window raw size: {raw / mib:.0f} MiB")
    loaded = result["rss_loaded"] - result["rss_before_load"]
    print(
        f"  RSS: {result['rss_before_load'] / mib:.0f} MiB before loading the window, "
        f"+{loaded / mib:.0f} MiB loaded"
    )
    if result["peak_rss_during_check"] is not None:
        extra = result["peak_rss_during_check"] - result["rss_loaded"]
        total = result["peak_rss_during_check"] - result["rss_before_load"]
        print(
            f"  peak RSS while checking: +{extra / mib:.1f} MiB over the loaded window; "
            f"window + check = {total / raw:.2f}× the raw size"
        )
    print(
        f"  tracemalloc peak (numpy/Python allocations): {result['tracemalloc_peak'] / mib:.1f} MiB"
    )
    print(f"  flagged: {', '.join(result['flagged'])} (methods {', '.join(result['methods'])})")
    if "chunked_seconds" in result:
        print(
            f"  streamed in chunks of {args.chunk_rows:,} rows: {result['chunked_seconds']:.3f} s, "
            f"same result: {result['chunked_equal']}"
        )
    if "scipy_seconds" in result:
        print(
            f"  anchor, scipy ks_2samp / chisquare per column on raw data: "
            f"{result['scipy_seconds']:.2f} s ({result['scipy_seconds'] / min(seconds):.0f}× "
            f"kyklos), flagged: {', '.join(result['scipy_flagged'])}"
        )


if __name__ == "__main__":
    main()
