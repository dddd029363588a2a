"""The loop controller on a real project: triggers, retraining, canary, promotion, watching,
rollback, rejection, crashes, humans — each step checked in the registry, the rollouts table,
the cycles and the append-only event log."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import kyklos
from kyklos.api.loop import approve, controller, events, explain_change, loop_pause, loop_status
from kyklos.errors import ConflictError
from kyklos.loop.controller import Controller
from kyklos.loop.cycles import CycleStore
from kyklos.registry.models import ModelRegistry
from kyklos.registry.rollouts import active_rollout, start_rollout
from kyklos.store import open_db
from project.conftest import cli, edit_yaml

from .conftest import Loop


def _kinds(root: Path, prefix: str = "loop.") -> list[str]:
    return [e.kind for e in events(root, kinds=(prefix,))]


def _champion(root: Path) -> int | None:
    champion = ModelRegistry.for_project(kyklos.load_project(root, env={})).champion()
    return champion.version if champion is not None else None


def _drift_to_rollout(loop: Loop) -> Controller:
    """Summer traffic on v1 with labels → drift → a cycle trains v2 and starts its canary."""
    ctl = controller(loop.root)
    loop.serve(loop.summer.slice(0, 3000), version=1)
    result = ctl.tick()
    assert result.action == "rollout", result
    assert result.cycle is not None and result.cycle.challenger_version == 2
    return ctl


@pytest.mark.slow
def test_drift_retrains_canaries_promotes_and_keeps(loop_project: Loop) -> None:
    root = loop_project.root
    ctl = _drift_to_rollout(loop_project)
    registry = ModelRegistry.for_project(loop_project.project)
    assert registry.aliases() == {"champion": 1, "challenger": 2}
    rollout = active_rollout(registry.db, registry.model_name)
    assert rollout is not None and rollout.strategy == "canary" and rollout.cycle_id == 1
    # the training data: the champion's own rows plus the labelled summer traffic, with lineage
    v2 = registry.get(2)
    data = kyklos.data_show(v2.dataset_version_id, project=root)
    assert data.n_rows == 6000 + 3000
    assert v2.dataset_version_id != registry.get(1).dataset_version_id
    # not enough live evidence yet: the cycle waits
    assert ctl.tick().action == "waiting"
    # both arms answer live traffic; v2 was trained on summer rows, so it should do better
    loop_project.serve(loop_project.summer.slice(3000, 500), version=1, arm="champion")
    loop_project.serve(loop_project.summer.slice(3500, 500), version=2, arm="canary")
    promoted = ctl.tick()
    assert promoted.action == "promoted", promoted
    assert _champion(root) == 2
    assert active_rollout(registry.db, registry.model_name) is None
    cycle = promoted.cycle
    assert cycle is not None and cycle.status == "watching"
    assert cycle.figures["champion"]["labelled"] == cycle.figures["challenger"]["labelled"] == 1000
    # the new champion holds up on its own traffic → kept
    loop_project.serve(loop_project.summer.slice(4000, 300), version=2)
    kept = ctl.tick()
    assert kept.action == "kept", kept
    assert kept.cycle is not None and kept.cycle.decision == "promoted"
    assert _kinds(root) == [
        "loop.triggered",
        "loop.data",
        "loop.trained",
        "loop.rollout",
        "loop.promoted",
        "loop.kept",
    ]
    triggered = events(root, kinds=("loop.triggered",))[0]
    assert triggered.payload["trigger"] in ("drift", "performance")
    assert triggered.payload["evidence"]["monitor_result"] >= 1
    # nothing more to do: the next tick is idle (the drift windows of v1 were consumed)
    assert ctl.tick().action in ("idle", "suppressed")
    # explain-change: side by side with v1, the cycle and its trigger, the data diff
    explained = explain_change(2, root)
    assert explained["previous"]["version"] == 1
    assert explained["cycle"]["id"] == 1
    assert explained["data"]["n_rows_a"] == 6000 and explained["data"]["n_rows_b"] == 9000
    assert {m["metric"] for m in explained["metrics"]} >= {"roc_auc", "accuracy"}
    # and the same from the CLI
    shown = cli(root, "explain-change", "2")
    assert shown.returncode == 0, shown.stderr
    assert "loop cycle 1" in shown.stdout and "roc_auc" in shown.stdout
    timeline = cli(root, "events", "--kind", "loop.", "--json")
    assert [e["kind"] for e in json.loads(timeline.stdout)] == _kinds(root)
    status = json.loads(cli(root, "loop", "status", "--json").stdout)
    assert status["active"] is None and status["cycles"][0]["status"] == "kept"


@pytest.mark.slow
def test_a_challenger_worse_on_live_traffic_is_rejected(loop_project: Loop) -> None:
    ctl = _drift_to_rollout(loop_project)
    loop_project.serve(loop_project.summer.slice(3000, 400), version=1, arm="champion")
    # the canary's live answers are bad (their opposite): the paired comparison sees it
    loop_project.serve(loop_project.summer.slice(3400, 400), version=2, arm="canary", flip=True)
    rejected = ctl.tick()
    assert rejected.action == "rejected", rejected
    registry = ModelRegistry.for_project(loop_project.project)
    assert registry.aliases() == {"champion": 1}  # the challenger alias is cleared
    assert active_rollout(registry.db, registry.model_name) is None
    assert "worse than the champion live" in (rejected.cycle.reason if rejected.cycle else "")
    assert _kinds(loop_project.root)[-1] == "loop.rejected"


@pytest.mark.slow
def test_a_challenger_failing_its_gates_never_reaches_traffic(loop_project: Loop) -> None:
    edit_yaml(loop_project.root, "  - roc_auc >= 0.60", "  - roc_auc >= 0.99")
    loop_project.serve(loop_project.summer.slice(0, 3000), version=1)
    result = controller(loop_project.root).tick()
    assert result.action == "rejected", result
    assert "failed its gates" in result.message
    registry = ModelRegistry.for_project(loop_project.project)
    assert registry.aliases() == {"champion": 1}
    assert active_rollout(registry.db, registry.model_name) is None
    assert 2 in registry.versions()  # registered, recorded, never served


@pytest.mark.slow
def test_a_forced_bad_champion_is_rolled_back(loop_project: Loop) -> None:
    root = loop_project.root
    ctl = controller(root)
    assert ctl.tick().action == "idle"  # remembers v1 as the champion
    bad = kyklos.run(
        root,
        overrides={"model.estimator": "sklearn.dummy.DummyClassifier", "model.params": {}},
    )
    kyklos.promote(str(bad.model_version), project=root, force=True, reason="hotfix")
    watching = ctl.tick()
    assert watching.action == "waiting", watching
    assert watching.cycle is not None and watching.cycle.trigger == "champion_changed"
    assert watching.cycle.evidence["forced"] is True
    loop_project.serve(loop_project.summer.slice(0, 400), version=bad.model_version)
    rolled = ctl.tick()
    assert rolled.action == "rolled_back", rolled
    assert _champion(root) == 1
    history = kyklos.alias_history(root, alias="champion")
    assert (history[-1].action, history[-1].actor) == ("rollback", "kyklos loop")
    # the loop's own rollback does not look like a human move on the next tick
    assert ctl.tick().action == "idle"


@pytest.mark.slow
def test_approval_pause_and_a_human_promotion_during_the_rollout(loop_project: Loop) -> None:
    root = loop_project.root
    (root / "kyklos.yaml").write_text(
        (root / "kyklos.yaml")
        .read_text()
        .replace("  cooldown: 0s", "  cooldown: 0s\n  approval: true")
    )
    ctl = _drift_to_rollout(loop_project)
    loop_project.serve(loop_project.summer.slice(3000, 300), version=1, arm="champion")
    loop_project.serve(loop_project.summer.slice(3300, 300), version=2, arm="canary")
    waiting = ctl.tick()
    assert waiting.action == "awaiting_approval", waiting
    assert _champion(root) == 1
    # pause: ticks do nothing, even with an approval
    assert loop_pause(root, paused=True, reason="maintenance")
    refused = cli(root, "approve", "99")
    assert refused.returncode == 1 and "does not exist" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    done = cli(root, "approve", "1", "--reason", "looked at the canary")
    assert done.returncode == 0, done.stderr
    assert ctl.tick().action == "paused"
    assert _champion(root) == 1
    assert loop_pause(root, paused=False)
    promoted = ctl.tick()
    assert promoted.action == "promoted", promoted
    assert _champion(root) == 2
    assert "loop.approved" in _kinds(root) and "loop.paused" in _kinds(root)
    # a human rolls back while the loop watches: the human wins, recorded
    kyklos.rollback(project=root, reason="I prefer v1")
    superseded = ctl.tick()
    assert superseded.action == "superseded", superseded
    assert _champion(root) == 1
    status = loop_status(root)
    assert status["cycles"][0]["status"] == "superseded"


@pytest.mark.slow
def test_a_controller_that_died_mid_cycle_leaves_nothing_half_done(loop_project: Loop) -> None:
    project = loop_project.project
    registry = ModelRegistry.for_project(project)
    store = CycleStore(registry.db, project=project.name, model_name=registry.model_name)
    # a controller opened a cycle, trained v2, started its canary, then died
    cycle = store.create(
        trigger="drift", evidence={}, champion_version=1, actor="test", message="test"
    )
    second = kyklos.run(loop_project.root, overrides={"model.params.max_iter": 20})
    start_rollout(registry, second.model_version, strategy="canary", cycle_id=cycle.id)
    assert active_rollout(registry.db, registry.model_name) is not None
    # only one cycle at a time
    with pytest.raises(ConflictError):
        store.create(trigger="drift", evidence={}, champion_version=1, actor="t", message="t")
    result = controller(loop_project.root).tick()
    assert result.action == "abandoned", result
    assert active_rollout(registry.db, registry.model_name) is None
    assert _champion(loop_project.root) == 1
    assert store.active() is None


def test_one_tick_at_a_time_per_project(loop_project: Loop) -> None:
    first = Controller(loop_project.project, owner="host-a:1")
    second = Controller(loop_project.project, owner="host-b:2")
    assert first.cycles.acquire("host-a:1", 60)
    try:
        assert second.tick().action == "busy"
    finally:
        first.cycles.release("host-a:1")
    assert second.tick().action == "idle"


def test_triggers_respect_cooldown_budget_and_labels(loop_project: Loop) -> None:
    root = loop_project.root
    text = (root / "kyklos.yaml").read_text()
    (root / "kyklos.yaml").write_text(text.replace("  min_labelled: 1000", "  min_labelled: 50000"))
    loop_project.serve(loop_project.summer.slice(0, 2000), version=1)
    ctl = controller(root)
    result = ctl.tick()
    assert result.action == "suppressed", result
    assert "waiting for labels" in result.message
    assert ctl.tick().action in ("idle", "suppressed")
    suppressed = events(root, kinds=("loop.suppressed",))
    assert len(suppressed) == 1  # once per reason, not once per window


def test_loop_runs_in_a_thread_until_stopped(loop_project: Loop) -> None:
    stop = threading.Event()
    ctl = controller(loop_project.root)
    worker = threading.Thread(target=ctl.run, args=(stop,), kwargs={"interval": 0.05})
    worker.start()
    stop.wait(0.5)
    stop.set()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert (
        CycleStore(ctl.db, project=ctl.project.name, model_name=ctl.project.registered_model)
        .state()
        .state["champion"]
        == 1
    )


def test_cli_tick_status_and_bad_input(loop_project: Loop) -> None:
    root = loop_project.root
    tick = cli(root, "loop", "tick", "--json")
    assert tick.returncode == 0, tick.stderr
    assert json.loads(tick.stdout)["action"] == "idle"
    assert cli(root, "loop", "pause").returncode == 0
    assert "paused" in cli(root, "loop", "tick").stdout
    assert cli(root, "loop", "resume").returncode == 0
    status = cli(root, "loop", "status")
    assert status.returncode == 0 and "running" in status.stdout
    bad = cli(root, "explain-change", "v99")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    edit_yaml(root, "  cooldown: 0s", "  cooldown: soon")
    invalid = cli(root, "loop", "tick")
    assert invalid.returncode == 1
    assert "retrain.cooldown" in invalid.stderr and "soon" in invalid.stderr


def test_approve_needs_a_waiting_cycle(loop_project: Loop) -> None:
    project = loop_project.project
    store = CycleStore(
        open_db(project.db_url), project=project.name, model_name=project.registered_model
    )
    store.create(trigger="drift", evidence={}, champion_version=1, actor="t", message="t")
    with pytest.raises(ConflictError, match="only a cycle awaiting approval"):
        approve(1, loop_project.root)
