"""Canary and shadow rollouts on a live server: real uvicorn, real HTTP, real prediction log.

The module's project has four versions: v1 (champion), v2 (the usual challenger), v3 (trained
without ``wind_gust``: a challenger, or a champion, with fewer features) and v4 (its artifact is
tampered with in one test, so it fails its hash check). One ``kyklos serve`` serves them all;
every test leaves no rollout active and v1 champion behind it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

import kyklos
from kyklos.config import load_project
from kyklos.data.predlog import PredictionLog
from kyklos.errors import ConflictError, NotFoundError, RegistryError
from kyklos.registry import ModelRegistry
from kyklos.registry.aliases import set_alias
from kyklos.registry.rollouts import active_rollout, end_rollout, list_rollouts, start_rollout
from kyklos.serving.rollout import canary_takes
from kyklos.store import open_db
from kyklos.store.schema import events

from .conftest import KYKLOS, Server, start_server

NARROW = 3  # trained without wind_gust
BROKEN = 4  # tampered with by test_a_challenger_that_fails_to_load_...
_INFO = re.compile(r'^kyklos_model_info\{arm="(\w+)",model="(\w+)",version="(\d+)"\} 1\.0$', re.M)


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root(trained: Path) -> Path:
    """The module's project with v3 (no wind_gust) and v4 (to be broken) next to v1 and v2."""
    narrow = kyklos.run(trained, overrides={"data.drop": ["arr_delay", "wind_gust"]})
    assert narrow.model_version == NARROW
    assert kyklos.run(trained, overrides={"model.params.max_iter": 20}).model_version == BROKEN
    return trained


@pytest.fixture(scope="module")
def live(root: Path) -> Iterator[Server]:
    srv = start_server(root)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def row(live: Server) -> dict[str, Any]:
    with live.client() as client:
        features = client.get("/model").json()["model"]["features"]
    return {
        f["name"]: 1.0 if f["kind"] == "numeric" else (f["categories"] or ["x"])[0]
        for f in features
    }


@pytest.fixture(scope="module")
def registry(root: Path) -> ModelRegistry:
    return ModelRegistry.for_project(load_project(root))


@pytest.fixture(autouse=True)
def _clean(live: Server, registry: ModelRegistry) -> Iterator[None]:
    """Each test starts and leaves with no rollout and v1 champion, and the server knows it."""
    yield
    if active_rollout(registry.db, registry.model_name) is not None:
        end_rollout(registry, reason="test cleanup")
    champion = registry.champion()
    if champion is None or champion.version != 1:
        kyklos.promote(1, project=live.root, reason="test cleanup")
    assert reload(live)["version"] == 1
    assert arms(live) == {("champion", 1)}


def reload(server: Server) -> dict[str, Any]:
    """POST /admin/reload: the server reads the champion alias and the active rollout now."""
    with server.client() as client:
        response = client.post("/admin/reload")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def arms(server: Server) -> set[tuple[str, int]]:
    """``(arm, version)`` of every ``kyklos_model_info`` series on /metrics."""
    with server.client() as client:
        text = client.get("/metrics").text
    return {(arm, int(version)) for arm, _, version in _INFO.findall(text)}


def counted(server: Server, name: str) -> float:
    """The sum of a counter's samples on /metrics (0 while it has none)."""
    with server.client() as client:
        text = client.get("/metrics").text
    return sum(float(v) for v in re.findall(rf"^{name}_total\{{[^}}]*\}} (\S+)$", text, re.M))


def logged(root: Path, ids: list[str], *columns: str) -> list[dict[str, Any]]:
    """The prediction-log rows of these request ids, ordered by (request_id, arm, row)."""
    cols = ("request_id", "row", "version", "arm", "endpoint", *columns)
    table = PredictionLog(root / ".kyklos" / "logs").lookup(ids, columns=cols)
    out = table.to_pylist()
    return sorted(out, key=lambda r: (r["request_id"], r["arm"], r["row"]))


