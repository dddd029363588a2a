"""``kyklos demo``: the story of one model through the foundation of the loop, narrated.

On the 2013 New York flights (real seasonal drift in late arrivals):

1. scaffold a project and train on January–February → the first champion;
2. rerun with nothing changed → every step is a cache hit, nothing is retrained;
3. March–April arrive → a new dataset version, its drift against the old one, a challenger
   trained on it, gated against the champion, promoted;
4. a deliberately bad model (a constant predictor) → fails its gates, promotion refused;
5. one-step rollback to the previous champion, recorded in the alias history;
6. the first run reproduced bit for bit from its recorded dataset version, params and seed.

Serving, monitoring and the closed loop join this story as they land.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEMO_MARKER", "DemoResult", "run_demo"]

DEMO_MARKER = ".kyklos-demo"


@dataclass
class DemoResult:
    project_dir: str
    champion_version: int | None = None
    model_versions: list[int] = field(default_factory=list)
    refused_version: int | None = None
    rolled_back_to: int | None = None
    reproduced_identical: bool | None = None
    cached_rerun_seconds: float | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def run_demo(
    directory: str | Path = "kyklos-demo",
    *,
    fast: bool = False,
    force: bool = False,
    say: Callable[[str], None] | None = None,
    show: Callable[[Any], None] | None = None,
) -> DemoResult:
    """Run the demo in ``directory``; ``say`` prints narration, ``show`` renders Rich objects."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from kyklos.api.data import data_diff
    from kyklos.api.init import init_project
    from kyklos.api.models import alias_history, promote, rollback
    from kyklos.api.pipeline import reproduce, run
    from kyklos.errors import GateFailed

    out = say or (lambda _text: None)
    render = show or (lambda _obj: None)
    started = time.perf_counter()
    root = Path(directory).resolve()
    overrides: dict[str, Any] = {"model.params.max_iter": 40} if fast else {}
    result = DemoResult(project_dir=str(root))

    out("[bold]1 · A project, and a first model trained on January–February 2013[/bold]")
    init_project(root, force=force)
    (root / DEMO_MARKER).write_text("made by `kyklos demo`; safe to delete\n")
    source = pq.read_table(_flights())
    months = source.column("month")
    data_file = root / "data" / "flights.parquet"
    first = source.filter(pc.less_equal(months, 2))
    if fast:
        first = first.slice(0, 20_000)
    pq.write_table(first, data_file, compression="zstd")
    out(
        f"  {first.num_rows:,} flights in {data_file.relative_to(root.parent)}; target: late (> 15 min)"
    )
    v1 = run(root, overrides=overrides)
    _report_run(out, v1)
    result.model_versions.append(v1.model_version)

    out("\n[bold]2 · Run again with nothing changed[/bold]")
    t0 = time.perf_counter()
    again = run(root, overrides=overrides)
    result.cached_rerun_seconds = round(time.perf_counter() - t0, 3)
    cached = sum(1 for s in again.steps if s["cached"])
    out(
        f"  {cached}/{len(again.steps)} steps from the cache in {result.cached_rerun_seconds:.2f}s; "
        f"same run {again.run_id[:12]}, nothing retrained"
    )

    out("\n[bold]3 · March and April arrive: new data, drift, a challenger[/bold]")
    second = source.filter(pc.less_equal(months, 4))
    if fast:
        spring = source.filter(pc.and_(pc.greater_equal(months, 3), pc.less_equal(months, 4)))
        second = pa.concat_tables([first, spring.slice(0, 20_000)])
    pq.write_table(second, data_file, compression="zstd")
    v2 = run(root, overrides=overrides)
    diff = data_diff(v1.dataset_version, v2.dataset_version, project=root)
    _report_drift(out, diff)
    _report_run(out, v2)
    result.model_versions.append(v2.model_version)
    if "champion" not in v2.aliases and v2.gates_passed:
        promote(str(v2.model_version), project=root, reason="demo: trained on recent data")
        out(f"  promoted version {v2.model_version} to [green]champion[/green]")

    out("\n[bold]4 · A bad model tries its luck[/bold]")
    bad = run(
        root,
        overrides={
            "model.estimator": "sklearn.dummy.DummyClassifier",
            "model.params": {},
        },
    )
    _report_run(out, bad)
    result.model_versions.append(bad.model_version)
    try:
        promote(str(bad.model_version), project=root, reason="demo: should be refused")
    except GateFailed as exc:
        result.refused_version = bad.model_version
        out(f"  promotion refused: [red]{exc}[/red]")

    out("\n[bold]5 · Roll back to the previous champion in one step[/bold]")
    change = rollback(project=root, reason="demo: the spring model is not trusted yet")
    result.rolled_back_to = _field(change, "to_version")
    out(f"  champion: version {_field(change, 'from_version')} → version {result.rolled_back_to}")
    history = alias_history(project=root)
    for entry in history[-4:]:
        out(
            f"  history: {_field(entry, 'action')} {_field(entry, 'alias')} "
            f"{_field(entry, 'from_version')} → {_field(entry, 'to_version')} "
            f"by {_field(entry, 'actor')}: {_field(entry, 'reason')}"
        )
    result.champion_version = result.rolled_back_to

    out("\n[bold]6 · Reproduce the first run from its recorded inputs[/bold]")
    report = reproduce(v1.run_id, root)
    result.reproduced_identical = report.identical
    verdict = "[green]identical[/green]" if report.identical else "[red]different[/red]"
    out(f"  run {v1.run_id[:12]}: metrics and {report.rows_compared:,} test predictions {verdict}")

    result.seconds = round(time.perf_counter() - started, 1)
    out(f"\n[bold]Done in {result.seconds:.0f}s.[/bold] Look around:")
    out(f"  cd {root}")
    out("  kyklos models list            # versions, aliases, gates")
    out("  kyklos models history         # who promoted what, when and why")
    out(f"  kyklos data diff {v1.dataset_version} {v2.dataset_version}")
    out(f"  kyklos lineage {v2.dataset_version}")
    out(f"  mlflow ui --backend-store-uri sqlite:///{root / '.kyklos' / 'mlflow.db'}")
    render(None)
    return result


def _flights() -> Path:
    return Path(__file__).resolve().parents[1] / "datasets" / "flights.parquet"


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _report_run(out: Callable[[str], None], outcome: Any) -> None:
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in list(outcome.metrics.items())[:3])
    verdict = {True: "[green]passed[/green]", False: "[red]failed[/red]", None: "-"}[
        outcome.gates_passed
    ]
    aliases = f" ({', '.join(outcome.aliases)})" if outcome.aliases else ""
    out(
        f"  run {str(outcome.run_id)[:12]} on {outcome.dataset_version}: {metrics}; gates {verdict}"
        f" → model version {outcome.model_version}{aliases}"
    )


def _report_drift(out: Callable[[str], None], diff: Any) -> None:
    data = diff.to_dict() if hasattr(diff, "to_dict") else diff
    columns = data.get("columns") or data.get("shifts") or []
    top = columns[:4]
    parts = []
    for col in top:
        name = col.get("column") or col.get("name")
        psi = col.get("psi")
        parts.append(f"{name} (PSI {psi:.3f})" if isinstance(psi, int | float) else str(name))
    out(f"  new dataset version; largest shifts: {', '.join(parts) if parts else 'none'}")
