"""A lone request (nothing else in flight, no rollout) is predicted with Batcher.predict_now and
logged with LogWriter.append_now; under load requests still go through the batcher's queue and
the log's group commit, and are batched. Against a real ``kyklos serve`` (a subprocess) and a
real uvicorn in a thread of this process (whose batcher and writer the test can watch)."""

from __future__ import annotations

import gc
import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from kyklos.data.predlog import PredictionLog

from .conftest import Server, wait_ready

BURST = 64  # concurrent requests per round
ROUNDS = 3


@dataclass
class Reference:
    """Rows of the project's data as JSON records, and the champion's answer for each alone."""

    records: list[dict[str, Any]]
    labels: list[Any]
    scores: list[float]


@pytest.fixture(scope="module")
def reference(trained: Path) -> Reference:
    import pandas as pd

    from kyklos.config import load_project
    from kyklos.serving.batch import run_user_steps, user_steps
    from kyklos.serving.model import load_version
    from kyklos.serving.validation import validate_records

    project = load_project(trained)
    model = load_version(project, "champion")
    frame = run_user_steps(
        user_steps(project), pd.read_parquet(trained / "data" / "flights.parquet")
    )
    names = [f.name for f in model.features]
    records = [
        {k: (None if v != v else (v.item() if hasattr(v, "item") else v)) for k, v in r.items()}
        for r in frame[names].iloc[: BURST * ROUNDS].astype(object).to_dict("records")
    ]
    labels, scores = [], []
    for record in records:
        prediction, score = model.predict(validate_records(model.features, [record])[0])
        assert score is not None
        labels.append(int(prediction[0]))
        scores.append(float(score[0]))
    assert 0 < sum(labels) < len(labels)  # both classes: answers can be told apart
    return Reference(records, labels, scores)


def _counter(text: str, name: str) -> float:
    lines = [line for line in text.splitlines() if line.startswith(f"{name} ")]
    assert len(lines) == 1, f"{name} not in /metrics"
    return float(lines[0].split()[1])


def _batches(client: httpx.Client) -> tuple[float, float]:
    text = client.get("/metrics").text
    return _counter(text, "kyklos_batches_total"), _counter(text, "kyklos_batch_rows_total")


def _check_answer(body: dict[str, Any], ref: Reference, i: int) -> None:
    assert body["predictions"] == [ref.labels[i]], i
    assert body["scores"] == pytest.approx([ref.scores[i]], rel=1e-9, abs=1e-12), i


def _check_logged(root: Path, ids: list[str], rows: list[int], ref: Reference) -> None:
    """Each id logged once, with the features of its own row and the answer it got."""
    table = PredictionLog(root / ".kyklos" / "logs").lookup(
        ids, columns=("request_id", "row", "score", "arm", "f.distance", "f.dest")
    )
    assert sorted(table.column("request_id").to_pylist()) == sorted(ids)
    by_id = {r["request_id"]: r for r in table.to_pylist()}
    for request_id, i in zip(ids, rows, strict=True):
        logged = by_id[request_id]
        assert logged["row"] == 0 and logged["arm"] == "champion"
        assert logged["score"] == pytest.approx(ref.scores[i], rel=1e-9, abs=1e-12), request_id
        record = ref.records[i]
        assert logged["f.dest"] == record["dest"], request_id
        if record["distance"] is None:
            assert logged["f.distance"] is None or np.isnan(logged["f.distance"])
        else:
            assert logged["f.distance"] == record["distance"], request_id