def events_of(root: Path, kind: str) -> list[Any]:
    project = load_project(root)
    with open_db(project.db_url).read() as conn:
        return list(conn.execute(select(events).where(events.c.kind == kind)))


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something true (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def predict(
    client: httpx.Client, body: Any, *, key: str | None = None, rid: str | None = None
) -> httpx.Response:
    headers = {}
    if key is not None:
        headers["X-Routing-Key"] = key
    if rid is not None:
        headers["X-Request-ID"] = rid
    response = client.post("/predict", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["x-model-version"] == str(response.json()["version"])
    return response


class Load:
    """Threads posting /predict without pause (one-row and 200-row bodies, with and without a
    routing key); records each answer's version with the time its request was sent, and every
    failure (transport error or non-200)."""

    def __init__(self, server: Server, row: dict[str, Any], threads: int = 3) -> None:
        self.server = server
        self.bodies: list[tuple[Any, str | None]] = [
            (row, None),
            ({"rows": [row] * 200}, None),
            (row, "user-sticky"),
        ][:threads]
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[tuple[float, int]] = []
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._fire, args=b) for b in self.bodies]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def _fire(self, body: Any, key: str | None) -> None:
        headers = {"X-Routing-Key": key} if key else {}
        with self.server.client(timeout=20) as client:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    response = client.post("/predict", json=body, headers=headers)
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with self.lock:
                    if response.status_code == 200:
                        self.answers.append((sent, response.json()["version"]))
                    else:
                        self.failures.append(f"{response.status_code}: {response.text}")

    def versions(self, sent_after: float = 0.0) -> Counter[int]:
        with self.lock:
            return Counter(v for t, v in self.answers if t > sent_after)

    def wait_for_version(self, version: int, sent_after: float) -> None:
        wait_for(f"an answer of v{version}", lambda: self.versions(sent_after)[version] > 0)

    def wait_for_answers(self, count: int, sent_after: float) -> None:
        wait_for(f"{count} answers", lambda: sum(self.versions(sent_after).values()) >= count)


def kyklos_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [KYKLOS, *args], cwd=root, capture_output=True, text=True, env=env, timeout=240
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The CLI failed the way users should see it: exit 1, one readable line, no traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    return lines[0]


# -- canary ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fraction", "version", "arm"),
    [(1.0, 2, "canary"), (0.0, 1, "champion")],
    ids=["fraction-1-all-to-the-canary", "fraction-0-none"],
)
def test_canary_fraction_decides_who_answers_and_the_log_names_it(
    live: Server,
    registry: ModelRegistry,
    row: dict[str, Any],
    fraction: float,
    version: int,
    arm: str,
) -> None:
    start_rollout(registry, 2, strategy="canary", fraction=fraction)
    assert reload(live)["version"] == 1
    assert arms(live) == {("champion", 1), ("canary", 2)}
    tag = f"canary-{fraction}"
    ids = []
    with live.client() as client:
        for i in range(12):
            rid = f"{tag}-{i}"
            body = row if i % 3 else {"rows": [row, row]}
            answer = predict(client, body, key=f"user-{i}" if i % 2 else None, rid=rid)
            assert answer.json()["version"] == version
            ids.append(rid)
        invocations = client.post(
            "/invocations", json={"dataframe_records": [row]}, headers={"X-Request-ID": tag}
        )
        assert invocations.status_code == 200, invocations.text
        assert invocations.headers["x-model-version"] == str(version)
    rows = logged(live.root, [*ids, tag])
    assert len(rows) == 12 + 4 + 1  # every third request had two rows
    assert {(r["arm"], r["version"]) for r in rows} == {(arm, version)}
    assert {r["endpoint"] for r in rows} == {"predict", "invocations"}
    # `kyklos logs --arm` finds them under the arm the server wrote
    found = kyklos_cli(live.root, "logs", "--arm", arm, "--json", "--columns", "request_id,arm")
    assert found.returncode == 0, found.stderr
    records = [json.loads(line) for line in found.stdout.splitlines()]
    assert {r["request_id"] for r in records} >= {*ids, tag}
    assert {r["arm"] for r in records} == {arm}


