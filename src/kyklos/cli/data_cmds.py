"""``kyklos data ...`` and ``kyklos lineage``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kyklos.cli.state import STATE

app = typer.Typer(no_args_is_help=True)

_JSON = typer.Option("--json", help="print JSON")


def register_top(root: typer.Typer) -> None:
    """Top-level commands of this area (``kyklos lineage``)."""
    root.command("lineage")(lineage)


@app.command("add")
def add(
    path: Annotated[
        str | None,
        typer.Argument(help="CSV/Parquet file, glob or URI (default: the project's data.source)"),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="dataset name (default: the project's)")
    ] = None,
    parent: Annotated[
        list[str] | None,
        typer.Option("--parent", help="a version this one was derived from (repeatable)"),
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="a free-text note")] = None,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Add a table as a dataset version (the same content gives back the existing version)."""
    from kyklos.api.data import data_add
    from kyklos.cli.render import console, emit, err_console

    with err_console().status("reading, hashing and profiling the table ..."):
        version, created = data_add(
            path, project=STATE.project, name=name, parents=parent or (), note=note
        )

    def human(_: Any) -> None:
        from rich.markup import escape

        shape = f"{version.n_rows:,} rows × {version.n_columns} columns"
        if created:
            console().print(
                f"[green]✓[/green] added [bold]{version.id}[/bold] {escape(version.name)} "
                f"({shape}, {_size(version.size_bytes)})"
            )
        else:
            console().print(
                f"[yellow]=[/yellow] unchanged: the same content is already [bold]{version.id}"
                f"[/bold] {escape(version.name)} ({shape}, added {version.created_at:%Y-%m-%d %H:%M})"
            )
        console().print(f"[dim]next: kyklos data show {version.id}[/dim]")

    emit({"created": created, "version": version.to_dict()}, as_json=as_json, human=human)


