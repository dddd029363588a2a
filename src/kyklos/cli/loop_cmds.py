"""``kyklos loop``, ``approve``, ``rollout``, ``events``, ``explain-change``: the closed loop."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kyklos.cli.state import STATE

__all__ = ["loop_app", "register", "rollout_app"]

loop_app = typer.Typer(
    help="The closed loop: run it, tick it once, see its cycles, pause or resume it.",
    invoke_without_command=True,
    no_args_is_help=False,
)
rollout_app = typer.Typer(help="Canary and shadow rollouts of the challenger on live traffic.")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def register(root: typer.Typer) -> None:
    root.add_typer(loop_app, name="loop")
    root.add_typer(rollout_app, name="rollout")
    root.command("approve")(approve)
    root.command("events")(events)
    root.command("explain-change")(explain_change)


@loop_app.callback()
def loop(
    ctx: typer.Context,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval", min=0.1, help="seconds between ticks (default: retrain.interval)"
        ),
    ] = None,
) -> None:
    """Run the loop controller until interrupted (one tick every --interval seconds)."""
    if ctx.invoked_subcommand is not None:
        return
    import logging
    import sys

    from kyklos.api.loop import loop_run

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger("kyklos.loop")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    sys.stderr.write("kyklos loop: running (Ctrl-C to stop)\n")
    loop_run(STATE.project, interval=interval)


@loop_app.command("tick")
def tick(as_json: JsonOpt = False) -> None:
    """Advance the loop by one step (for cron or Airflow) and print what it did."""
    from kyklos.api.loop import loop_tick
    from kyklos.cli.render import console, emit

    result = loop_tick(STATE.project)
    emit(
        result,
        as_json=as_json,
        human=lambda r: console().print(f"{r.action}: {r.message}", markup=False),
    )


@loop_app.command("status")
def status(
    limit: Annotated[int, typer.Option("--limit", min=1, help="cycles to list")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Paused or running, the policy, and the latest cycles."""
    from kyklos.api.loop import loop_status
    from kyklos.cli.render import console, emit, table

    def human(data: dict[str, Any]) -> None:
        policy = data["policy"]
        console().print(
            f"loop of {data['project']}: {'PAUSED' if data['paused'] else 'running'}; "
            f"triggers: {', '.join(policy['on']) or 'none (watches promotions only)'}; "
            f"data: {policy['data']}; rollout: {policy['rollout']['strategy']}",
            markup=False,
        )
        table(
            (
                (
                    c["id"],
                    c["status"],
                    c["trigger"],
                    f"v{c['champion_version']}" if c["champion_version"] else "",
                    f"v{c['challenger_version']}" if c["challenger_version"] else "",
                    c["decision"] or "",
                    c["started_at"][:19],
                    (c["reason"] or "")[:80],
                )
                for c in data["cycles"]
            ),
            ["cycle", "status", "trigger", "champion", "challenger", "decision", "started", "why"],
            empty="no cycles yet",
        )

    emit(loop_status(STATE.project, limit=limit), as_json=as_json, human=human)


@loop_app.command("pause")
def pause(reason: Annotated[str, typer.Option("--reason", help="recorded")] = "") -> None:
    """Pause the loop: ticks do nothing until `kyklos loop resume`."""
    from kyklos.api.loop import loop_pause
    from kyklos.cli.render import console

    changed = loop_pause(STATE.project, paused=True, reason=reason)
    console().print("loop paused" if changed else "loop was already paused")


@loop_app.command("resume")
def resume(reason: Annotated[str, typer.Option("--reason", help="recorded")] = "") -> None:
    """Resume a paused loop."""
    from kyklos.api.loop import loop_pause
    from kyklos.cli.render import console

    changed = loop_pause(STATE.project, paused=False, reason=reason)
    console().print("loop resumed" if changed else "loop was not paused")