def test_canary_is_sticky_by_routing_key_and_splits_distinct_keys(
    live: Server, registry: ModelRegistry, row: dict[str, Any]
) -> None:
    start_rollout(registry, 2, strategy="canary", fraction=0.5)
    reload(live)
    keys = [f"customer-{i}" for i in range(40)]
    expected = {k: 2 if canary_takes(k, 0.5) else 1 for k in keys}
    assert set(expected.values()) == {1, 2}  # the key set itself covers both arms
    seen: dict[str, set[int]] = {k: set() for k in keys}
    unkeyed: Counter[int] = Counter()
    with live.client() as client:
        for _ in range(4):
            for key in keys:
                seen[key].add(predict(client, row, key=key).json()["version"])
        for _ in range(60):
            unkeyed[predict(client, row).json()["version"]] += 1
    assert {k: v for k, v in seen.items() if len(v) != 1} == {}  # one arm per key, always
    assert {k: v.pop() for k, v in seen.items()} == expected
    # without a key each request is drawn alone: 60 draws at 0.5 reach both arms
    assert set(unkeyed) == {1, 2}, unkeyed


def test_a_challenger_with_fewer_features_answers_from_the_same_request(
    live: Server, registry: ModelRegistry, row: dict[str, Any]
) -> None:
    start_rollout(registry, NARROW, strategy="canary", fraction=1.0)
    reload(live)
    with live.client() as client:
        answer = predict(client, {"rows": [row, row]}, rid="narrow-canary")
    assert answer.json()["version"] == NARROW
    (first, second) = logged(live.root, ["narrow-canary"], "f.distance")
    assert first["arm"] == second["arm"] == "canary"
    assert first["version"] == NARROW and first["f.distance"] == row["distance"]


def test_a_canary_that_cannot_answer_falls_back_to_the_champion(
    live: Server, registry: ModelRegistry, row: dict[str, Any]
) -> None:
    """Champion v3 has no wind_gust, challenger v2 needs it: the request (valid for the
    champion) cannot reach the canary, so the champion answers; never a 5xx."""
    kyklos.promote(NARROW, project=live.root, reason="fallback test", force=True)
    start_rollout(registry, 2, strategy="canary", fraction=1.0)
    assert reload(live)["version"] == NARROW
    assert arms(live) == {("champion", NARROW), ("canary", 2)}
    narrow = {k: v for k, v in row.items() if k != "wind_gust"}
    ids = [f"fallback-{i}" for i in range(6)]
    with live.client() as client:
        for i, rid in enumerate(ids):
            answer = predict(client, narrow if i % 2 else {"rows": [narrow] * 3}, rid=rid)
            assert answer.json()["version"] == NARROW
        info = client.get("/model").json()
        metrics = client.get("/metrics").text
    assert {(r["arm"], r["version"]) for r in logged(live.root, ids)} == {("champion", NARROW)}
    rollout = info["rollout"]
    assert rollout["version"] == 2 and rollout["strategy"] == "canary"
    assert rollout["fallbacks"] == 6 and rollout["requests"] == 0
    assert "wind_gust" in rollout["last_error"]
    assert 'kyklos_rollout_fallbacks_total{model="flights",version="2"} 6.0' in metrics
    assert counted(live, "kyklos_rollout_fallbacks") == 6.0


# -- shadow ---------------------------------------------------------------------------------------


def test_shadow_answers_with_the_champion_and_logs_the_challenger_on_the_same_rows(
    live: Server, registry: ModelRegistry, row: dict[str, Any]
) -> None:
    from kyklos.api.loop import rollout_status
    from kyklos.serving.model import load_version
    from kyklos.serving.validation import validate_records

    start_rollout(registry, 2, strategy="shadow")
    reload(live)
    assert arms(live) == {("champion", 1), ("shadow", 2)}
    ids = [f"shadow-{i}" for i in range(8)]
    sent: dict[str, list[dict[str, Any]]] = {}
    with live.client() as client:
        for i, rid in enumerate(ids):
            rows = [{**row, "distance": 150.0 * (i + 1) + j, "hour": float(j)} for j in range(3)]
            sent[rid] = rows[: 1 + i % 3]
            answer = predict(client, {"rows": sent[rid]}, key=f"user-{i}", rid=rid)
            assert answer.json()["version"] == 1  # the shadow never answers
    n_rows = sum(len(r) for r in sent.values())

    def both_arms() -> list[dict[str, Any]] | None:
        rows = logged(live.root, ids, "f.distance", "f.hour", "score")
        return rows if sum(r["arm"] == "shadow" for r in rows) == n_rows else None

    rows = wait_for("a shadow row for every answered row", both_arms)
    assert len(rows) == 2 * n_rows
    champion = {(r["request_id"], r["row"]): r for r in rows if r["arm"] == "champion"}
    shadow = {(r["request_id"], r["row"]): r for r in rows if r["arm"] == "shadow"}
    assert set(champion) == set(shadow) == {(rid, j) for rid in ids for j in range(len(sent[rid]))}
    for key, theirs in champion.items():
        ours = shadow[key]
        assert (theirs["version"], ours["version"]) == (1, 2)
        assert ours["endpoint"] == "predict"
        assert (ours["f.distance"], ours["f.hour"]) == (theirs["f.distance"], theirs["f.hour"])
    # the shadow's scores are v2's own predictions of those rows
    v2 = load_version(load_project(live.root), 2)
    for rid in ids:
        columns, _ = validate_records(v2.features, sent[rid])
        _, scores = v2.predict(columns)
        assert scores is not None
        logged_scores = [shadow[(rid, j)]["score"] for j in range(len(sent[rid]))]
        assert logged_scores == pytest.approx(scores.tolist(), abs=1e-9)
    # one label per row joins to both arms
    labels = [{"request_id": rid, "row": j, "label": j % 2} for (rid, j) in sorted(champion)]
    with live.client() as client:
        feedback = client.post("/feedback", json={"labels": labels})
    assert feedback.status_code == 200, feedback.text
    joined = PredictionLog(live.root / ".kyklos" / "logs").joined(
        columns=["request_id", "row", "arm", "version"]
    )
    mine = [r for r in joined.to_pylist() if r["request_id"] in sent]
    assert len(mine) == 2 * n_rows
    assert all(r["label"] == r["row"] % 2 for r in mine)
    # the paired comparison sees the same rows on both arms
    live_figures = rollout_status(live.root)["live"]["live"]
    assert live_figures["challenger"]["rows"] == live_figures["champion"]["rows"] == n_rows
    assert live_figures["challenger"]["labelled"] == n_rows


# -- ending a rollout -----------------------------------------------------------------------------


def test_ending_a_rollout_reaches_the_server_by_its_own_poll(
    live: Server, registry: ModelRegistry, row: dict[str, Any]
) -> None:
    start_rollout(registry, 2, strategy="canary", fraction=1.0)
    with live.client() as client:
        wait_for("the canary answers (poll)", lambda: predict(client, row).json()["version"] == 2)
        end_rollout(registry, reason="poll test")
        wait_for("the champion answers (poll)", lambda: predict(client, row).json()["version"] == 1)
        later = {predict(client, row).json()["version"] for _ in range(20)}
    assert later == {1}
    assert arms(live) == {("champion", 1)}


def test_a_challenger_promoted_during_its_rollout_serves_as_champion_only(
    live: Server, registry: ModelRegistry, row: dict[str, Any]
) -> None:
    start_rollout(registry, 2, strategy="canary", fraction=0.5)
    reload(live)
    kyklos.promote(2, project=live.root, reason="promoted by hand during the rollout")
    assert reload(live)["version"] == 2
    # promoting the challenger ends its rollout as promoted (recorded)
    assert active_rollout(registry.db, registry.model_name) is None
    assert list_rollouts(registry.db, registry.model_name, limit=1)[0].status == "promoted"
    assert arms(live) == {("champion", 2)}  # no second arm of the same version
    with live.client() as client:
        ids = [predict(client, row, key=f"k{i}").json()["request_id"] for i in range(10)]
    assert {(r["arm"], r["version"]) for r in logged(live.root, ids)} == {("champion", 2)}