@app.command("list")
def list_versions(
    name: Annotated[
        str | None, typer.Option("--name", help="only versions of this dataset")
    ] = None,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """List dataset versions, newest first."""
    from kyklos.api.data import data_list
    from kyklos.cli.render import emit, table

    versions = data_list(project=STATE.project, name=name)

    def human(_: Any) -> None:
        table(
            (
                (
                    v.id,
                    v.name,
                    f"{v.created_at:%Y-%m-%d %H:%M}",
                    f"{v.n_rows:,}",
                    v.n_columns,
                    _size(v.size_bytes),
                    ", ".join(v.parents),
                    v.note,
                )
                for v in versions
            ),
            ["id", "name", "created", "rows", "cols", "size", "parents", "note"],
            empty="no dataset versions yet; add one with `kyklos data add PATH`",
        )

    emit([v.summary() for v in versions], as_json=as_json, human=human)


@app.command("show")
def show(
    ref: Annotated[
        str, typer.Argument(help="version id, unique prefix, latest or NAME@latest")
    ] = "latest",
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Show a dataset version: where it came from, its schema and its profile."""
    from kyklos.api.data import data_show
    from kyklos.cli.render import console, emit, table

    version = data_show(ref, project=STATE.project)

    def human(_: Any) -> None:
        from rich.markup import escape

        out = console()
        out.print(f"[bold]{version.id}[/bold] {escape(version.name)}")
        out.print(f"  digest   {version.digest}")
        out.print(
            f"  created  {version.created_at:%Y-%m-%d %H:%M:%S %Z} by {escape(version.created_by)}"
        )
        out.print(f"  source   {escape(version.source)}")
        out.print(f"  stored   {escape(version.storage_uri)} ({_size(version.size_bytes)})")
        out.print(f"  shape    {version.n_rows:,} rows × {version.n_columns} columns")
        if version.parents:
            out.print(f"  parents  {', '.join(version.parents)}")
        if version.note:
            out.print(f"  note     {escape(version.note)}")
        rows = []
        for col in version.schema:
            prof = version.profile[col.name]
            rows.append(
                (
                    col.name,
                    col.kind,
                    col.arrow_type,
                    f"{prof.missing_rate:.1%}" if prof.missing else "",
                    _summary(col, prof),
                )
            )
        table(rows, ["column", "kind", "type", "missing", "profile"], title="schema and profile")

    emit(version.to_dict(), as_json=as_json, human=human)


@app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="the reference version")],
    b: Annotated[str, typer.Argument(help="the version compared with it")],
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="PSI marking a shift (default: monitor.drift.threshold)"),
    ] = None,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Schema changes and per-column distribution shifts from version A to version B."""
    from kyklos.api.data import data_diff
    from kyklos.cli.render import console, emit, table

    result = data_diff(a, b, project=STATE.project, threshold=threshold)

    def human(_: Any) -> None:
        out = console()
        out.print(
            f"[bold]{result.a}[/bold] ({result.n_rows_a:,} rows) → "
            f"[bold]{result.b}[/bold] ({result.n_rows_b:,} rows)"
        )
        if result.schema_changes:
            out.print("schema changes:", markup=False)
            for change in result.schema_changes:
                out.print(f"  {change.message}", markup=False)
        else:
            out.print("[dim]schema unchanged[/dim]")
        rows = []
        for c in result.columns:
            cats = []
            if c.new_categories:
                cats.append(f"+{len(c.new_categories)} new")
            if c.vanished_categories:
                cats.append(f"-{len(c.vanished_categories)} vanished")
            rows.append(
                (
                    c.name,
                    c.kind,
                    _num(c.psi),
                    _num(c.ks),
                    _num(c.js),
                    f"{_num(c.mean_a)} → {_num(c.mean_b)}" if c.mean_a is not None else "",
                    f"{c.missing_rate_a:.1%} → {c.missing_rate_b:.1%}"
                    if c.missing_rate_a or c.missing_rate_b
                    else "",
                    ", ".join(cats),
                    "shifted" if c.drifted else "",
                )
            )
        table(
            rows,
            ["column", "kind", "PSI", "KS", "JS", "mean", "missing", "categories", ""],
            title=f"distribution shifts (PSI ≥ {result.threshold:g} marked)",
        )
        if result.drifted:
            out.print(f"{len(result.drifted)} column(s) shifted: {', '.join(result.drifted)}")

    emit(result.to_dict(), as_json=as_json, human=human)


def lineage(
    ref: Annotated[
        str,
        typer.Argument(
            help="dataset version (ds-...), run id, or model version (NAME:N, NAME@ALIAS, N)"
        ),
    ],
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Walk the lineage of a dataset version, run or model version, upstream and downstream."""
    from kyklos.api.data import lineage_of
    from kyklos.cli.render import console, emit

    graph = lineage_of(ref, project=STATE.project)

    def human(_: Any) -> None:
        from rich.markup import escape
        from rich.tree import Tree

        root = graph.node(graph.root)
        tree = Tree(f"[bold]{escape(root.label)}[/bold]")
        up = graph.upstream_of(graph.root)
        down = graph.downstream_of(graph.root)
        if up:
            branch = tree.add("[dim]made from[/dim]")
            _grow(graph, branch, graph.root, upstream=True, seen={graph.root})
        if down:
            branch = tree.add("[dim]used by[/dim]")
            _grow(graph, branch, graph.root, upstream=False, seen={graph.root})
        if not up and not down:
            tree.add("[dim]no lineage recorded yet[/dim]")
        console().print(tree)

    emit(graph.to_dict(), as_json=as_json, human=human)


def _grow(graph: Any, branch: Any, node_id: str, *, upstream: bool, seen: set[str]) -> None:
    from rich.markup import escape

    edges = graph.upstream_of(node_id) if upstream else graph.downstream_of(node_id)
    for edge in edges:
        other = edge.source if upstream else edge.target
        node = graph.node(other)
        label = f"[dim]{escape(edge.relation)}[/dim] {escape(node.label)}"
        if other in seen:
            branch.add(label + " [dim](see above)[/dim]")
            continue
        child = branch.add(label)
        _grow(graph, child, other, upstream=upstream, seen=seen | {other})


def _summary(col: Any, prof: Any) -> str:
    if col.kind == "numeric":
        if not prof.count:
            return "no values"
        q = prof.quantiles
        return (
            f"min {_num(prof.min)}  p50 {_num(q.get('p50'))}  mean {_num(prof.mean)}  "
            f"max {_num(prof.max)}"
        )
    if col.kind in {"categorical", "boolean"}:
        total = prof.count or 1
        top = ", ".join(f"{k} {v / total:.0%}" for k, v in list(prof.frequencies.items())[:4])
        distinct = f"{len(col.categories)} values: " if col.categories is not None else ""
        more = " …" if len(prof.frequencies) > 4 or prof.other else ""
        return f"{distinct}{top}{more}"
    return f"{prof.first} … {prof.last}"


def _num(value: float | None) -> str:
    if value is None:
        return ""
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.4g}"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover
