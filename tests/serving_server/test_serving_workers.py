"""``kyklos serve --workers N``: real worker processes sharing one socket, each with its own
prediction-log writer; worker deaths reported and replaced; a clean stop on SIGTERM or SIGINT."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from kyklos.data.predlog import PredictionLog

from .conftest import Server, start_server


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
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            alive = _workers(srv)
            if len(alive) == 2 and victim not in alive:
                break
            assert time.monotonic() < deadline, f"no replacement for worker {victim}: {alive}"
            time.sleep(0.1)
        answered = _fire(srv, row, 16, threads=4)  # the server keeps answering
        survivors = _workers(srv)
    finally:
        err = srv.stop(signal.SIGINT)  # Ctrl-C: the parent stops every worker once
    assert len(answered) == 16
    assert f"(pid {victim}) was killed by SIGKILL" in err and "starting another" in err
    assert srv.proc.returncode == 0, err
    assert not [pid for pid in survivors if Path(f"/proc/{pid}").exists()]
    assert "Traceback" not in err, err