def test_start_and_stop_under_load_fail_no_request(
    live: Server, registry: ModelRegistry, row: dict[str, Any]
) -> None:
    """Rollouts start and end five times while three clients post without pause (one-row and
    200-row requests): every request is answered, no canary request falls back, no shadow copy
    fails, and once the last one ended (and the server was told) only the champion answers."""
    before = counted(live, "kyklos_rollout_fallbacks"), counted(live, "kyklos_shadow_failures")
    with Load(live, row) as load:
        for i, strategy in enumerate(["canary", "shadow", "canary", "shadow", "canary"]):
            start_rollout(registry, 2, strategy=strategy, fraction=0.5)
            reload(live)
            joined = time.monotonic()
            if strategy == "canary":  # the canary answers part of the traffic...
                load.wait_for_version(2, joined)
            else:
                load.wait_for_answers(10, joined)
            end_rollout(registry, reason=f"load test {i}")
            reload(live)  # ...and leaves while requests are in flight on it
        stopped = time.monotonic()
        load.wait_for_answers(30, stopped)
    assert load.failures == []
    assert load.versions()[2] > 0 and load.versions()[1] > 0
    assert set(load.versions(stopped)) == {1}
    after = counted(live, "kyklos_rollout_fallbacks"), counted(live, "kyklos_shadow_failures")
    assert after == before


# -- a challenger that cannot load ----------------------------------------------------------------


def test_a_challenger_that_fails_to_load_leaves_the_champion_serving_alone(
    live: Server, registry: ModelRegistry, row: dict[str, Any]
) -> None:
    with registry.tracker.model_files(registry.get(BROKEN).model_uri) as folder:
        pickled = next(p for p in Path(folder).iterdir() if p.suffix == ".pkl")
        pickled.write_bytes(pickled.read_bytes() + b"tampered")
    start_rollout(registry, 2, strategy="canary", fraction=1.0)
    reload(live)
    assert arms(live) == {("champion", 1), ("canary", 2)}
    with Load(live, row) as load:
        load.wait_for_version(2, 0.0)
        # the next rollout's challenger cannot load: the arm of the last one leaves as well
        end_rollout(registry, reason="next one")
        rollout = start_rollout(registry, BROKEN, strategy="canary", fraction=1.0)
        answer = reload(live)
        after = time.monotonic()
        load.wait_for_answers(20, after)
        assert answer["version"] == 1
        assert f"challenger v{BROKEN}" in answer["challenger_error"]
        assert arms(live) == {("champion", 1)}
        # one failure, or two when the poll tried just before /admin/reload retried
        tries = len(events_of(live.root, "serving.load_failed"))
        assert tries in (1, 2)
        time.sleep(1.2)  # two more polls: the poller does not retry the same rollout
        assert len(events_of(live.root, "serving.load_failed")) == tries
        with live.client() as client:
            info = client.get("/model").json()
            metrics = client.get("/metrics").text
    assert load.failures == []
    assert set(load.versions(after)) == {1}
    event = events_of(live.root, "serving.load_failed")[-1]
    assert event.payload["rollout_id"] == rollout.id and event.payload["version"] == BROKEN
    assert "changed since registration" in event.message
    assert "the champion serves alone" in event.message
    assert info["model"]["version"] == 1
    assert info["rollout"]["version"] == BROKEN and info["rollout"]["serving"] is False
    assert "changed since registration" in info["rollout"]["load_error"]
    failures = f'kyklos_model_load_failures_total{{model="flights",version="{BROKEN}"}}'
    assert f"{failures} {tries:.1f}" in metrics
    # /admin/reload retries it (and fails again, recorded), as it does for a champion
    assert f"challenger v{BROKEN}" in reload(live)["challenger_error"]
    assert len(events_of(live.root, "serving.load_failed")) == tries + 1


# -- metrics, /v2 ---------------------------------------------------------------------------------


