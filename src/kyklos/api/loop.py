"""The closed loop as Python functions: ``kyklos loop``, ``loop tick``, ``loop status``,
``loop pause/resume``, ``approve``, ``rollout start/stop/status``, ``events``,
``explain-change``."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kyklos.config import Project, load_project

if TYPE_CHECKING:
    from kyklos.loop.controller import Controller, TickResult
    from kyklos.loop.cycles import Cycle, CycleStore
    from kyklos.registry.rollouts import Rollout
    from kyklos.store.events import Event

__all__ = [
    "approve",
    "controller",
    "events",
    "explain_change",
    "loop_pause",
    "loop_run",
    "loop_status",
    "loop_tick",
    "rollout_start",
    "rollout_status",
    "rollout_stop",
]

ProjectRef = str | Path | Project | None


def _project(project: ProjectRef) -> Project:
    return project if isinstance(project, Project) else load_project(project)


def controller(project: ProjectRef = None, *, monitor: bool = True) -> Controller:
    """The loop controller of ``project``; with ``monitor``, each idle tick first runs the
    incremental monitor over new prediction-log windows (HTML reports included)."""
    from kyklos.api.monitor import monitor_run
    from kyklos.loop.controller import Controller

    loaded = _project(project)

    def run_monitor() -> Any:
        return monitor_run(loaded)

    return Controller(loaded, monitor=run_monitor if monitor else None)


def loop_tick(project: ProjectRef = None) -> TickResult:
    """One step of the loop (for cron or Airflow): ``kyklos loop tick``."""
    return controller(project).tick()


def loop_run(
    project: ProjectRef = None,
    *,
    interval: float | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Tick until ``stop`` is set (or forever): ``kyklos loop``."""
    controller(project).run(stop or threading.Event(), interval=interval)


def loop_pause(
    project: ProjectRef = None, *, paused: bool = True, reason: str = "", actor: str | None = None
) -> bool:
    """Pause (or resume) the loop; returns whether it changed."""
    from kyklos.config.actor import current_actor

    return _cycles(_project(project)).set_paused(paused, actor=current_actor(actor), reason=reason)


def approve(
    cycle_id: int, project: ProjectRef = None, *, reason: str = "", actor: str | None = None
) -> Cycle:
    """Approve the promotion a cycle waits for; the next tick promotes."""
    from kyklos.config.actor import current_actor

    return _cycles(_project(project)).approve(cycle_id, actor=current_actor(actor), reason=reason)


def loop_status(project: ProjectRef = None, *, limit: int = 10) -> dict[str, Any]:
    """Paused or not, the policy, the active cycle and the latest ones."""
    loaded = _project(project)
    store = _cycles(loaded)
    state = store.state()
    active = store.active()
    retrain = loaded.config.retrain
    return {
        "project": loaded.name,
        "paused": state.paused,
        "lease_owner": state.lease_owner,
        "policy": {
            "on": list(retrain.on),
            "data": retrain.data,
            "cooldown": retrain.cooldown,
            "max_per_day": retrain.max_per_day,
            "approval": retrain.approval,
            "rollout": loaded.config.serve.rollout.model_dump(),
        },
        "active": active.to_dict() if active is not None else None,
        "cycles": [c.to_dict() for c in store.list(limit=limit)],
    }


def rollout_start(
    project: ProjectRef = None,
    *,
    version: int | str = "challenger",
    strategy: str | None = None,
    fraction: float | None = None,
    reason: str = "",
) -> Rollout:
    """Route live traffic to a challenger (``serve.rollout`` gives the defaults)."""
    from kyklos.registry.models import ModelRegistry
    from kyklos.registry.rollouts import start_rollout

    loaded = _project(project)
    plan = loaded.config.serve.rollout
    chosen = strategy or (plan.strategy if plan.strategy != "none" else "canary")
    return start_rollout(
        ModelRegistry.for_project(loaded),
        version,
        strategy=chosen,
        fraction=plan.fraction if fraction is None else fraction,
        reason=reason,
    )


def rollout_stop(
    project: ProjectRef = None, *, status: str = "stopped", reason: str = ""
) -> Rollout:
    """End the active rollout (``stopped``, or ``rejected`` to clear the challenger alias)."""
    from kyklos.registry.models import ModelRegistry
    from kyklos.registry.rollouts import end_rollout

    return end_rollout(ModelRegistry.for_project(_project(project)), status, reason=reason)


