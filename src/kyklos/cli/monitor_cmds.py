"""``kyklos monitor ...``: run (incremental, over the prediction log), show, check (one file)."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from kyklos.cli.state import STATE

__all__ = ["app", "register"]

app = typer.Typer(no_args_is_help=True)

_JSON = typer.Option("--json", help="print JSON")
_TOP = 10


def register(root: typer.Typer) -> None:
    """Add ``kyklos monitor`` to the root app."""
    root.add_typer(
        app, name="monitor", help="Drift, data quality and performance over the prediction log."
    )


@app.command("run")
def run(
    version: Annotated[
        str | None,
        typer.Option("--version", help="only this model version (3, v3, champion); default all"),
    ] = None,
    report_dir: Annotated[
        str | None, typer.Option("--report-dir", help="where the HTML reports go")
    ] = None,
    no_reports: Annotated[bool, typer.Option("--no-reports", help="write no HTML report")] = False,
    fail_on_drift: Annotated[
        bool,
        typer.Option("--fail-on-drift", help="exit 1 when a new window's verdict is not ok"),
    ] = False,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Check the prediction-log windows completed since the last run; store each result."""
    from kyklos.api.monitor import monitor_run
    from kyklos.cli.render import console, emit, table

    outcome = monitor_run(
        STATE.project, version=version, report_dir=report_dir, reports=not no_reports
    )

    def human(_: Any) -> None:
        out = console()
        table(
            (
                (
                    s.id,
                    _v(s.model_version),
                    s.result.window.label,
                    f"{s.result.window.n_rows:,}",
                    _verdict_text(s.result.verdict),
                    _share(s.result),
                    _drifted(s.result),
                )
                for s in outcome.stored
            ),
            ["id", "version", "window", "rows", "verdict", "drifted", "most drifted"],
            title="new windows",
            empty="no new complete window since the last run",
        )
        for number, rows in sorted(outcome.pending.items()):
            if rows:
                out.print(f"[dim]v{number}: {rows:,} rows wait for their window to complete[/dim]")
        for number, rows in sorted(outcome.late.items()):
            out.print(
                f"[yellow]v{number}: {rows:,} rows arrived after their window was checked; "
                "counted as late, not checked[/yellow]"
            )
        for number, why in sorted(outcome.skipped.items()):
            out.print(f"[red]v{number} not checked:[/red] {why}", markup=False)
        if outcome.reports:
            folder = outcome.reports[-1].rsplit("/", 1)[0]
            out.print(f"reports: {folder}/ (newest {outcome.reports[-1].rsplit('/', 1)[-1]})")
        out.print("[dim]next: kyklos monitor show[/dim]")

    emit(_finite(outcome.to_dict()), as_json=as_json, human=human)
    if fail_on_drift and any(r.verdict != "ok" for r in outcome):
        raise typer.Exit(1)