def approve(
    cycle: Annotated[int, typer.Argument(help="the cycle id (see `kyklos loop status`)")],
    reason: Annotated[str, typer.Option("--reason", help="recorded with the approval")] = "",
) -> None:
    """Approve the promotion a loop cycle waits for (retrain.approval: true)."""
    from kyklos.api.loop import approve as _approve
    from kyklos.cli.render import console

    approved = _approve(cycle, STATE.project, reason=reason)
    console().print(
        f"cycle {approved.id}: promotion of v{approved.challenger_version} approved by "
        f"{approved.approved_by}; the next tick promotes it",
        markup=False,
    )


@rollout_app.command("start")
def rollout_start(
    version: Annotated[
        str, typer.Argument(help="version to roll out: 5, v5 or an alias")
    ] = "challenger",
    strategy: Annotated[
        str | None, typer.Option("--strategy", help="canary or shadow (default: serve.rollout)")
    ] = None,
    fraction: Annotated[
        float | None,
        typer.Option("--fraction", min=0.0, max=1.0, help="canary share of requests"),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="recorded")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Start a canary or shadow rollout of a challenger; running servers pick it up."""
    from kyklos.api.loop import rollout_start as _start
    from kyklos.cli.render import console, emit

    rollout = _start(
        STATE.project, version=version, strategy=strategy, fraction=fraction, reason=reason
    )
    emit(
        rollout,
        as_json=as_json,
        human=lambda r: console().print(
            f"rollout {r.id}: {r.strategy} of v{r.challenger_version} against champion "
            f"v{r.champion_version}"
            + (f" on {r.fraction:.0%} of requests" if r.strategy == "canary" else ""),
            markup=False,
        ),
    )


@rollout_app.command("stop")
def rollout_stop(
    reject: Annotated[
        bool, typer.Option("--reject", help="end it as rejected and clear the challenger alias")
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="recorded")] = "",
    as_json: JsonOpt = False,
) -> None:
    """End the active rollout; servers stop routing to the challenger."""
    from kyklos.api.loop import rollout_stop as _stop
    from kyklos.cli.render import console, emit

    rollout = _stop(STATE.project, status="rejected" if reject else "stopped", reason=reason)
    emit(
        rollout,
        as_json=as_json,
        human=lambda r: console().print(
            f"rollout {r.id} of v{r.challenger_version}: {r.status}", markup=False
        ),
    )


@rollout_app.command("status")
def rollout_status(as_json: JsonOpt = False) -> None:
    """The active (or last) rollout and both arms' live figures."""
    from kyklos.api.loop import rollout_status as _status
    from kyklos.cli.render import console, emit, table

    def human(data: dict[str, Any]) -> None:
        rollout = data["rollout"]
        if rollout is None:
            console().print("no rollout yet")
            return
        console().print(
            f"rollout {rollout['id']}: {rollout['strategy']} of v{rollout['challenger_version']} "
            f"— {rollout['status']}",
            markup=False,
        )
        live = data["live"]
        rows = []
        for arm in ("champion", "challenger"):
            f = live[arm]
            rows.append(
                (
                    arm,
                    f"v{f['version']}",
                    f["rows"],
                    f["labelled"],
                    _fmt(f["metrics"].get(live["metric"])),
                )
            )
        table(rows, ["arm", "version", "rows", "labelled", live["metric"]])
        console().print(
            f"verdict: {live['verdict']}"
            + (f" (waiting for {'; '.join(live['waiting_for'])})" if live["waiting_for"] else ""),
            markup=False,
        )

    emit(_status(STATE.project), as_json=as_json, human=human)


def events(
    since: Annotated[
        str | None,
        typer.Option("--since", help="from this time: ISO 8601 or back from now: -1h, 30m"),
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", help="event kind or prefix ending in '.', e.g. loop. (repeatable)"),
    ] = None,
    cycle: Annotated[int | None, typer.Option("--cycle", help="only this loop cycle")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="the N latest events")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """The project's timeline: loop cycles, rollouts, swaps, alerts — what happened and why."""
    from kyklos.api.logs import parse_time
    from kyklos.api.loop import events as _events
    from kyklos.cli.render import emit, table

    moment = parse_time(since, what="--since") if since else None
    found = _events(STATE.project, since=moment, kinds=tuple(kind or ()), cycle=cycle, limit=limit)
    emit(
        found,
        as_json=as_json,
        human=lambda items: table(
            (
                (e.at.strftime("%Y-%m-%d %H:%M:%S"), e.kind, e.subject or "", e.actor, e.message)
                for e in items
            ),
            ["at (UTC)", "kind", "subject", "actor", "what"],
            empty="no events",
        ),
    )


def explain_change(
    version: Annotated[str, typer.Argument(help="model version: 5, v5 or an alias")],
    as_json: JsonOpt = False,
) -> None:
    """What changed with a model version, side by side with the champion before it."""
    from kyklos.api.loop import explain_change as _explain
    from kyklos.cli.render import console, emit, table

    def human(data: dict[str, Any]) -> None:
        new, old = data["version"], data["previous"]
        console().print(
            f"v{new['version']} (run {new['run_id']}, data {new['dataset_version']})"
            + (f" against v{old['version']} (data {old['dataset_version']})" if old else ""),
            markup=False,
        )
        cycle = data["cycle"]
        if cycle is not None:
            console().print(
                f"made by loop cycle {cycle['id']} — trigger: {cycle['trigger']}; "
                f"decision: {cycle['decision'] or cycle['status']}; {cycle['reason'] or ''}",
                markup=False,
            )
            evidence = cycle["evidence"]
            if evidence.get("metric") and evidence.get("current") is not None:
                console().print(
                    f"live {evidence['metric']} at the trigger: {evidence['current']:.4f} "
                    f"(at training {evidence.get('reference') or float('nan'):.4f}) "
                    f"in {evidence.get('window', '')}",
                    markup=False,
                )
            if evidence.get("features"):
                console().print(
                    "drifted features at the trigger: " + ", ".join(evidence["features"]),
                    markup=False,
                )
        table(
            (
                (m["metric"], _fmt(m["before"]), _fmt(m["after"]), _fmt(m["delta"], signed=True))
                for m in data["metrics"]
            ),
            ["metric", "before", "after", "change"],
            title="offline metrics",
        )
        table(
            (
                (
                    g["gate"],
                    _fmt(g.get("previous_value")),
                    _fmt(g.get("value")),
                    {True: "pass", False: "FAIL", None: "skipped"}[g["passed"]],
                    g.get("reason", ""),
                )
                for g in data["gates"]
            ),
            ["gate", "before", "after", "result", "detail"],
            title="gates",
            empty="no gates configured",
        )
        diff = data["data"]
        if diff:
            shifted = [c for c in diff.get("columns", []) if c.get("drifted")]
            table(
                (
                    (
                        c["name"],
                        _fmt(c.get("psi")),
                        _fmt(c.get("ks")),
                        _fmt(c.get("mean_delta"), signed=True),
                    )
                    for c in shifted[:15]
                ),
                ["column", "PSI", "KS", "mean change"],
                title=f"training data: {diff['n_rows_a']} → {diff['n_rows_b']} rows; drifted columns",
                empty="no column drifted between the two training sets",
            )
        table(
            (
                (
                    c["at"][:19],
                    c["action"],
                    c["from_version"],
                    c["to_version"],
                    c["actor"],
                    c["reason"],
                )
                for c in data["alias_changes"]
            ),
            ["at", "action", "from", "to", "actor", "reason"],
            title="champion changes",
            empty="never champion",
        )

    emit(_explain(version, STATE.project), as_json=as_json, human=human)


def _fmt(value: Any, *, signed: bool = False) -> str:
    if isinstance(value, float):
        return f"{value:+.4f}" if signed else f"{value:.4f}"
    return "" if value is None else str(value)
