"""Benchmark (not a test): kyklos serve vs mlflow models serve vs a naive FastAPI app vs bare ASGI
apps, side by side in one run, same model, same payloads, load from wrk on 127.0.0.1.

Steps: scaffold and train the flights project (or reuse ``--project``); time the parts of one
prediction in-process (model call through scikit-learn and through kyklos's numpy
preprocessing, validation, log record, fsync); then start each contender on 127.0.0.1 in turn and
run ``wrk`` against it at each concurrency, single-row and 100-row requests. Every contender
serves the same fitted pipeline (the champion's MLflow model folder). Prints a table (req/s,
p50, p99, errors, kyklos ÷ contender) and writes everything, with the machine and versions, as
JSON (``--json-out``).

    .venv/bin/python benchmarks/serving/run.py [--duration 10] [--connections 1,8,64]
        [--only kyklos,mlflow,...] [--project DIR] [--json-out FILE]

Contenders (``--only`` takes these names):

- ``kyklos``: ``kyklos serve`` with 1 worker; ``kyklos-2w``: 2 workers; ``kyklos-2w-nofsync``
  and ``kyklos-2w-nolog``: 2 workers with the prediction log not fsynced / not written
  (benchmark-only switches of ``kyklos_server.py``). Validation and the log stay on otherwise.
  ``kyklos-2w-slowpaths``: 2 workers without the raw-ASGI fast path and without the numpy
  preprocessing (FastAPI routing, scikit-learn + pandas per batch), for comparison.
- ``mlflow``: ``mlflow models serve --env-manager local`` of the same MLflow model folder.
- ``naive``: a FastAPI app with a pydantic model of the features and
  ``predict_proba(pd.DataFrame([row]))`` (``apps.py``).
- ``bare-predict``: a bare ASGI app calling ``predict_proba`` per request on the event loop.
- ``bare-fixed``: a bare ASGI app answering a fixed JSON (the uvicorn ceiling).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CONTENDERS = (
    "kyklos",
    "kyklos-2w",
    "kyklos-2w-nofsync",
    "kyklos-2w-nolog",
    "kyklos-2w-slowpaths",
    "kyklos-onnx",
    "kyklos-2w-onnx",
    "mlflow",
    "naive",
    "bare-predict",
    "bare-fixed",
)


@dataclass
class Result:
    contender: str
    payload: str  # "1 row" or "100 rows"
    connections: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


# -- the model -----------------------------------------------------------------------------------


def prepare(project: Path | None) -> tuple[Path, Path, list[tuple[str, str]], list[dict[str, Any]]]:
    """The project (trained), its champion's MLflow model folder, features and 100 real rows."""
    import kyklos
    from kyklos.config import load_project
    from kyklos.registry import ModelRegistry
    from kyklos.serving.batch import user_steps
    from kyklos.serving.model import load_version

    if project is None:
        project = Path(tempfile.mkdtemp(prefix="kyklos-serving-bench-")) / "flights"
        kyklos.init_project(project)
        kyklos.run(project)
    kyklos.export_model("champion", project=project)  # for the -onnx contenders (parity-checked)
    loaded = load_project(project)
    registry = ModelRegistry.for_project(loaded)
    version = registry.get("champion")
    with registry.tracker.model_files(version.model_uri) as folder:
        model_dir = Path(tempfile.mkdtemp(prefix="kyklos-bench-model-")) / "model"
        shutil.copytree(folder, model_dir)
    model = load_version(loaded, "champion")
    features = [(f.name, f.kind) for f in model.features]
    import pandas as pd

    frame = pd.read_parquet(project / "data" / "flights.parquet")
    for fn in user_steps(loaded):
        frame = fn(frame)
    frame = frame[[name for name, _ in features]].dropna().iloc[-100:]
    rows = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        for r in frame.astype(object).to_dict("records")
    ]
    return project, model_dir, features, rows


