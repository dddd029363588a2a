"""``kyklos run`` and ``kyklos reproduce``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kyklos.cli.state import STATE

__all__ = ["register"]


def register(root: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    root.command("run")(run)
    root.command("reproduce")(reproduce)


def run(
    no_cache: Annotated[bool, typer.Option("--no-cache", help="recompute every step")] = False,
    fail_on_gates: Annotated[
        bool, typer.Option("--fail-on-gates", help="exit 1 when the model version fails a gate")
    ] = False,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="train on this stored dataset version")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a field for this run: model.params.max_iter=50"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Run the pipeline: load → validate → your steps → split → train → evaluate; track; gate."""
    from kyklos.api.pipeline import run as run_api
    from kyklos.cli.render import console, emit, table

    overrides: dict[str, str] = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            from kyklos.errors import ConfigError

            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. model.params.max_iter=50")
        overrides[key.strip()] = value
    outcome = run_api(
        STATE.project,
        no_cache=no_cache,
        progress=not as_json,
        dataset=dataset,
        overrides=overrides,
    )

    def human(o: Any) -> None:
        table(
            [
                (s["name"], "cached" if s["cached"] else "ran", f"{s['seconds']:.3f}s")
                for s in o.steps
            ],
            ["step", "status", "time"],
            title=f"pipeline of {o.project} on dataset {o.dataset_version}",
        )
        table(
            [(k, f"{v:.5f}") for k, v in o.metrics.items()],
            ["metric", "value"],
            title="metrics (test split)",
        )
        if o.gates:
            table(
                [
                    (
                        g["gate"],
                        "" if g.get("value") is None else f"{g['value']:.5f}",
                        "" if g.get("threshold") is None else f"{g['threshold']:.5f}",
                        {True: "pass", False: "FAIL", None: "skipped"}[g.get("passed")],
                        g.get("reason", ""),
                    )
                    for g in o.gates
                ],
                ["gate", "value", "threshold", "result", "why"],
                title="gates",
            )
        c = console()
        if o.reused:
            c.print(f"[green]✓[/green] up to date: run {o.run_id}, model version {o.model_version}")
        else:
            aliases = f" \\[{', '.join(o.aliases)}]" if o.aliases else ""
            c.print(
                f"[green]✓[/green] run {o.run_id} → model version {o.model_version}{aliases}: "
                f"{o.alias_note}"
            )
        ui = (
            f"open {o.tracking_uri}"
            if o.tracking_uri.startswith(("http://", "https://"))
            else f"mlflow ui --backend-store-uri {o.tracking_uri}"
        )
        c.print(f"next: kyklos models list · kyklos lineage {o.dataset_version} · {ui}")

    emit(outcome, as_json=as_json, human=human)
    if fail_on_gates and outcome.gates_passed is False:
        raise typer.Exit(1)


def reproduce(
    run_id: Annotated[str, typer.Argument(help="the MLflow run id to rerun")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Rerun a recorded run from its dataset version, params, seed and commit; compare."""
    from kyklos.api.pipeline import reproduce as reproduce_api
    from kyklos.cli.render import console, emit, table

    report = reproduce_api(run_id, STATE.project, progress=not as_json)

    def human(r: Any) -> None:
        table(
            [
                (
                    name,
                    values["recorded"],
                    values["now"],
                    "same" if values["recorded"] == values["now"] else "DIFFERENT",
                )
                for name, values in r.metrics.items()
            ],
            ["metric", "recorded", "now", ""],
            title=f"reproduce {r.run_id} on dataset {r.dataset_version}",
        )
        c = console()
        if r.identical:
            c.print(
                f"[green]✓ identical[/green]: metrics and all {r.rows_compared} test predictions "
                "are bitwise equal"
            )
        else:
            c.print(
                f"[red]✗ not identical[/red]: {r.rows_differing} of {r.rows_compared} predictions "
                f"differ (max |Δ| {r.max_abs_difference:.3g})"
            )
        for line in r.code_differences:
            c.print(f"  code: {line}")
        for d in r.environment_differences:
            c.print(f"  environment: {d['package']} {d['recorded']} → {d['now']}")

    emit(report, as_json=as_json, human=human)
    if not report.identical:
        raise typer.Exit(1)