def test_metrics_show_the_arm_while_it_serves(live: Server, registry: ModelRegistry) -> None:
    start_rollout(registry, 2, strategy="canary", fraction=0.3)
    reload(live)
    assert arms(live) == {("champion", 1), ("canary", 2)}
    # a new rollout of the same version, noticed in one poll, keeps its series
    end_rollout(registry, reason="change the fraction")
    start_rollout(registry, 2, strategy="canary", fraction=0.6)
    reload(live)
    assert arms(live) == {("champion", 1), ("canary", 2)}
    end_rollout(registry, reason="metrics test")
    start_rollout(registry, 2, strategy="shadow")
    reload(live)
    assert arms(live) == {("champion", 1), ("shadow", 2)}
    end_rollout(registry, reason="metrics test")
    reload(live)
    assert arms(live) == {("champion", 1)}


def _tensors(rows: list[dict[str, Any]], features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": f["name"],
            "datatype": "FP64" if f["kind"] == "numeric" else "BYTES",
            "shape": [len(rows)],
            "data": [r[f["name"]] for r in rows],
        }
        for f in features
    ]


def test_v2_infer_takes_the_same_canary_route(
    live: Server, registry: ModelRegistry, row: dict[str, Any]
) -> None:
    start_rollout(registry, 2, strategy="canary", fraction=0.5)
    reload(live)
    with live.client() as client:
        features = client.get("/model").json()["model"]["features"]
        body = {"inputs": _tensors([row, row], features)}
        for key in [f"v2-user-{i}" for i in range(12)]:
            expected = 2 if canary_takes(key, 0.5) else 1
            infer = client.post(
                "/v2/models/flights/infer",
                json=body,
                headers={"X-Routing-Key": key, "X-Request-ID": key},
            )
            assert infer.status_code == 200, infer.text
            assert (
                infer.json()["model_version"] == str(expected) == infer.headers["x-model-version"]
            )
            assert predict(client, row, key=key).json()["version"] == expected  # same key, same arm
            logged_rows = logged(live.root, [key])
            assert {(r["arm"], r["version"], r["endpoint"]) for r in logged_rows} == {
                ("canary" if expected == 2 else "champion", expected, "v2")
            }
        # a request for the champion's version by name is the champion's, whatever the key
        canary_key = next(f"pin-{i}" for i in range(100) if canary_takes(f"pin-{i}", 0.5))
        pinned = client.post(
            "/v2/models/flights/versions/1/infer", json=body, headers={"X-Routing-Key": canary_key}
        )
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["model_version"] == "1"


# -- the registry and the CLI ---------------------------------------------------------------------


def test_one_active_rollout_per_model_and_clear_refusals(registry: ModelRegistry) -> None:
    with pytest.raises(RegistryError, match="v1 is the champion"):
        start_rollout(registry, 1)
    with pytest.raises(RegistryError, match="strategy 'blue' is unknown"):
        start_rollout(registry, 2, strategy="blue")
    with pytest.raises(RegistryError, match="between 0 and 1"):
        start_rollout(registry, 2, fraction=float("nan"))
    with pytest.raises(NotFoundError, match="no rollout is active"):
        end_rollout(registry)
    first = start_rollout(registry, 2, strategy="shadow")
    with pytest.raises(ConflictError, match="already active"):
        start_rollout(registry, NARROW)
    assert registry.aliases()["challenger"] == 2
    ended = end_rollout(registry, "rejected", reason="worse")
    assert (ended.id, ended.status, ended.reason) == (first.id, "rejected", "worse")
    assert "challenger" not in registry.aliases()  # a rejected challenger loses its alias
    assert [r.id for r in list_rollouts(registry.db, registry.model_name, limit=1)] == [first.id]
    kinds = [
        e.kind for e in events_of_registry(registry) if e.payload.get("rollout_id") == first.id
    ]
    assert kinds == ["rollout.started", "rollout.rejected"]


def events_of_registry(registry: ModelRegistry) -> list[Any]:
    with registry.db.read() as conn:
        return list(conn.execute(select(events).order_by(events.c.id)))


