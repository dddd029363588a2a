"""``kyklos serve --workers N``: real worker processes sharing one socket, each with its own
prediction-log writer; worker deaths reported and replaced; a clean stop on SIGTERM or SIGINT;
/metrics answering for every worker whichever takes the scrape; one event per swap."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

import kyklos
from kyklos.config import load_project
from kyklos.data.predlog import PredictionLog
from kyklos.store import open_db
from kyklos.store.schema import events

from .conftest import Server, start_server, two_versions


def _workers(server: Server) -> list[int]:
    """The pids of the server's worker processes (its children running the spawn entry)."""
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline:
            found.append(int(child))
    return found


def _fire(server: Server, row: dict[str, Any], count: int, threads: int = 8) -> list[str]:
    """``count`` single-row predictions over fresh connections from ``threads`` threads; the
    request ids of the answered ones."""
    answered: list[str] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        for _ in range(n):
            # a fresh connection each time: the kernel hands connections, not requests, out
            response = httpx.post(f"{server.url}/predict", json=row, timeout=20)
            assert response.status_code == 200, response.text
            with lock:
                answered.append(response.json()["request_id"])

    workers = [threading.Thread(target=run, args=(count // threads,)) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return answered


def _writers(root: Path, ids: list[str]) -> dict[str, str]:
    table = PredictionLog(root / ".kyklos" / "logs").lookup(ids, columns=("request_id", "writer"))
    return dict(
        zip(table.column("request_id").to_pylist(), table.column("writer").to_pylist(), strict=True)
    )


def test_two_workers_share_the_load_and_the_log(trained: Path, row: dict[str, Any]) -> None:
    srv = start_server(trained, "--workers", "2")
    try:
        assert "2 workers" in srv.banner
        deadline = time.monotonic() + 60
        while len(_workers(srv)) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        pids = set(_workers(srv))
        ids: list[str] = []
        writers: dict[str, str] = {}
        for _ in range(10):  # bounded: connections land on both workers long before that
            ids += _fire(srv, row, 80)
            writers = _writers(trained, ids)
            if len({w.split("-")[0] for w in writers.values()}) >= 2:
                break
    finally:
        err = srv.stop()
    assert set(ids) == set(writers), "an answered prediction is missing from the log"
    answering = {int(w.split("-")[0]) for w in writers.values()}
    assert answering == pids, (answering, pids)
    assert srv.proc.returncode is not None
    assert "Traceback" not in err, err
    # a graceful stop sealed every worker's write-ahead file into a segment
    folder = trained / ".kyklos" / "logs" / "predictions"
    prefixes = tuple(f"wal-{pid}-" for pid in pids)
    assert not [f.name for f in folder.iterdir() if f.name.startswith(prefixes)]


def test_a_dead_worker_is_reported_and_replaced(trained: Path, row: dict[str, Any]) -> None:
    srv = start_server(trained, "--workers", "2")
    try:
        deadline = time.monotonic() + 60
        while len(_workers(srv)) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        victim = _workers(srv)[0]
        _kill_and_await_replacement(srv, victim)
        answered = _fire(srv, row, 16, threads=4)  # the server keeps answering
        survivors = _workers(srv)
    finally:
        err = srv.stop(signal.SIGINT)  # Ctrl-C: the parent stops every worker once
    assert len(answered) == 16
    assert f"(pid {victim}) was killed by SIGKILL" in err and "starting another" in err
    assert srv.proc.returncode == 0, err
    assert not [pid for pid in survivors if Path(f"/proc/{pid}").exists()]
    assert "Traceback" not in err, err


def _kill_and_await_replacement(srv: Server, victim: int) -> list[int]:
    """SIGKILL worker ``victim``; wait until two workers run again, without it; their pids."""
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        alive = _workers(srv)
        if len(alive) == 2 and victim not in alive:
            return alive
        assert time.monotonic() < deadline, f"no replacement for worker {victim}: {alive}"
        time.sleep(0.1)


# -- /metrics and events across workers ---------------------------------------------------------


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory, _mlflow_template: Path) -> Path:
    """A flights project with v1 (champion) and v2 that no other server of this module watches
    (each server records its own swap events)."""
    return two_versions(tmp_path_factory.mktemp("alone") / "flights", _mlflow_template)


def _scrape(server: Server) -> dict[str, Any]:
    """One ``GET /metrics`` over a fresh connection (any worker may take it): the predict
    endpoint's request count, latency and rows histogram counts, the swaps, the model_info
    series, and the pids of the per-worker ``kyklos_batch_rows_mean`` series."""
    response = httpx.get(f"{server.url}/metrics", timeout=20)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = {
        "requests": 0.0,
        "latency": 0.0,
        "rows": 0.0,
        "swaps": 0.0,
        "info": {},
        "pids": set(),
    }
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            predict = sample.labels.get("endpoint") == "predict"
            if sample.name == "kyklos_requests_total" and predict:
                found["requests"] += sample.value
            elif sample.name == "kyklos_request_duration_seconds_count" and predict:
                found["latency"] += sample.value
            elif sample.name == "kyklos_request_rows_count" and predict:
                found["rows"] += sample.value
            elif sample.name == "kyklos_model_swaps_total":
                found["swaps"] += sample.value
            elif sample.name == "kyklos_model_info":
                key = (sample.labels["arm"], sample.labels["version"])
                found["info"][key] = sample.value
            elif sample.name == "kyklos_batch_rows_mean":
                found["pids"].add(int(sample.labels["pid"]))
    return found


def _metrics_dir(worker: int) -> Path:
    """The ``PROMETHEUS_MULTIPROC_DIR`` a worker process was started with."""
    environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    (value,) = [v for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    return Path(value.split(b"=", 1)[1].decode())


def _swap_events(root: Path) -> list[Any]:
    project = load_project(root)
    with open_db(project.db_url).read() as conn:
        return list(conn.execute(select(events).where(events.c.kind == "serving.swapped")))


def test_metrics_and_swap_events_count_every_worker_once(alone: Path, tmp_path: Path) -> None:
    # what a server killed with SIGKILL leaves: its lock is free, its directory is swept
    stale = tmp_path / "kyklos-serve-deadbeef"
    (stale / "metrics").mkdir(parents=True)
    (stale / "lock").touch()
    (stale / "metrics" / "counter_1.db").write_bytes(b"\0" * 8)
    srv = start_server(alone, "--workers", "2", env={"TMPDIR": str(tmp_path)})
    try:
        deadline = time.monotonic() + 60
        while len(_workers(srv)) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        pids = set(_workers(srv))
        metrics = _metrics_dir(min(pids))
        assert {_metrics_dir(pid) for pid in pids} == {metrics}
        shared = metrics.parent
        assert shared.parent == tmp_path and shared.name.startswith("kyklos-serve-")
        assert not stale.exists()
        with srv.client() as client:
            features = client.get("/model").json()["model"]["features"]
        row = {
            f["name"]: 1.0 if f["kind"] == "numeric" else (f["categories"] or ["x"])[0]
            for f in features
        }
        ids: list[str] = []
        for _ in range(10):  # bounded: connections land on both workers long before that
            ids += _fire(srv, row, 40)
            if {int(w.split("-")[0]) for w in _writers(alone, ids).values()} == pids:
                break
        answered = len(ids)
        assert {int(w.split("-")[0]) for w in _writers(alone, ids).values()} == pids
        # every scrape, whichever worker takes it, counts every worker's requests
        for _ in range(12):
            scrape = _scrape(srv)
            assert scrape["requests"] == answered, (scrape, answered)
            assert scrape["latency"] == answered, (scrape, answered)
            assert scrape["rows"] == answered, (scrape, answered)
            assert scrape["info"] == {("champion", "1"): 1.0}
        # a worker killed with SIGKILL: what it answered is still counted, its live gauges go
        victim = min(pids)
        alive = _kill_and_await_replacement(srv, victim)
        deadline = time.monotonic() + 60
        while _scrape(srv)["pids"] != set(alive):  # the replacement is up and publishing
            assert time.monotonic() < deadline, "the replacement never published its gauges"
            time.sleep(0.2)
        answered += len(_fire(srv, row, 16, threads=4))
        for _ in range(8):
            scrape = _scrape(srv)
            assert scrape["requests"] == answered, (scrape, answered)
            assert scrape["latency"] == answered, (scrape, answered)
            assert victim not in scrape["pids"], scrape["pids"]
        # a promotion: both live workers swap, the server records one event
        assert _swap_events(alone) == []
        kyklos.promote(2, project=alone, reason="workers test")
        deadline = time.monotonic() + 60
        while _scrape(srv)["swaps"] < 2:
            assert time.monotonic() < deadline, "the workers did not both swap"
            time.sleep(0.1)
        scrape = _scrape(srv)
        assert scrape["swaps"] == 2
        assert scrape["info"] == {("champion", "1"): 0.0, ("champion", "2"): 1.0}
    finally:
        err = srv.stop()  # graceful: every event a worker was writing is written
    assert "Traceback" not in err, err
    (event,) = _swap_events(alone)
    assert event.payload["version"] == 2 and event.payload["previous"] == 1
    assert not shared.exists(), "the server's shared directory outlived it"