def rollout_status(project: ProjectRef = None) -> dict[str, Any]:
    """The active rollout (or the last one) with the live figures of both arms."""
    from kyklos.loop.live import compare_rollout
    from kyklos.registry.rollouts import list_rollouts
    from kyklos.store import open_db

    loaded = _project(project)
    recent = list_rollouts(open_db(loaded.db_url), loaded.registered_model, limit=1)
    if not recent:
        return {"rollout": None, "live": None}
    rollout = recent[0]
    live = compare_rollout(loaded, rollout)
    return {"rollout": rollout.to_dict(), "live": live.to_dict(), "sentence": live.sentence()}


def events(
    project: ProjectRef = None,
    *,
    since: dt.datetime | None = None,
    kinds: tuple[str, ...] = (),
    cycle: int | None = None,
    limit: int | None = 200,
) -> list[Event]:
    """The project's event timeline, oldest first (``kinds`` by name or prefix ``loop.``)."""
    from kyklos.store import open_db
    from kyklos.store.events import read_events

    loaded = _project(project)
    return read_events(
        open_db(loaded.db_url),
        loaded.name,
        since=since,
        kinds=kinds,
        subject=f"cycle {cycle}" if cycle is not None else None,
        limit=limit,
    )


def explain_change(version: int | str, project: ProjectRef = None) -> dict[str, Any]:
    """What changed with model ``version``, side by side with the champion before it: the
    training data (rows, drifted features between the two datasets), metrics and gates, the
    loop cycle and trigger that produced it (with its evidence), its live figures, and the
    alias changes it went through."""
    from kyklos.data.diff import diff_versions
    from kyklos.data.versions import DatasetStore
    from kyklos.registry.aliases import history
    from kyklos.registry.models import ModelRegistry

    loaded = _project(project)
    registry = ModelRegistry.for_project(loaded)
    target = registry.get(version)
    changes = history(registry.db, registry.model_name, alias="champion")
    previous_version = _previous_of(target.version, changes)
    previous = registry.get(previous_version) if previous_version is not None else None
    cycle = _cycle_of(loaded, target.version)
    if previous is None and cycle is not None and cycle.champion_version is not None:
        previous = registry.get(cycle.champion_version)
    out: dict[str, Any] = {
        "version": _version_summary(target),
        "previous": _version_summary(previous) if previous is not None else None,
        "metrics": _side_by_side(previous.metrics if previous else {}, target.metrics),
        "gates": _gates_side_by_side(previous, target),
        "data": None,
        "cycle": cycle.to_dict() if cycle is not None else None,
        "alias_changes": [
            c.to_dict() for c in changes if target.version in (c.from_version, c.to_version)
        ],
    }
    if (
        previous is not None
        and previous.dataset_version_id
        and target.dataset_version_id
        and previous.dataset_version_id != target.dataset_version_id
    ):
        datasets = DatasetStore.for_project(loaded)
        diff = diff_versions(
            datasets.get(previous.dataset_version_id), datasets.get(target.dataset_version_id)
        )
        out["data"] = diff.to_dict()
    return out


# -- helpers ----------------------------------------------------------------------------------


def _cycles(project: Project) -> CycleStore:
    from kyklos.loop.cycles import CycleStore
    from kyklos.store import open_db

    return CycleStore(
        open_db(project.db_url), project=project.name, model_name=project.registered_model
    )


def _previous_of(version: int, changes: list[Any]) -> int | None:
    for change in reversed(changes):
        if change.to_version == version and change.action == "promote":
            return int(change.from_version) if change.from_version is not None else None
    return None


def _cycle_of(project: Project, version: int) -> Cycle | None:
    for cycle in _cycles(project).list(limit=200):
        if cycle.challenger_version == version:
            return cycle
    return None


def _version_summary(version: Any) -> dict[str, Any]:
    return {
        "version": version.version,
        "run_id": version.run_id,
        "dataset_version": version.dataset_version_id,
        "created_at": version.created_at.isoformat(),
        "aliases": list(version.aliases),
        "gates_passed": version.gates_passed,
    }


def _gates_side_by_side(previous: Any, target: Any) -> list[dict[str, Any]]:
    """Each gate of ``target`` with how the previous champion fared on it."""
    before = {g.gate: g for g in previous.gate_results} if previous is not None else {}
    rows = []
    for gate in target.gate_results:
        row = gate.to_dict()
        old = before.get(gate.gate)
        row["previous_value"] = old.value if old is not None else None
        row["previous_passed"] = old.passed if old is not None else None
        rows.append(row)
    return rows


def _side_by_side(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        delta = b - a if isinstance(a, int | float) and isinstance(b, int | float) else None
        rows.append({"metric": name, "before": a, "after": b, "delta": delta})
    return rows
