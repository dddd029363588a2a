"""The loop controller: one :meth:`Controller.tick` advances the project's loop by one step.

A tick, under the project's tick lease (one at a time per project, see
:mod:`kyklos.loop.cycles`):

1. Paused → nothing.
2. No active cycle → look for a trigger, in this order: the champion moved outside the loop
   (a human promotion: watch it), then the policy's triggers (``retrain.on``) — new monitor
   results of the champion with data drift, prediction drift or a performance drop; a new
   dataset version; the cron ``schedule``. A trigger within ``cooldown`` of the last cycle or
   beyond ``max_per_day`` is recorded as suppressed. A trigger opens a cycle.
3. A cycle in ``training`` at the start of a tick was left by a controller that died: it is
   abandoned (an active rollout it started is stopped; a version it registered stays registered
   without an alias). A new cycle trains in the same tick: training data per policy → pipeline
   run (aliases untouched) → gates → challenger alias + rollout (or straight to the decision
   when ``serve.rollout.strategy`` is ``none``).
4. ``rollout`` → live figures of both arms (:func:`kyklos.loop.live.compare_arms`); when the
   minimums are met: promote (or wait for approval) or reject.
5. ``watching`` → the new champion against the previous one on live labelled traffic
   (:func:`kyklos.loop.live.compare_periods`): worse by more than ``retrain.rollback_margin``
   → roll back; good enough, or ``watch_duration`` over → kept.

A human's promote or rollback during a cycle wins: the cycle ends as ``superseded`` (recorded).
Every step is an event (``loop.*``) in the append-only log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kyklos.errors import ConflictError, KyklosError
from kyklos.loop.cycles import Cycle, CycleStore, owner_id

if TYPE_CHECKING:
    from kyklos.config import Project
    from kyklos.loop.live import LiveComparison
    from kyklos.registry.aliases import AliasChange
    from kyklos.registry.models import ModelRegistry, ModelVersion

__all__ = ["ACTOR", "Controller", "TickResult"]

log = logging.getLogger("kyklos.loop")

ACTOR = "kyklos loop"
_LEASE_SECONDS = 900.0  # longer than any training; a dead controller's lease expires


@dataclass(frozen=True)
class TickResult:
    """What one tick did: ``action`` (idle, paused, busy, waiting, ...), the cycle, a sentence."""

    action: str
    message: str
    cycle: Cycle | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "message": self.message,
            "cycle": self.cycle.to_dict() if self.cycle is not None else None,
        }


class Controller:
    """Runs the closed loop of one project (see the module doc).

    ``monitor`` is called at the start of each tick without an active cycle, to process new
    prediction-log windows (``kyklos.api.monitor.monitor_run``); the controller then reads the
    stored results. ``now`` is a clock for tests.
    """

    def __init__(
        self,
        project: Project,
        *,
        monitor: Callable[[], Any] | None = None,
        actor: str = ACTOR,
        owner: str | None = None,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        from kyklos.registry.models import ModelRegistry
        from kyklos.store import open_db

        self.project = project
        self.monitor = monitor
        self.actor = actor
        self.owner = owner or owner_id()
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self.db = open_db(project.db_url)
        self.registry: ModelRegistry = ModelRegistry.for_project(project)
        self.cycles = CycleStore(self.db, project=project.name, model_name=project.registered_model)

    # -- the tick -----------------------------------------------------------------------------
    def tick(self) -> TickResult:
        """Advance the loop by one step (see the module doc)."""
        if not self.cycles.acquire(self.owner, _LEASE_SECONDS):
            state = self.cycles.state()
            return TickResult("busy", f"another controller holds the loop ({state.lease_owner})")
        try:
            if self.cycles.state().paused:
                return TickResult("paused", "the loop is paused (`kyklos loop resume`)")
            cycle = self.cycles.active()
            if cycle is not None and cycle.status == "training":
                return self._abandon(cycle, "the controller stopped while training")
            if cycle is None:
                found = self._detect()
                if isinstance(found, TickResult):
                    return found
                cycle = found
            return self._advance(cycle)
        finally:
            self.cycles.release(self.owner)

    def run(self, stop: threading.Event, *, interval: float | None = None) -> None:
        """Tick every ``interval`` seconds (default ``retrain.interval``) until ``stop`` is set."""
        from kyklos.config.project import parse_duration

        every = (
            interval
            if interval is not None
            else parse_duration(self.project.config.retrain.interval)
        )
        while not stop.is_set():
            try:
                result = self.tick()
                if result.action not in ("idle", "waiting", "paused"):
                    log.info("loop: %s: %s", result.action, result.message)
            except Exception as exc:  # the loop never dies; the next tick tries again
                log.exception("loop tick failed: %s", exc)
            stop.wait(every)

    def _advance(self, cycle: Cycle) -> TickResult:
        if cycle.status == "training":
            return self._train(cycle)
        moved = self._human_moved(cycle)
        if moved is not None:
            return moved
        if cycle.status == "rollout":
            return self._judge_rollout(cycle)
        if cycle.status == "awaiting_approval":
            if cycle.approved_by:
                return self._promote(cycle, f"approved by {cycle.approved_by}")
            return TickResult(
                "waiting", f"cycle {cycle.id} waits for `kyklos approve {cycle.id}`", cycle
            )
        if cycle.status == "watching":
            return self._watch(cycle)
        return TickResult("idle", f"cycle {cycle.id} is {cycle.status}", cycle)

    # -- triggers -----------------------------------------------------------------------------
    def _detect(self) -> Cycle | TickResult:
        champion = self.registry.champion()
        if champion is None:
            return TickResult("idle", "no champion yet: nothing to watch or retrain")
        state = self.cycles.state().state
        last = state.get("champion")
        if last is None:
            self._remember(champion=champion.version)
        elif last != champion.version:
            self._remember(champion=champion.version)
            change = self._last_champion_change()
            by = change.actor if change is not None else "someone"
            if change is None or change.action != "promote" or change.from_version is None:
                self.cycles.event(
                    "loop.noticed",
                    self.actor,
                    f"{by} moved the champion v{last} → v{champion.version}"
                    + (f" ({change.action}: {change.reason})" if change is not None else ""),
                    {"from": last, "to": champion.version, "by": by},
                    subject="loop",
                )
            else:
                previous = change.from_version
                return self._open(
                    "champion_changed",
                    {
                        "from": previous,
                        "to": champion.version,
                        "by": by,
                        "forced": change.forced,
                        "reason": change.reason,
                    },
                    f"the champion moved v{last} → v{champion.version} outside the loop: "
                    "watching it against the previous champion",
                    champion_version=previous,
                    status="watching",
                    challenger_version=champion.version,
                    figures={"promoted_at": self._now().isoformat()},
                )
        if self.monitor is not None:
            try:
                self.monitor()
            except KyklosError as exc:
                log.warning("loop: monitoring failed: %s", exc)
        triggers = self._triggers(champion, state)
        if not triggers:
            return TickResult("idle", f"v{champion.version} is serving; no trigger")
        kind, evidence, message = triggers[0]
        blocked = self._blocked(kind)
        if blocked:
            reason = blocked.split(":", 1)[0]
            if state.get("suppressed") != reason:  # one event per reason, not one per window
                self._remember(suppressed=reason)
                self.cycles.event(
                    "loop.suppressed",
                    self.actor,
                    f"{message}; not retraining yet: {blocked}",
                    {"trigger": kind, "evidence": evidence, "why": blocked},
                    subject="loop",
                )
            return TickResult("suppressed", f"{message}; {blocked}")
        self._remember(suppressed=None)
        return self._open(kind, evidence, message, champion_version=champion.version)

    def _open(
        self,
        trigger: str,
        evidence: dict[str, Any],
        message: str,
        *,
        champion_version: int,
        status: str = "training",
        challenger_version: int | None = None,
        figures: dict[str, Any] | None = None,
    ) -> Cycle | TickResult:
        try:
            cycle = self.cycles.create(
                trigger=trigger,
                evidence=evidence,
                champion_version=champion_version,
                actor=self.actor,
                message=message,
                status=status,
                challenger_version=challenger_version,
            )
        except ConflictError as exc:
            return TickResult("busy", str(exc))
        if figures:
            self.cycles.note(cycle, figures=figures)
            cycle = self.cycles.get(cycle.id)
        return cycle

    def _triggers(
        self, champion: ModelVersion, state: dict[str, Any]
    ) -> list[tuple[str, dict[str, Any], str]]:
        policy = self.project.config.retrain
        found: list[tuple[str, dict[str, Any], str]] = []
        found += self._monitor_triggers(champion, state, policy.on)
        if "new_data" in policy.on:
            found += self._new_data(champion, state)
        if "schedule" in policy.on and policy.schedule:
            found += self._schedule(champion, state, policy.schedule)
        return found

    def _monitor_triggers(
        self, champion: ModelVersion, state: dict[str, Any], on: Sequence[str]
    ) -> list[tuple[str, dict[str, Any], str]]:
        from kyklos.monitoring.store import MonitorStore

        store = MonitorStore(
            self.db, project=self.project.name, model_name=self.project.registered_model
        )
        seen = int(state.get("monitor_result", 0))
        results = [r for r in store.list(limit=200, version=champion.version) if r.id > seen]
        if not results:
            return []
        self._remember(monitor_result=max(r.id for r in results))
        found: list[tuple[str, dict[str, Any], str]] = []
        for stored in sorted(results, key=lambda r: r.id):
            result = stored.result
            window = result.window.label
            if "drift" in on and result.dataset_drift:
                drifted = [f.feature for f in result.features if f.drifted]
                found.append(
                    (
                        "drift",
                        {
                            "monitor_result": stored.id,
                            "window": window,
                            "share_drifted": result.share_drifted,
                            "threshold": result.drift_share_threshold,
                            "features": drifted,
                        },
                        f"data drift in {window} of v{champion.version}: "
                        f"{len(drifted)} features drifted ({result.share_drifted:.0%}): "
                        + ", ".join(drifted[:6]),
                    )
                )
            if (
                "prediction_drift" in on
                and result.prediction is not None
                and result.prediction.drifted
            ):
                found.append(
                    (
                        "prediction_drift",
                        {
                            "monitor_result": stored.id,
                            "window": window,
                            "method": result.prediction.method,
                            "statistic": result.prediction.statistic,
                            "threshold": result.prediction.threshold,
                        },
                        f"prediction drift in {window} of v{champion.version} "
                        f"({result.prediction.method} {result.prediction.statistic:.3f})",
                    )
                )
            perf = result.performance
            if "performance" in on and perf is not None and perf.degraded:
                found.append(
                    (
                        "performance",
                        {
                            "monitor_result": stored.id,
                            "window": window,
                            "metric": perf.metric,
                            "current": perf.metrics.get(perf.metric),
                            "reference": perf.reference.get(perf.metric),
                            "drop": perf.drop,
                            "max_drop": perf.max_drop,
                            "labelled": perf.n_labelled,
                        },
                        f"{perf.metric} of v{champion.version} dropped by {perf.drop:.3f} "
                        f"(> {perf.max_drop}) in {window}",
                    )
                )
        order = {"performance": 0, "drift": 1, "prediction_drift": 2}
        return sorted(found, key=lambda t: order[t[0]])

    def _new_data(
        self, champion: ModelVersion, state: dict[str, Any]
    ) -> list[tuple[str, dict[str, Any], str]]:
        from kyklos.data.versions import DatasetStore

        latest = DatasetStore.for_project(self.project).latest(self.project.dataset_name)
        if latest is None or latest.id == champion.dataset_version_id:
            return []
        if latest.id == state.get("dataset") or latest.created_at <= champion.created_at:
            return []
        if latest.note and latest.note.startswith("loop retrain data"):
            return []  # made by the loop itself
        self._remember(dataset=latest.id)
        return [
            (
                "new_data",
                {"dataset_version": latest.id, "rows": latest.n_rows},
                f"new dataset version {latest.id} ({latest.n_rows} rows)",
            )
        ]

    def _schedule(
        self, champion: ModelVersion, state: dict[str, Any], schedule: str
    ) -> list[tuple[str, dict[str, Any], str]]:
        from croniter import croniter

        now = self._now()
        base_text = state.get("schedule_at")
        base = dt.datetime.fromisoformat(base_text) if base_text else champion.created_at
        due = croniter(schedule, base).get_next(dt.datetime)
        if due > now:
            return []
        self._remember(schedule_at=now.isoformat())
        return [
            (
                "schedule",
                {"cron": schedule, "due": due.isoformat()},
                f"scheduled retrain ({schedule})",
            )
        ]

    def _blocked(self, trigger: str) -> str:
        from kyklos.config.project import parse_duration
        from kyklos.loop.data import labelled_rows

        policy = self.project.config.retrain
        now = self._now()
        if trigger != "new_data":
            have = labelled_rows(self.project)
            if have < policy.min_labelled:
                return (
                    f"waiting for labels: {have} labelled rows in the prediction log, "
                    f"retrain.min_labelled is {policy.min_labelled}"
                )
        last = self.cycles.last_started()
        cooldown = dt.timedelta(seconds=parse_duration(policy.cooldown))
        if last is not None and now - last < cooldown:
            return f"cool-down: the last cycle started {(now - last).total_seconds():.0f} s ago (retrain.cooldown {policy.cooldown})"
        today = self.cycles.started_since(now - dt.timedelta(days=1))
        if today >= policy.max_per_day:
            return f"budget: {today} retrains in the last 24 h (retrain.max_per_day {policy.max_per_day})"
        return ""

    # -- training -----------------------------------------------------------------------------
    def _train(self, cycle: Cycle) -> TickResult:
        from kyklos.loop.data import training_data
        from kyklos.pipeline.project import run_project

        champion = self.registry.get(cycle.champion_version) if cycle.champion_version else None
        if champion is None:
            return self._end(cycle, "rejected", "failed", "the champion it started from is gone")
        try:
            if cycle.trigger == "new_data":
                ref = str(cycle.evidence["dataset_version"])
                data_note: dict[str, Any] = {"dataset_version": ref, "source": "new dataset"}
                project = self._retrain_project(keep_steps=True)
            else:
                data = training_data(self.project, champion, now=self._now())
                if data.dataset is None:
                    return self._end(cycle, "rejected", "no_data", data.reason)
                ref = data.dataset.id
                data_note = data.to_dict()
                project = self._retrain_project(keep_steps=False)
            self.cycles.event(
                "loop.data",
                self.actor,
                f"cycle {cycle.id} trains on dataset {ref}"
                + (
                    f" ({data_note.get('reference_rows', 0)} reference + "
                    f"{data_note.get('recent_rows', 0)} recent labelled rows)"
                    if "recent_rows" in data_note
                    else ""
                ),
                {"cycle_id": cycle.id, **data_note},
                subject=f"cycle {cycle.id}",
            )
            outcome = run_project(project, use_cache=True, dataset_ref=ref)
        except Exception as exc:
            return self._end(
                cycle, "failed", "failed", f"retraining failed: {type(exc).__name__}: {exc}"
            )
        version = outcome.model_version
        gates = [dict(g) for g in outcome.gates]
        values: dict[str, Any] = {
            "dataset_version": ref,
            "run_id": outcome.run_id,
            "challenger_version": version,
        }
        if version is None:
            return self._end(
                cycle, "failed", "failed", "the run registered no model version", **values
            )
        self.cycles.event(
            "loop.trained",
            self.actor,
            f"cycle {cycle.id}: run {outcome.run_id} registered v{version}; gates "
            + ("passed" if outcome.gates_passed else "FAILED"),
            {
                "cycle_id": cycle.id,
                "run_id": outcome.run_id,
                "version": version,
                "metrics": outcome.metrics,
                "gates": gates,
                "gates_passed": outcome.gates_passed,
            },
            subject=f"cycle {cycle.id}",
        )
        if not outcome.gates_passed:
            failed = "; ".join(str(g.get("gate")) for g in gates if not g.get("passed"))
            return self._end(
                cycle, "rejected", "rejected", f"v{version} failed its gates: {failed}", **values
            )
        if champion.version == version:
            return self._end(
                cycle,
                "rejected",
                "rejected",
                "the retrain reproduced the champion itself",
                **values,
            )
        strategy = self.project.config.serve.rollout
        if strategy.strategy == "none":
            cycle = self.cycles.advance(cycle, "rollout", **values)
            return self._decide(cycle, None)
        return self._start_rollout(cycle, version, values)

    def _retrain_project(self, *, keep_steps: bool) -> Project:
        """The project as the loop runs it: aliases left to the loop, and no user steps when the
        data are logged model inputs (already the steps' outputs)."""
        config = self.project.config
        update: dict[str, Any] = {
            "registry": config.registry.model_copy(update={"promote": "never"})
        }
        if not keep_steps:
            update["pipeline"] = config.pipeline.model_copy(update={"steps": []})
        return dataclasses.replace(self.project, config=config.model_copy(update=update))

    def _start_rollout(self, cycle: Cycle, version: int, values: dict[str, Any]) -> TickResult:
        from kyklos.registry.rollouts import active_rollout, end_rollout, start_rollout

        plan = self.project.config.serve.rollout
        current = active_rollout(self.db, self.project.registered_model)
        if current is not None and current.cycle_id is None:
            end_rollout(
                self.registry,
                "stopped",
                actor=self.actor,
                reason=f"replaced by loop cycle {cycle.id}",
            )
        rollout = start_rollout(
            self.registry,
            version,
            strategy=plan.strategy,
            fraction=plan.fraction,
            actor=self.actor,
            reason=f"loop cycle {cycle.id}",
            cycle_id=cycle.id,
        )
        cycle = self.cycles.advance(
            cycle,
            "rollout",
            rollout_id=rollout.id,
            event=(
                "loop.rollout",
                self.actor,
                f"cycle {cycle.id}: {plan.strategy} of v{version} against v{cycle.champion_version}"
                + (f" on {plan.fraction:.0%} of requests" if plan.strategy == "canary" else ""),
                {
                    "cycle_id": cycle.id,
                    "rollout_id": rollout.id,
                    "strategy": plan.strategy,
                    "fraction": plan.fraction,
                    "min_requests": plan.min_requests,
                    "min_labelled": plan.min_labelled,
                    "duration": plan.duration,
                },
            ),
            **values,
        )
        return TickResult("rollout", f"v{version} is in {plan.strategy}", cycle)

    # -- decisions ----------------------------------------------------------------------------
    def _judge_rollout(self, cycle: Cycle) -> TickResult:
        from kyklos.config.project import parse_duration
        from kyklos.loop.live import compare_rollout
        from kyklos.registry.rollouts import get_rollout

        if cycle.rollout_id is None:
            return self._decide(cycle, None)
        rollout = get_rollout(self.db, cycle.rollout_id)
        comparison = compare_rollout(self.project, rollout, now=self._now())
        self.cycles.note(cycle, figures=comparison.to_dict())
        if not comparison.decided:
            limit = parse_duration(self.project.config.retrain.watch_duration)
            if comparison.seconds > limit:
                return self._reject(
                    cycle,
                    comparison,
                    f"not enough live evidence within {self.project.config.retrain.watch_duration}: "
                    + "; ".join(comparison.waiting_for),
                )
            return TickResult(
                "waiting", "rollout: waiting for " + "; ".join(comparison.waiting_for), cycle
            )
        return self._decide(self.cycles.get(cycle.id), comparison)

    def _decide(self, cycle: Cycle, comparison: LiveComparison | None) -> TickResult:
        if comparison is not None and comparison.verdict == "worse":
            return self._reject(
                cycle, comparison, f"worse than the champion live: {comparison.sentence()}"
            )
        why = (
            f"live: {comparison.sentence()}"
            if comparison is not None
            else "passed its gates (serve.rollout.strategy is none: no live comparison)"
        )
        if self.project.config.retrain.approval and not cycle.approved_by:
            cycle = self.cycles.advance(
                cycle,
                "awaiting_approval",
                event=(
                    "loop.awaiting_approval",
                    self.actor,
                    f"cycle {cycle.id}: v{cycle.challenger_version} is ready ({why}); "
                    f"approve with `kyklos approve {cycle.id}`",
                    {"cycle_id": cycle.id, "figures": comparison.to_dict() if comparison else None},
                ),
            )
            return TickResult("awaiting_approval", f"cycle {cycle.id} waits for approval", cycle)
        return self._promote(cycle, why)

    def _promote(self, cycle: Cycle, why: str) -> TickResult:
        from kyklos.registry.aliases import promote

        version = cycle.challenger_version
        assert version is not None
        current = self.registry.champion()
        if current is None or current.version != version:
            promote(
                self.registry, version, actor=self.actor, reason=f"loop cycle {cycle.id}: {why}"
            )
        self._remember(champion=version)
        self._end_rollout(cycle, "promoted", f"loop cycle {cycle.id}", clear_challenger=False)
        now = self._now()
        figures = {**cycle.figures, "promoted_at": now.isoformat()}
        cycle = self.cycles.advance(
            cycle,
            "watching",
            figures=figures,
            decision="promoted",
            reason=why,
            event=(
                "loop.promoted",
                self.actor,
                f"cycle {cycle.id}: v{version} promoted to champion (was v{cycle.champion_version}); {why}",
                {
                    "cycle_id": cycle.id,
                    "version": version,
                    "previous": cycle.champion_version,
                    "figures": cycle.figures,
                },
            ),
        )
        return TickResult("promoted", f"v{version} is the champion", cycle)

    def _reject(self, cycle: Cycle, comparison: LiveComparison | None, why: str) -> TickResult:
        self._end_rollout(cycle, "rejected", why)
        figures = comparison.to_dict() if comparison is not None else cycle.figures
        return self._end(cycle, "rejected", "rejected", why, figures=figures)

    def _watch(self, cycle: Cycle) -> TickResult:
        from kyklos.config.project import parse_duration
        from kyklos.loop.live import compare_periods
        from kyklos.registry.aliases import rollback

        policy = self.project.config.retrain
        promoted_at = dt.datetime.fromisoformat(
            str(cycle.figures.get("promoted_at") or cycle.updated_at.isoformat())
        )
        assert cycle.champion_version is not None and cycle.challenger_version is not None
        comparison = compare_periods(
            self.project,
            previous=cycle.champion_version,
            current=cycle.challenger_version,
            switched_at=promoted_at,
            min_labelled=policy.watch_labelled,
            margin=policy.rollback_margin,
            now=self._now(),
        )
        figures = {**cycle.figures, "watch": comparison.to_dict()}
        if comparison.verdict == "worse":
            why = f"v{cycle.challenger_version} does worse than v{cycle.champion_version} did: {comparison.sentence()} (margin {policy.rollback_margin})"
            change = rollback(
                self.registry, actor=self.actor, reason=f"loop cycle {cycle.id}: {why}"
            )
            self._remember(champion=change.to_version)
            cycle = self.cycles.advance(
                cycle,
                "rolled_back",
                figures=figures,
                decision="rolled_back",
                reason=why,
                event=(
                    "loop.rolled_back",
                    self.actor,
                    f"cycle {cycle.id}: rolled back to v{change.to_version}; {why}",
                    {
                        "cycle_id": cycle.id,
                        "to": change.to_version,
                        "from": change.from_version,
                        "figures": comparison.to_dict(),
                    },
                ),
            )
            return TickResult("rolled_back", why, cycle)
        if comparison.decided:
            why = f"v{cycle.challenger_version} holds up live: {comparison.sentence()}"
            return self._end(
                cycle, "kept", cycle.decision or "kept", why, figures=figures, kind="loop.kept"
            )
        if comparison.seconds > parse_duration(policy.watch_duration):
            why = (
                f"watched for {policy.watch_duration} without enough labels to judge: "
                + "; ".join(comparison.waiting_for)
            )
            return self._end(
                cycle, "kept", cycle.decision or "kept", why, figures=figures, kind="loop.kept"
            )
        self.cycles.note(cycle, figures=figures)
        return TickResult(
            "waiting",
            "watching the new champion: waiting for " + "; ".join(comparison.waiting_for),
            cycle,
        )

    # -- humans and crashes -------------------------------------------------------------------
    def _human_moved(self, cycle: Cycle) -> TickResult | None:
        """End the cycle when a human moved the champion in a way the cycle did not plan."""
        champion = self.registry.champion()
        current = champion.version if champion is not None else None
        if cycle.status in ("rollout", "awaiting_approval"):
            if current == cycle.champion_version:
                return None
            if current == cycle.challenger_version:  # promoted by hand: respected, then watched
                return self._promote(
                    cycle, f"promoted by {self._last_alias_actor()} during the rollout"
                )
        elif cycle.status == "watching":
            if current == cycle.challenger_version:
                return None
        else:
            return None
        self._end_rollout(cycle, "stopped", f"superseded: champion moved to v{current}")
        self._remember(champion=current)
        return self._end(
            cycle,
            "superseded",
            "superseded",
            f"{self._last_alias_actor()} moved the champion to v{current} during the cycle; the loop respects it",
        )

    def _abandon(self, cycle: Cycle, why: str) -> TickResult:
        self._end_rollout(cycle, "stopped", f"cycle {cycle.id} abandoned")
        return self._end(cycle, "abandoned", "abandoned", why)

    def _end_rollout(self, cycle: Cycle, status: str, reason: str, **options: Any) -> None:
        """End the rollout this cycle started, if it is still active."""
        from kyklos.registry.rollouts import active_rollout, end_rollout

        rollout = active_rollout(self.db, self.project.registered_model)
        if rollout is not None and rollout.cycle_id == cycle.id:
            end_rollout(self.registry, status, actor=self.actor, reason=reason, **options)

    def _end(
        self,
        cycle: Cycle,
        status: str,
        decision: str,
        why: str,
        *,
        kind: str | None = None,
        **values: Any,
    ) -> TickResult:
        cycle = self.cycles.advance(
            cycle,
            status,
            decision=decision,
            reason=why,
            event=(
                kind or f"loop.{status}",
                self.actor,
                f"cycle {cycle.id} {status}: {why}",
                {"cycle_id": cycle.id, "decision": decision, "reason": why},
            ),
            **values,
        )
        return TickResult(status, why, cycle)

    # -- helpers ------------------------------------------------------------------------------
    def _remember(self, **values: Any) -> None:
        self.cycles.update_state(lambda state: state.update(values))

    def _last_champion_change(self) -> AliasChange | None:
        from kyklos.registry.aliases import history

        changes = history(self.db, self.project.registered_model, alias="champion")
        return changes[-1] if changes else None

    def _last_alias_actor(self) -> str:
        change = self._last_champion_change()
        return change.actor if change is not None else "someone"
