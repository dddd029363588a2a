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
        [--only kyklos,mlflow,...] [--project DIR] [--json-out FILE] [--bentoml-python PATH]

Contenders (``--only`` takes these names):

- ``kyklos``: ``kyklos serve`` with 1 worker (every answer written to the prediction log
  before it is sent); ``kyklos-2w``: 2 workers; ``kyklos-2w-fsync``: 2 workers with
  ``--log-fsync`` (every log commit also fdatasync'ed before the answers); ``kyklos-2w-nolog``:
  2 workers, nothing logged (a benchmark-only switch of ``kyklos_server.py``). Validation and
  the log stay on otherwise.
  ``kyklos-2w-slowpaths``: 2 workers without the raw-ASGI fast path and without the numpy
  preprocessing (FastAPI routing, scikit-learn + pandas per batch), for comparison.
- ``mlflow``: ``mlflow models serve --env-manager local`` of the same MLflow model folder.
- ``naive``: a FastAPI app with a pydantic model of the features and
  ``predict_proba(pd.DataFrame([row]))`` (``apps.py``).
- ``bare-predict``: a bare ASGI app calling ``predict_proba`` per request on the event loop.
- ``bare-fixed``: a bare ASGI app answering a fixed JSON (the uvicorn ceiling).
- ``bentoml``: ``bentoml serve`` of a ``@bentoml.service`` calling ``predict_proba`` on a
  DataFrame of the posted records (``bento_service.py``), 1 worker (its default);
  ``bentoml-batching``: the same API with ``batchable=True`` (BentoML's adaptive batching).
  BentoML 1.4 pins an older OpenTelemetry than MLflow, so these run from their own venv:
  ``--bentoml-python PATH``, or by default /tmp/kyklos-bench-bentoml/.venv, made on demand with
  scikit-learn, pandas and numpy pinned to this venv's versions (the pickled pipeline must load).
  Their answers are checked once against kyklos's (same rows) before any load.
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
    "kyklos-2w-fsync",
    "kyklos-2w-nolog",
    "kyklos-2w-slowpaths",
    "kyklos-onnx",
    "kyklos-2w-onnx",
    "mlflow",
    "naive",
    "bare-predict",
    "bare-fixed",
    "bentoml",
    "bentoml-batching",
)
BENTOML_VENV = Path("/tmp/kyklos-bench-bentoml/.venv")
BENTOML_SERVICES = {"bentoml": "bento_service:Records", "bentoml-batching": "bento_service:BatchedRecords"}  # fmt: skip


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


def kyklos_answers(project: Path, rows: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """kyklos's predictions and scores for ``rows`` (the champion through scikit-learn, as the
    ``kyklos`` contender serves it): what the BentoML contenders must answer."""
    from kyklos.config import load_project
    from kyklos.serving.model import load_version
    from kyklos.serving.validation import validate_records

    model = load_version(load_project(project), "champion", runtime="sklearn")
    columns, _ = validate_records(model.features, rows)
    prediction, score = model.predict(columns)
    assert score is not None  # a binary classifier
    return [float(p) for p in prediction], [float(p) for p in score]


# -- servers -------------------------------------------------------------------------------------


def bentoml_python(given: Path | None) -> tuple[Path, dict[str, str]]:
    """The Python of BentoML's venv and its package versions.

    ``given`` is used as it is. Without it, /tmp/kyklos-bench-bentoml/.venv is made on demand
    (``python -m venv`` with this interpreter, then ``pip install bentoml pyarrow`` with
    scikit-learn, pandas and numpy pinned to this venv's versions: the pickled pipeline holds
    their objects). Raises RuntimeError when the venv cannot load the model's libraries at the
    versions it was pickled with.
    """
    from importlib.metadata import version

    pins = {p: version(p) for p in ("scikit-learn", "pandas", "numpy")}
    probe = (
        "import json; from importlib.metadata import version as v; import bentoml, sklearn; "
        "print(json.dumps({p: v(p) for p in ('bentoml', 'scikit-learn', 'pandas', 'numpy', "
        "'pyarrow', 'cloudpickle', 'starlette', 'uvicorn', 'pydantic')}))"
    )

    def versions(python: Path) -> dict[str, str] | None:
        done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
        return json.loads(done.stdout) if done.returncode == 0 else None

    python = given or BENTOML_VENV / "bin" / "python"
    found = versions(python) if python.exists() else None
    if given is None and (found is None or any(found[p] != v for p, v in pins.items())):
        print(f"making BentoML's venv {BENTOML_VENV} (pip install, ~1 min) ...", flush=True)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(BENTOML_VENV)], check=True)
        reqs = ["bentoml", "pyarrow", *(f"{p}=={v}" for p, v in pins.items())]
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *reqs], check=True)
        found = versions(python)
    if found is None:
        raise RuntimeError(f"{python} cannot import bentoml and scikit-learn")
    wrong = {p: found[p] for p, v in pins.items() if found[p] != v}
    if wrong:
        raise RuntimeError(
            f"{python} has {wrong}, the model was pickled with {pins}: "
            f"pip install {' '.join(f'{p}=={v}' for p, v in pins.items())}"
        )
    return python, found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(
    name: str,
    project: Path,
    model_dir: Path,
    features: list[tuple[str, str]],
    row: bytes,
    bento_python: Path | None = None,
    anchor_threads: int = 1,
) -> Iterator[str]:
    """Start contender ``name``; yield its base URL once it answers; stop it (SIGTERM).
    ``bento_python`` is the Python of BentoML's venv (the ``bentoml*`` contenders);
    ``anchor_threads`` the OpenMP threads of every contender but kyklos (0: their default)."""
    port = free_port()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    if anchor_threads and not name.startswith("kyklos"):
        env["OMP_NUM_THREADS"] = str(anchor_threads)
    env["BENCH_MODEL"] = str(model_dir / "model.pkl")
    env["BENCH_FEATURES"] = json.dumps(features)
    probe = "/ready"
    if name.startswith("kyklos"):
        workers = "2" if "-2w" in name else "1"
        env["BENCH_LOG"] = (
            "fsync" if name.endswith("fsync") else "off" if name.endswith("nolog") else "on"
        )
        env["BENCH_PATHS"] = "slow" if name.endswith("slowpaths") else "fast"
        env["BENCH_RUNTIME"] = "onnx" if name.endswith("onnx") else "sklearn"
        cmd = [sys.executable, str(HERE / "kyklos_server.py"), str(project), str(port), workers]
    elif name == "mlflow":
        cmd = [str(BIN / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
        probe = "/ping"
    elif name in BENTOML_SERVICES:
        if bento_python is None:
            raise RuntimeError("no BentoML venv (see --bentoml-python)")
        env["PATH"] = f"{bento_python.parent}:{os.environ.get('PATH', '')}"
        env["BENTOML_DO_NOT_TRACK"] = "True"  # no usage tracking
        env["BENTOML_HOME"] = str(model_dir.parent / "bentoml-home")  # not ~/bentoml
        cmd = [str(bento_python), "-m", "bentoml", "serve", BENTOML_SERVICES[name], "--working-dir", str(HERE), "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        probe = "/readyz"
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
    if name in BENTOML_SERVICES:  # the API's one parameter, ``rows``; one row is a list of one
        return "/predict", json.dumps({"rows": rows if many else rows[:1]}).encode()
    return "/", json.dumps({"rows": rows} if many else rows[0]).encode()


def check(
    url: str,
    path: str,
    body: bytes,
    expected: tuple[list[float], list[float]] | None = None,
) -> None:
    """One request must answer 200; with ``expected`` (kyklos's predictions and scores for the
    rows of ``body``), a BentoML answer must also agree with it row by row."""
    response = httpx.post(
        url + path, content=body, headers={"content-type": "application/json"}, timeout=60
    )
    if response.status_code != 200:
        raise RuntimeError(f"{url}{path} answered {response.status_code}: {response.text[:500]}")
    if expected is not None:
        got = [(float(a["prediction"]), float(a["score"])) for a in response.json()]
        want = list(zip(*expected, strict=True))
        pairs = enumerate(zip(got, want, strict=False))  # a length mismatch is reported below
        wrong = [i for i, (g, w) in pairs if g[0] != w[0] or abs(g[1] - w[1]) > 1e-9]
        if wrong or len(got) != len(want):
            raise RuntimeError(
                f"{url}{path}: {len(got)} answers for {len(want)} rows, {len(wrong)} disagree "
                f"with kyklos (prediction, score); first rows: kyklos {want[:3]}, got {got[:3]}"
            )


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
    parser.add_argument(
        "--anchor-threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS for every contender but kyklos (kyklos limits its own to 1): 1 is "
        "how a tuned deployment runs on 2 cores; 0 leaves scikit-learn's default (all cores)",
    )
    parser.add_argument(
        "--bentoml-python",
        type=Path,
        help=f"Python of a venv with bentoml (default: {BENTOML_VENV}, made on demand)",
    )
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
    bento_python: Path | None = None
    bento_versions: dict[str, str] = {}
    expected: dict[bool, tuple[list[float], list[float]]] = {}
    if any(name in BENTOML_SERVICES for name in chosen):
        try:
            bento_python, bento_versions = bentoml_python(args.bentoml_python)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"bentoml contenders will be skipped: {exc}", flush=True)
        answers = kyklos_answers(project, rows)
        expected = {False: (answers[0][:1], answers[1][:1]), True: answers}
    for name in chosen:
        try:
            server = running(
                name,
                project,
                model_dir,
                features,
                json.dumps(rows[0]).encode(),
                bento_python,
                args.anchor_threads,
            )
            url = server.__enter__()
        except RuntimeError as exc:
            print(f"{name}: skipped: {exc}", flush=True)
            continue
        try:
            for many, conns in [(False, c) for c in args.connections.split(",")] + [
                (True, c) for c in args.many_connections.split(",")
            ]:
                path, body = body_for(name, rows, many)
                check(url, path, body, expected.get(many) if name in BENTOML_SERVICES else None)
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
        "anchor_omp_threads": args.anchor_threads or "default",
        "machine": machine(),
        "load_average_1min": {
            "min": min(loads),
            "median": statistics.median(loads),
            "max": max(loads),
        },
        "parts_us": cost,
        "bentoml_venv": bento_versions,
        "results": [asdict(r) for r in results],
    }
    print(json.dumps({k: report[k] for k in ("machine", "load_average_1min")}, indent=1))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