def parts(project: Path, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Microseconds of each part of one prediction, in this process (median of repeats), with
    one OpenMP thread."""
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from kyklos.config import load_project
    from kyklos.data.predlog import PredictionLogWriter
    from kyklos.serving import protocols
    from kyklos.serving.model import load_version
    from kyklos.serving.validation import validate_records

    threadpool_limits(limits=1)  # as in kyklos's predict thread: one OpenMP thread
    model = load_version(load_project(project), "champion")
    body = json.dumps(rows[0]).encode()

    def timed(fn: Any, number: int) -> float:
        fn()
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - start) / number * 1e6)
        return statistics.median(samples)

    one, _ = validate_records(model.features, [rows[0]])
    many, _ = validate_records(model.features, rows[:64])
    frame1 = pd.DataFrame({n: one[n] for n in model._order})
    out: dict[str, float] = {
        "parse JSON (orjson)": timed(lambda: protocols.parse_predict(protocols.loads(body)), 2000),
        "validate 1 row": timed(lambda: validate_records(model.features, [rows[0]]), 2000),
        "model via scikit-learn, 1 row": timed(lambda: model._model.predict_proba(frame1), 50),
        "model via kyklos numpy preprocessing, 1 row": timed(lambda: model.predict(one), 100),
        "model via kyklos numpy preprocessing, 64 rows": timed(lambda: model.predict(many), 100),
    }
    prediction, score = model.predict(one)
    record: dict[str, Any] = {
        "request_id": "bench",
        "model": model.name,
        "version": model.version,
        "prediction": prediction,
        "score": score,
        **{f"f.{f.name}": one[f.name] for f in model.features},
    }
    with tempfile.TemporaryDirectory() as tmp:
        writer = PredictionLogWriter(Path(tmp), features=[(f.name, f.kind) for f in model.features])
        out["log record (normalize), 1 row"] = timed(lambda: writer._schema.normalize(record), 2000)
        out["durable log append (group commit + fdatasync), 1 row alone"] = timed(
            lambda: writer.append(record).wait(), 50
        )
        writer.close()
    return out


# -- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(
    name: str, project: Path, model_dir: Path, features: list[tuple[str, str]], row: bytes
) -> Iterator[str]:
    """Start contender ``name``; yield its base URL once it answers; stop it (SIGTERM)."""
    port = free_port()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    env["BENCH_MODEL"] = str(model_dir / "model.pkl")
    env["BENCH_FEATURES"] = json.dumps(features)
    probe = "/ready"
    if name.startswith("kyklos"):
        workers = "2" if "-2w" in name else "1"
        env["BENCH_LOG"] = (
            "nofsync" if name.endswith("nofsync") else "off" if name.endswith("nolog") else "on"
        )
        env["BENCH_PATHS"] = "slow" if name.endswith("slowpaths") else "fast"
        env["BENCH_RUNTIME"] = "onnx" if name.endswith("onnx") else "sklearn"
        cmd = [sys.executable, str(HERE / "kyklos_server.py"), str(project), str(port), workers]
    elif name == "mlflow":
        cmd = [str(BIN / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
        probe = "/ping"
    else:
        target = {"naive": "apps:app", "bare-predict": "apps:bare_predict", "bare-fixed": "apps:bare_fixed"}[name]  # fmt: skip
        cmd = [str(BIN / "uvicorn"), target, "--app-dir", str(HERE), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
        probe = "/docs" if name == "naive" else "/"
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(httpx.TransportError):
                if probe == "/":
                    if httpx.post(url + "/", content=row, timeout=5).status_code == 200:
                        break
                elif httpx.get(url + probe, timeout=5).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"{name} did not start:\n{log.read().decode()[-3000:]}")
            time.sleep(0.25)
        if "-2w" in name:
            time.sleep(8)  # the second worker loads its model after the first answers
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def body_for(name: str, rows: list[dict[str, Any]], many: bool) -> tuple[str, bytes]:
    """The path and JSON body each contender takes for one row or for the 100 rows."""
    if name == "mlflow":
        return "/invocations", json.dumps(
            {"dataframe_records": rows if many else rows[:1]}
        ).encode()
    if name == "naive":
        return (
            ("/predict_many", json.dumps(rows).encode())
            if many
            else ("/predict", json.dumps(rows[0]).encode())
        )
    if name.startswith("kyklos"):
        return "/predict", json.dumps({"rows": rows} if many else rows[0]).encode()
    return "/", json.dumps({"rows": rows} if many else rows[0]).encode()


def check(url: str, path: str, body: bytes) -> None:
    response = httpx.post(
        url + path, content=body, headers={"content-type": "application/json"}, timeout=60
    )
    if response.status_code != 200:
        raise RuntimeError(f"{url}{path} answered {response.status_code}: {response.text[:500]}")


def wrk(
    url: str, body: bytes, connections: int, duration: float
) -> tuple[int, float, float, float, int]:
    with tempfile.NamedTemporaryFile(suffix=".json") as fh:
        fh.write(body)
        fh.flush()
        done = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s", "-s", str(HERE / "post.lua"), url],
            env={**os.environ, "BODY": fh.name},
            capture_output=True,
            text=True,
            check=True,
        )  # fmt: skip
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    requests, micros, p50, p99, _mean, errors = line.split()[1:]
    seconds = int(micros) / 1e6
    return int(requests), int(requests) / seconds, float(p50) / 1000, float(p99) / 1000, int(errors)


# -- report --------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[
        0
    ]
    packages = ["kyklos", "mlflow", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "orjson", "scikit-learn", "numpy", "pandas", "pyarrow", "pydantic"]  # fmt: skip
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "wrk": wrk_version.strip(),
        "versions": {p: version(p) for p in packages},
    }


def table(results: list[Result]) -> str:
    kyklos = {(r.payload, r.connections): r for r in results if r.contender == "kyklos-2w"}
    kyklos1 = {(r.payload, r.connections): r for r in results if r.contender == "kyklos"}
    lines = [
        "| contender | payload | conns | req/s | p50 ms | p99 ms | errors | kyklos-2w ÷ this |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ref = kyklos.get((r.payload, r.connections)) or kyklos1.get((r.payload, r.connections))
        ratio = f"{ref.requests_per_s / r.requests_per_s:.2f}" if ref and r.requests_per_s else "—"
        lines.append(
            f"| {r.contender} | {r.payload} | {r.connections} | {r.requests_per_s:,.0f} | "
            f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", default="1,8,64")
    parser.add_argument("--many-connections", default="64", help="connections for 100-row runs")
    parser.add_argument("--only", default=",".join(CONTENDERS))
    parser.add_argument("--project", type=Path, help="a trained flights project to reuse")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    chosen = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(chosen) - set(CONTENDERS)
    if unknown:
        raise SystemExit(
            f"unknown contenders {sorted(unknown)}; choose from {', '.join(CONTENDERS)}"
        )
    project, model_dir, features, rows = prepare(args.project)
    print(f"project {project}; model {model_dir}; {len(features)} features", flush=True)
    try:
        run(args, chosen, project, model_dir, features, rows)
    finally:
        shutil.rmtree(model_dir.parent, ignore_errors=True)


def run(
    args: argparse.Namespace,
    chosen: list[str],
    project: Path,
    model_dir: Path,
    features: list[tuple[str, str]],
    rows: list[dict[str, Any]],
) -> None:
    print("\nparts of one prediction (in process, µs, median of 5):", flush=True)
    cost = parts(project, rows)
    for name, micros in cost.items():
        print(f"  {name:62s} {micros:10.1f}")
    results: list[Result] = []
    loads: list[float] = []
    for name in chosen:
        try:
            server = running(name, project, model_dir, features, json.dumps(rows[0]).encode())
            url = server.__enter__()
        except RuntimeError as exc:
            print(f"{name}: skipped: {exc}", flush=True)
            continue
        try:
            for many, conns in [(False, c) for c in args.connections.split(",")] + [
                (True, c) for c in args.many_connections.split(",")
            ]:
                path, body = body_for(name, rows, many)
                check(url, path, body)
                wrk(url + path, body, int(conns), min(2.0, args.duration))  # warm-up
                loads.append(os.getloadavg()[0])
                n, rps, p50, p99, errors = wrk(url + path, body, int(conns), args.duration)
                result = Result(
                    name, "100 rows" if many else "1 row", int(conns), rps, p50, p99, errors, n
                )
                results.append(result)
                print(
                    f"{name:18s} {result.payload:8s} c={conns:>3s}: {rps:9,.0f} req/s  "
                    f"p50 {p50:7.2f} ms  p99 {p99:8.2f} ms  errors {errors}  (load {loads[-1]:.1f})",
                    flush=True,
                )
        finally:
            server.__exit__(None, None, None)
    print("\n" + table(results))
    report = {
        "machine": machine(),
        "load_average_1min": {
            "min": min(loads),
            "median": statistics.median(loads),
            "max": max(loads),
        },
        "parts_us": cost,
        "results": [asdict(r) for r in results],
    }
    print(json.dumps({k: report[k] for k in ("machine", "load_average_1min")}, indent=1))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