@dataclass
class Burst:
    """BURST keep-alive connections that each send one request, all sent before any answer is
    read (they arrive together); ``hold`` keeps the server busy while they are sent."""

    port: int
    conns: list[http.client.HTTPConnection] = field(default_factory=list)

    def __enter__(self) -> Burst:
        self.conns = [
            http.client.HTTPConnection("127.0.0.1", self.port, timeout=30) for _ in range(BURST)
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in self.conns:
            conn.close()

    def send(
        self, records: list[dict[str, Any]], ids: list[str], hold: Any = None
    ) -> list[dict[str, Any]]:
        release = hold() if hold is not None else None
        try:
            for conn, record, request_id in zip(self.conns, records, ids, strict=True):
                conn.request(
                    "POST",
                    "/predict",
                    body=json.dumps(record).encode(),
                    headers={"content-type": "application/json", "x-request-id": request_id},
                )
        finally:
            if release is not None:
                time.sleep(0.05)  # the last bytes are in the server's socket buffers
                release()
        answers = []
        for conn in self.conns:
            response = conn.getresponse()
            data = response.read()
            assert response.status == 200, data
            answers.append(json.loads(data))
        return answers


def _bursts(
    port: int, ref: Reference, prefix: str, hold: Any = None
) -> tuple[list[str], list[int]]:
    """A warm-up burst (opens the connections), then ROUNDS bursts of distinct rows; checks that
    every request got the answer for its own row. Returns the ids and rows of the ROUNDS."""
    ids: list[str] = []
    rows: list[int] = []
    with Burst(port) as burst:
        burst.send([ref.records[0]] * BURST, [f"{prefix}-warm-{i}" for i in range(BURST)])
        for r in range(ROUNDS):
            batch = list(range(r * BURST, (r + 1) * BURST))
            names = [f"{prefix}-{i}" for i in batch]
            answers = burst.send([ref.records[i] for i in batch], names, hold)
            for i, name, answer in zip(batch, names, answers, strict=True):
                assert answer["request_id"] == name
                _check_answer(answer, ref, i)
            ids += names
            rows += batch
    return ids, rows


# -- a real `kyklos serve` ------------------------------------------------------------------------


def test_sequential_requests_are_each_a_batch_and_each_logged(
    server: Server, reference: Reference
) -> None:
    prefix = f"seq-{uuid.uuid4().hex[:8]}"
    count = 30
    ids = [f"{prefix}-{i}" for i in range(count)]
    with server.client() as client:  # one connection, one request at a time
        batches, rows = _batches(client)
        for i, request_id in enumerate(ids):
            answer = client.post(
                "/predict", json=reference.records[i], headers={"x-request-id": request_id}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["request_id"] == request_id
            _check_answer(answer.json(), reference, i)
        after_batches, after_rows = _batches(client)
    assert after_batches - batches == count  # a batch of its own per request
    assert after_rows - rows == count
    _check_logged(server.root, ids, list(range(count)), reference)


@dataclass
class BurstResult:
    ids: list[str]
    rows: list[int]
    batches: float
    batch_rows: float


@pytest.fixture(scope="module")
def burst(server: Server, reference: Reference) -> BurstResult:
    """ROUNDS bursts of BURST concurrent single-row requests on `kyklos serve`."""
    port = int(server.url.rsplit(":", 1)[1])
    prefix = f"burst-{uuid.uuid4().hex[:8]}"
    with server.client() as client:
        batches, rows = _batches(client)
        ids, row_of = _bursts(port, reference, prefix)  # and its warm-up burst
        after_batches, after_rows = _batches(client)
    return BurstResult(ids, row_of, after_batches - batches, after_rows - rows)


def test_concurrent_requests_get_their_own_answers_and_log_rows(
    server: Server, reference: Reference, burst: BurstResult
) -> None:
    assert burst.batch_rows == BURST * (ROUNDS + 1)  # every row predicted once
    _check_logged(server.root, burst.ids, burst.rows, reference)


def test_concurrent_requests_share_batches(burst: BurstResult) -> None:
    requests = BURST * (ROUNDS + 1)
    print(f"\n{requests} concurrent requests in {burst.batches:.0f} batches")
    assert burst.batches <= requests / 2, "requests that arrive together are not batched"


# -- uvicorn in a thread of this process: which path each request took -------------------------


@dataclass
class Paths:
    """Counts of the batcher's and the writer's entry points the server called (each call goes
    on to the real method)."""

    predict_now: int = 0
    predict_now_answered: int = 0
    submit: int = 0
    append_now: int = 0
    append_async: int = 0
    restore: list[Any] = field(default_factory=list)

    def watch(self, state: Any) -> None:
        batcher, writer = state.batcher, state.predictions
        predict_now, submit = batcher.predict_now, batcher.submit
        append_now, append_async = writer.append_now, writer.append_async

        def spy_predict_now(columns: Any, n: int) -> Any:
            self.predict_now += 1
            outcome = predict_now(columns, n)
            self.predict_now_answered += outcome is not None
            return outcome

        async def spy_submit(columns: Any, n: int) -> Any:
            self.submit += 1
            return await submit(columns, n)

        def spy_append_now(record: Any) -> None:
            self.append_now += 1
            append_now(record)

        async def spy_append_async(record: Any) -> None:
            self.append_async += 1
            await append_async(record)

        batcher.predict_now, batcher.submit = spy_predict_now, spy_submit
        writer.append_now, writer.append_async = spy_append_now, spy_append_async
        self.restore = [batcher, writer]

    def unwatch(self) -> None:
        for obj in self.restore:
            for name in ("predict_now", "submit", "append_now", "append_async"):
                obj.__dict__.pop(name, None)


@dataclass
class InProcess:
    url: str
    port: int
    root: Path
    state: Any
    loop: Any  # the server's event loop

    def hold(self) -> Any:
        """Keep the server's event loop busy until the returned function is called (at most
        10 s): whatever arrives meanwhile is read together when it is called."""
        held, release = threading.Event(), threading.Event()

        def busy() -> None:  # runs on the server's loop: nothing else runs meanwhile
            held.set()
            release.wait(10)

        self.loop.call_soon_threadsafe(busy)
        assert held.wait(10), "the server's loop never ran the hold"
        return release.set


@pytest.fixture(scope="module")
def in_process(trained: Path) -> Iterator[InProcess]:
    """The app `kyklos serve` runs (FastPath over create_app), served by uvicorn on 127.0.0.1
    in a thread of this process."""
    import uvicorn

    from kyklos.config import load_project
    from kyklos.serving.app import ServeOptions, create_app
    from kyklos.serving.fastpath import FastPath

    app = FastPath(create_app(load_project(trained), options=ServeOptions(watch=False)))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with httpx.Client(base_url=url, timeout=5) as client:
        wait_ready(client, thread.is_alive, "the in-process server")
    port = sock.getsockname()[1]
    try:
        yield InProcess(url, port, trained, app.state, server.servers[0].get_loop())
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        gc.unfreeze()  # the app froze the heap at start-up (_settle_heap)


@pytest.fixture
def paths(in_process: InProcess) -> Iterator[Paths]:
    watched = Paths()
    watched.watch(in_process.state)
    try:
        yield watched
    finally:
        watched.unwatch()


def test_a_lone_request_is_predicted_now_and_logged_now(
    in_process: InProcess, paths: Paths, reference: Reference
) -> None:
    state = in_process.state
    before = state.batcher.stats()
    prefix = f"alone-{uuid.uuid4().hex[:8]}"
    count = 20
    ids = [f"{prefix}-{i}" for i in range(count)]
    with httpx.Client(base_url=in_process.url, timeout=20) as client:
        for i, request_id in enumerate(ids):
            answer = client.post(
                "/predict", json=reference.records[i], headers={"x-request-id": request_id}
            )
            assert answer.status_code == 200, answer.text
            _check_answer(answer.json(), reference, i)
    after = state.batcher.stats()
    assert (paths.predict_now, paths.predict_now_answered, paths.submit) == (count, count, 0)
    assert (paths.append_now, paths.append_async) == (count, 0)
    assert after.batches - before.batches == after.requests - before.requests == count
    assert after.rows - before.rows == count
    assert state.in_flight == 0
    _check_logged(in_process.root, ids, list(range(count)), reference)


def test_a_lone_request_too_big_for_predict_now_is_submitted(
    in_process: InProcess, paths: Paths, reference: Reference
) -> None:
    """More rows than the batcher's inline_rows: predict_now declines, the queue answers; the
    log write is still the lone request's immediate one."""
    rows = reference.records[: in_process.state.batcher.inline_rows + 1]
    with httpx.Client(base_url=in_process.url, timeout=20) as client:
        answer = client.post("/predict", json={"rows": rows})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == reference.labels[: len(rows)]
    assert (paths.predict_now, paths.predict_now_answered, paths.submit) == (1, 0, 1)
    assert (paths.append_now, paths.append_async) == (1, 0)


def test_requests_that_arrive_together_go_through_the_queue_and_share_batches(
    in_process: InProcess, paths: Paths, reference: Reference
) -> None:
    state = in_process.state
    prefix = f"together-{uuid.uuid4().hex[:8]}"
    before = state.batcher.stats()
    before_paths = (paths.predict_now_answered, paths.submit, paths.append_async)
    ids, row_of = _bursts(in_process.port, reference, prefix, hold=in_process.hold)
    after = state.batcher.stats()
    assert state.in_flight == 0
    _check_logged(in_process.root, ids, row_of, reference)
    requests = BURST * (ROUNDS + 1)  # with the warm-up burst of _bursts
    assert after.requests - before.requests == after.rows - before.rows == requests
    answered_now = paths.predict_now_answered - before_paths[0]
    submitted = paths.submit - before_paths[1]
    assert answered_now + submitted == requests
    made = after.batches - before.batches
    print(f"\n{requests} requests arriving together: {made} batches, {answered_now} alone")
    assert made <= requests / 2, "requests that arrive together are not batched"
    assert submitted >= requests / 2  # they had company: the queue, not the lone path
    assert paths.append_async - before_paths[2] >= requests / 2  # and the group commit