def test_cli_rollout_start_status_stop(live: Server, registry: ModelRegistry) -> None:
    root = live.root
    started = kyklos_cli(root, "rollout", "start", "v2", "--fraction", "0.25", "--reason", "cli")
    assert started.returncode == 0, started.stderr
    rollout = active_rollout(registry.db, registry.model_name)
    assert rollout is not None and rollout.fraction == 0.25
    assert started.stdout.strip() == (
        f"rollout {rollout.id}: canary of v2 against champion v1 on 25% of requests"
    )
    reload(live)
    assert arms(live) == {("champion", 1), ("canary", 2)}  # running servers pick it up

    again = one_error_line(kyklos_cli(root, "rollout", "start", "2"))
    assert "a canary rollout of v2 is already active" in again and "kyklos rollout stop" in again

    status = kyklos_cli(root, "rollout", "status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["rollout"]["id"] == rollout.id and data["rollout"]["status"] == "active"
    assert data["live"]["kind"] == "canary" and data["live"]["challenger"]["version"] == 2
    human = kyklos_cli(root, "rollout", "status")
    assert human.returncode == 0, human.stderr
    assert f"rollout {rollout.id}: canary of v2 — active" in human.stdout
    assert "verdict: undecided" in human.stdout

    stopped = kyklos_cli(root, "rollout", "stop", "--json")
    assert stopped.returncode == 0, stopped.stderr
    ended = json.loads(stopped.stdout)
    assert (ended["id"], ended["status"], ended["challenger_version"]) == (rollout.id, "stopped", 2)
    assert ended["ended_at"] is not None
    reload(live)
    assert arms(live) == {("champion", 1)}
    assert registry.aliases().get("challenger") == 2  # stopped, not rejected: the alias stays

    none_left = one_error_line(kyklos_cli(root, "rollout", "stop"))
    assert "no rollout is active for 'flights'" in none_left
    champion = one_error_line(kyklos_cli(root, "rollout", "start", "1"))
    assert "v1 is the champion of 'flights'" in champion
    unknown = one_error_line(kyklos_cli(root, "rollout", "start", "2", "--strategy", "blue"))
    assert "'blue' is unknown; expected one of shadow, canary" in unknown
    missing = one_error_line(kyklos_cli(root, "rollout", "start", "v99"))
    assert "v99" in missing or "99" in missing

    shadow = kyklos_cli(root, "rollout", "start", "--strategy", "shadow")  # the challenger alias
    assert shadow.returncode == 0, shadow.stderr
    assert "shadow of v2 against champion v1" in shadow.stdout and "%" not in shadow.stdout
    rejected = kyklos_cli(root, "rollout", "stop", "--reject", "--reason", "worse live")
    assert rejected.returncode == 0, rejected.stderr
    assert rejected.stdout.strip().endswith("of v2: rejected")
    assert "challenger" not in registry.aliases()
    set_alias(registry, 2, alias="challenger", reason="restore for later tests")


def test_cli_rollout_without_a_champion(tmp_path: Path, _mlflow_template: Path) -> None:
    """A project whose only version failed its gates: nothing to roll out against."""
    root = tmp_path / "nochamp"
    kyklos.init_project(root, rows=1500)
    (root / ".kyklos").mkdir(exist_ok=True)
    shutil.copyfile(_mlflow_template, root / ".kyklos" / "mlflow.db")
    no_versions = one_error_line(kyklos_cli(root, "rollout", "start"))
    assert "has no versions yet" in no_versions
    assert kyklos_cli(root, "rollout", "status").stdout.strip() == "no rollout yet"
    config = root / "kyklos.yaml"
    config.write_text(config.read_text().replace("roc_auc >= 0.60", "roc_auc >= 0.999"))
    assert kyklos.run(root).model_version == 1
    no_champion = one_error_line(kyklos_cli(root, "rollout", "start", "1"))
    assert "has no champion to compare a challenger with" in no_champion
    assert "kyklos models promote" in no_champion


def test_kyklos_yaml_gives_the_rollout_defaults(live: Server, registry: ModelRegistry) -> None:
    config = live.root / "kyklos.yaml"
    original = config.read_text()
    config.write_text(original + "\nserve:\n  rollout: {strategy: shadow, fraction: 0.3}\n")
    try:
        shadow = kyklos_cli(live.root, "rollout", "start", "2", "--json")
        assert shadow.returncode == 0, shadow.stderr
        assert json.loads(shadow.stdout)["strategy"] == "shadow"
        end_rollout(registry, reason="yaml test")
        canary = kyklos_cli(live.root, "rollout", "start", "2", "--strategy", "canary")
        assert canary.returncode == 0, canary.stderr
        assert canary.stdout.strip().endswith("on 30% of requests")
    finally:
        config.write_text(original)
    reload(live)
    assert arms(live) == {("champion", 1), ("canary", 2)}


def test_every_worker_follows_the_rollout(root: Path, registry: ModelRegistry) -> None:
    """``--workers 2``: each worker polls the rollout on its own (POST /admin/reload reaches one
    of them), loads the challenger, routes to it and logs through its own writer."""

    def all_from(version: int) -> list[str] | None:
        answers = [httpx.post(f"{srv.url}/predict", json=one, timeout=20) for _ in range(20)]
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        if {a.json()["version"] for a in answers} != {version}:
            return None
        return [a.json()["request_id"] for a in answers]

    srv = start_server(root, "--workers", "2")
    try:
        with srv.client() as client:
            features = client.get("/model").json()["model"]["features"]
        one = {f["name"]: 1.0 if f["kind"] == "numeric" else f["categories"][0] for f in features}
        start_rollout(registry, 2, strategy="canary", fraction=1.0)
        ids: list[str] = []
        for _ in range(3):  # fresh connections: the kernel spreads them over the workers
            ids += wait_for("every worker routes to the canary", lambda: all_from(2))
        table = PredictionLog(root / ".kyklos" / "logs").lookup(ids, columns=("writer", "arm"))
        assert set(table.column("arm").to_pylist()) == {"canary"}
        assert len(set(table.column("writer").to_pylist())) == 2
        end_rollout(registry, reason="workers test")
        wait_for("every worker drops the canary", lambda: all_from(1))
    finally:
        srv.stop()


def test_kyklos_serve_starts_the_rollout_configured_in_kyklos_yaml(
    root: Path, registry: ModelRegistry
) -> None:
    """``serve.rollout.strategy: canary`` and a challenger alias: ``kyklos serve`` starts that
    rollout itself (and says so); with a rollout already active it leaves it alone."""
    config = root / "kyklos.yaml"
    original = config.read_text()
    config.write_text(original + "\nserve:\n  rollout: {strategy: canary, fraction: 1.0}\n")
    set_alias(registry, 2, alias="challenger", reason="yaml rollout test")
    srv = start_server(root, wait=False)
    try:
        line = srv.proc.stderr.readline() if srv.proc.stderr else ""
        assert "canary rollout of v2 on 100% of requests (serve.rollout in kyklos.yaml)" in line
        rollout = active_rollout(registry.db, registry.model_name)
        assert rollout is not None and rollout.started_by == "kyklos serve"
        with srv.client() as client:
            features = wait_for(
                "the server is ready", lambda: client.get("/model").json()["model"]["features"]
            )
            one = {
                f["name"]: 1.0 if f["kind"] == "numeric" else f["categories"][0] for f in features
            }
            answered = wait_for(
                "the canary answers",
                lambda: client.post("/predict", json=one).json()["version"] == 2 or None,
            )
            assert answered
    finally:
        srv.stop()
        config.write_text(original)
    # a second server with the rollout already active does not start another one
    config.write_text(original + "\nserve:\n  rollout: {strategy: canary, fraction: 1.0}\n")
    try:
        again = start_server(root)
        again.stop()
        still = active_rollout(registry.db, registry.model_name)
        assert still is not None and still.id == rollout.id
    finally:
        config.write_text(original)