@app.command("show")
def show(
    limit: Annotated[int, typer.Option("--limit", "-n", help="how many, newest first")] = 20,
    version: Annotated[
        str | None, typer.Option("--version", help="only this model version (3, v3, champion)")
    ] = None,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """List the stored monitor results, newest first."""
    from kyklos.api.monitor import monitor_show
    from kyklos.cli.render import emit, table

    stored = monitor_show(STATE.project, limit=limit, version=version)

    def human(_: Any) -> None:
        with_performance = any(s.result.performance is not None for s in stored)
        table(
            (
                (
                    s.id,
                    _v(s.model_version),
                    s.result.window.label,
                    f"{s.result.window.n_rows:,}",
                    _verdict_text(s.result.verdict),
                    _share(s.result),
                    _drifted(s.result),
                    *((_performance(s.result),) if with_performance else ()),
                )
                for s in stored
            ),
            [
                "id",
                "version",
                "window",
                "rows",
                "verdict",
                "drifted",
                "most drifted",
                *(("performance",) if with_performance else ()),
            ],
            empty="no monitor results yet; run `kyklos monitor run`",
        )

    emit(_finite([s.to_dict() for s in stored]), as_json=as_json, human=human)


@app.command("check")
def check(
    reference: Annotated[
        str,
        typer.Option(
            "--reference",
            "-r",
            help="model version (3, v3, champion), dataset version (ds-...) or CSV/Parquet file",
        ),
    ],
    current: Annotated[str, typer.Option("--current", "-c", help="CSV/Parquet file to check")],
    report: Annotated[
        str | None, typer.Option("--report", help="write the report here (.html or .json)")
    ] = None,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="exit 1 when the verdict is not ok (for CI)")
    ] = False,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Check one table against a reference, once (nothing is stored). Exit code 0 even on
    drift, unless --fail-on-drift."""
    from kyklos.api.monitor import monitor_check
    from kyklos.cli.render import emit

    result = monitor_check(reference, current, project=STATE.project, report=report)
    emit(
        _finite(result.to_dict()),
        as_json=as_json,
        human=lambda _: _print_check(result, report),
    )
    if fail_on_drift and result.verdict != "ok":
        raise typer.Exit(1)


# -- rendering ----------------------------------------------------------------------------------
@app.command("rules")
def rules(
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="write the rules file here")
    ] = None,
) -> None:
    """Prometheus alert rules generated from monitor.alerts (check with `promtool check rules`)."""
    from kyklos.api.monitor import monitor_rules

    text = monitor_rules(STATE.project, output=output)
    if output is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"wrote {output} (check it with: promtool check rules {output})")


def _print_check(result: Any, report: str | None) -> None:
    from kyklos.cli.render import console, table

    out = console()
    features = result.features
    drifted = [f for f in features if f.drifted]
    style = "green" if result.verdict == "ok" else "red"
    out.print(f"[bold {style}]{result.verdict}[/bold {style}]: {_headline(result)}")
    out.print(
        f"[dim]{result.window.n_rows:,} rows checked against {result.n_reference:,} "
        "reference rows[/dim]"
    )
    shown = drifted[:_TOP] if drifted else list(features[:_TOP])
    tests = any(f.p_value is not None for f in shown)
    table(
        (
            (
                f.feature,
                f.method,
                _num(f.statistic),
                _num(f.threshold),
                *((_num(f.p_value),) if tests else ()),
                "DRIFT" if f.drifted else "ok",
            )
            for f in shown
        ),
        ["feature", "method", "statistic", "threshold", *(("p-value",) if tests else ()), ""],
        title="top drifted features" if drifted else "features (none drifted)",
        empty="no feature could be compared",
    )
    if len(drifted) > _TOP:
        out.print(f"[dim]... and {len(drifted) - _TOP} more drifted features (see --json)[/dim]")
    if result.prediction is not None:
        p = result.prediction
        word = "drifted" if p.drifted else "stable"
        out.print(
            f"predictions: {word} ({p.method} {_num(p.statistic)}, threshold {_num(p.threshold)})"
        )
    if result.quality:
        errors = sum(q.severity == "error" for q in result.quality)
        out.print(f"quality: {len(result.quality)} issue(s), {errors} error(s)")
        for q in result.quality[:_TOP]:
            out.print(f"  {q.severity}: {q.feature}: {q.detail}", markup=False)
    if result.performance is not None:
        out.print(f"performance: {_performance(result)}")
    if report is not None:
        out.print(f"report: {report}", markup=False)


def _headline(result: Any) -> str:
    """Why the verdict is what it is, in one line."""
    from rich.markup import escape

    features = result.features
    count = sum(f.drifted for f in features)
    sign = "≥" if result.dataset_drift else "<"
    share = (
        f"{count}/{len(features)} features drifted "
        f"({result.share_drifted:.0%} {sign} {result.drift_share_threshold:.0%})"
    )
    perf = result.performance
    if result.verdict == "degraded" and perf is not None:
        return escape(
            f"{perf.metric} {_num(perf.metrics.get(perf.metric))}, reference "
            f"{_num(perf.reference.get(perf.metric))} (drop {_num(perf.drop)} > "
            f"{_num(perf.max_drop)}) · {share}"
        )
    if result.verdict == "drift" and not result.dataset_drift and result.prediction is not None:
        p = result.prediction
        return escape(
            f"the predictions drifted ({p.method} {_num(p.statistic)}, threshold "
            f"{_num(p.threshold)}) · {share}"
        )
    if result.verdict == "quality":
        errors = sum(q.severity == "error" for q in result.quality)
        return escape(f"{errors} data-quality error(s) · {share}")
    return escape(share)


def _verdict_text(verdict: str) -> str:
    return verdict.upper() if verdict != "ok" else "ok"


def _share(result: Any) -> str:
    drifted = sum(f.drifted for f in result.features)
    return f"{drifted}/{len(result.features)}"


def _drifted(result: Any) -> str:
    names = [f.feature for f in result.features if f.drifted]
    head = ", ".join(names[:2])
    return head + (f" +{len(names) - 2}" if len(names) > 2 else "")


def _performance(result: Any) -> str:
    perf = result.performance
    if perf is None:
        return ""
    value = perf.metrics.get(perf.metric)
    ref = perf.reference.get(perf.metric)
    text = f"{perf.metric} {_num(value)} (ref {_num(ref)}, {perf.n_labelled:,} labelled)"
    return text + (" DEGRADED" if perf.degraded else "")


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else "—"


def _finite(value: Any) -> Any:
    """JSON-safe: non-finite floats become None (strict JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        if len(value) == 1 and "$float" in value:
            return None
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
