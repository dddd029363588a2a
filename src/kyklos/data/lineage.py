"""Lineage: where a dataset version came from and what was made from it.

The graph has three kinds of nodes — dataset versions, runs and model versions — and these edges
(always pointing from the older thing to the newer one):

==================== ============ ==============================================================
edge                 relation     recorded in
==================== ============ ==============================================================
dataset -> dataset   derived      ``dataset_parents`` (parent -> child)
dataset -> run       the role     ``run_inputs`` (e.g. ``training``)
run -> model         produced     ``model_versions.run_id``
dataset -> model     trained_on   ``model_versions.dataset_version_id``, shown only when the run
                                  that produced the model does not already list the dataset
==================== ============ ==============================================================

:func:`lineage` starts at a dataset version, a run or a model version and walks the chain both
ways: upstream through everything it was made from, downstream through everything made from it.
It reads the metadata DB only (never MLflow), so it works for any registry writing these tables.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, select

from kyklos.errors import NotFoundError
from kyklos.store import Database
from kyklos.store.schema import aliases, dataset_parents, dataset_versions, model_versions, runs
from kyklos.store.schema import run_inputs as run_inputs_table

__all__ = [
    "LineageEdge",
    "LineageGraph",
    "LineageNode",
    "lineage",
    "record_run_input",
    "resolve_ref",
]

_MIN_RUN_PREFIX = 6


@dataclass(frozen=True)
class LineageNode:
    """A dataset version, run or model version; ``id`` is ``kind:ref``."""

    kind: str  # "dataset" | "run" | "model"
    ref: str  # ds-..., a run id, or "name:version"
    label: str
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.ref}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "ref": self.ref,
            "label": self.label,
            "attrs": dict(self.attrs),
        }


@dataclass(frozen=True)
class LineageEdge:
    """``source`` (older) -> ``target`` (made from it), by node id."""

    source: str
    target: str
    relation: str

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "relation": self.relation}


@dataclass(frozen=True)
class LineageGraph:
    """The nodes reachable upstream and downstream of ``root``, and the edges between them."""

    root: str
    nodes: tuple[LineageNode, ...]
    edges: tuple[LineageEdge, ...]

    def node(self, node_id: str) -> LineageNode:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def __contains__(self, node_id: object) -> bool:
        return any(n.id == node_id for n in self.nodes)

    def upstream_of(self, node_id: str) -> list[LineageEdge]:
        """Edges into ``node_id`` (what it was made from)."""
        return [e for e in self.edges if e.target == node_id]

    def downstream_of(self, node_id: str) -> list[LineageEdge]:
        """Edges out of ``node_id`` (what was made from it)."""
        return [e for e in self.edges if e.source == node_id]

    def ids(self, kind: str | None = None) -> list[str]:
        return [n.id for n in self.nodes if kind is None or n.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "nodes": [n.to_dict() for n in self.nodes],
            "edges": [e.to_dict() for e in self.edges],
        }


def record_run_input(
    conn: Connection, run_id: str, dataset_id: str, role: str = "training"
) -> None:
    """Record that run ``run_id`` read dataset version ``dataset_id`` (idempotent).

    Call it inside the transaction that writes the run's row (``db.write()``).
    """
    key = and_(
        run_inputs_table.c.run_id == run_id,
        run_inputs_table.c.dataset_version_id == dataset_id,
    )
    if conn.execute(select(run_inputs_table.c.role).where(key)).first() is None:
        conn.execute(
            run_inputs_table.insert().values(
                run_id=run_id, dataset_version_id=dataset_id, role=role
            )
        )


# -- resolving a reference --------------------------------------------------------------------
def resolve_ref(conn: Connection, ref: str, *, default_model: str | None = None) -> str:
    """The node id of ``ref``: ``ds-...`` (or a unique prefix), ``NAME@latest``, a run id (or
    a unique prefix of 6+ characters), ``NAME:VERSION``, ``NAME@ALIAS``, ``models:/NAME/VERSION``,
    ``models:/NAME@ALIAS`` or a bare ``VERSION`` of ``default_model``."""
    text = ref.strip()
    if text.startswith("models:/"):
        text = text.removeprefix("models:/").replace("/", ":", 1)
    if text.lower().startswith("ds-"):
        return "dataset:" + _dataset_by_prefix(conn, text.lower())
    if "@" in text:
        name, _, alias = text.partition("@")
        row = conn.execute(
            select(aliases.c.version).where(
                and_(aliases.c.model_name == name, aliases.c.alias == alias)
            )
        ).first()
        if row is not None and row[0] is not None:
            return _model_id(conn, name, int(row[0]))
        if alias in {"latest", "previous"}:
            dataset = _dataset_named(conn, name, alias)
            if dataset is not None:
                return "dataset:" + dataset
        raise NotFoundError(
            f"no model alias {alias!r} on {name!r} (and no dataset {name!r}). "
            "Hint: `kyklos models list` shows versions and aliases"
        )
    if ":" in text:
        name, _, version = text.rpartition(":")
        if not version.isdigit():
            raise NotFoundError(f"{ref!r}: expected NAME:VERSION with a version number")
        return _model_id(conn, name, int(version))
    if text.isdigit() and default_model is not None:
        return _model_id(conn, default_model, int(text))
    row = conn.execute(select(runs.c.run_id).where(runs.c.run_id == text)).first()
    if row is not None:
        return f"run:{row[0]}"
    if len(text) >= _MIN_RUN_PREFIX:
        rows = conn.execute(select(runs.c.run_id).where(runs.c.run_id.startswith(text))).all()
        if len(rows) == 1:
            return f"run:{rows[0][0]}"
        if len(rows) > 1:
            raise NotFoundError(f"run id prefix {ref!r} is ambiguous; give more characters")
    raise NotFoundError(
        f"nothing called {ref!r}: expected a dataset version (ds-...), a run id, or a model "
        "version (NAME:VERSION, NAME@ALIAS, or a version number of the project's model)"
    )


def _dataset_by_prefix(conn: Connection, prefix: str) -> str:
    rows = conn.execute(
        select(dataset_versions.c.id).where(dataset_versions.c.id.startswith(prefix))
    ).all()
    if len(rows) == 1:
        return str(rows[0][0])
    if len(rows) > 1:
        raise NotFoundError(f"dataset version {prefix!r} is ambiguous; give more characters")
    raise NotFoundError(f"no dataset version {prefix!r}. Hint: see `kyklos data list`")


def _dataset_named(conn: Connection, name: str, which: str) -> str | None:
    rows = conn.execute(
        select(dataset_versions.c.id)
        .where(dataset_versions.c.name == name)
        .order_by(dataset_versions.c.created_at.desc(), dataset_versions.c.id.desc())
        .limit(2)
    ).all()
    index = 0 if which == "latest" else 1
    return str(rows[index][0]) if len(rows) > index else None


def _model_id(conn: Connection, name: str, version: int) -> str:
    row = conn.execute(
        select(model_versions.c.version).where(
            and_(model_versions.c.model_name == name, model_versions.c.version == version)
        )
    ).first()
    if row is None:
        raise NotFoundError(
            f"no model version {name}:{version}. Hint: `kyklos models list` shows the versions"
        )
    return f"model:{name}:{version}"


# -- walking ----------------------------------------------------------------------------------
def lineage(db: Database, ref: str, *, default_model: str | None = None) -> LineageGraph:
    """The lineage graph around ``ref`` (see :func:`resolve_ref` for the accepted forms)."""
    with db.read() as conn:
        root = resolve_ref(conn, ref, default_model=default_model)
        edges: set[LineageEdge] = set()
        seen = {root}
        for direction in ("up", "down"):
            queue = deque([root])
            visited = {root}
            while queue:
                current = queue.popleft()
                found = (
                    _upstream(conn, current) if direction == "up" else _downstream(conn, current)
                )
                for edge in found:
                    edges.add(edge)
                    nxt = edge.source if direction == "up" else edge.target
                    seen.add(nxt)
                    if nxt not in visited:
                        visited.add(nxt)
                        queue.append(nxt)
        nodes = [_node(conn, node_id) for node_id in seen]
    order = {"dataset": 0, "run": 1, "model": 2}
    nodes.sort(key=lambda n: (n.id != root, order[n.kind], n.ref))
    return LineageGraph(
        root=root,
        nodes=tuple(nodes),
        edges=tuple(sorted(edges, key=lambda e: (e.source, e.target, e.relation))),
    )


def _split(node_id: str) -> tuple[str, str]:
    kind, _, ref = node_id.partition(":")
    return kind, ref


def _model_key(ref: str) -> tuple[str, int]:
    name, _, version = ref.rpartition(":")
    return name, int(version)


def _upstream(conn: Connection, node_id: str) -> Iterable[LineageEdge]:
    kind, ref = _split(node_id)
    if kind == "dataset":
        for parent, relation in conn.execute(
            select(dataset_parents.c.parent_id, dataset_parents.c.relation).where(
                dataset_parents.c.child_id == ref
            )
        ).all():
            yield LineageEdge(f"dataset:{parent}", node_id, relation)
    elif kind == "run":
        for dataset, role in conn.execute(
            select(run_inputs_table.c.dataset_version_id, run_inputs_table.c.role).where(
                run_inputs_table.c.run_id == ref
            )
        ).all():
            yield LineageEdge(f"dataset:{dataset}", node_id, role)
    elif kind == "model":
        name, version = _model_key(ref)
        row = conn.execute(
            select(model_versions.c.run_id, model_versions.c.dataset_version_id).where(
                and_(model_versions.c.model_name == name, model_versions.c.version == version)
            )
        ).first()
        if row is not None:
            run_id, dataset = row
            yield LineageEdge(f"run:{run_id}", node_id, "produced")
            if dataset is not None and not _run_read(conn, run_id, dataset):
                yield LineageEdge(f"dataset:{dataset}", node_id, "trained_on")


def _downstream(conn: Connection, node_id: str) -> Iterable[LineageEdge]:
    kind, ref = _split(node_id)
    if kind == "dataset":
        for child, relation in conn.execute(
            select(dataset_parents.c.child_id, dataset_parents.c.relation).where(
                dataset_parents.c.parent_id == ref
            )
        ).all():
            yield LineageEdge(node_id, f"dataset:{child}", relation)
        for run_id, role in conn.execute(
            select(run_inputs_table.c.run_id, run_inputs_table.c.role).where(
                run_inputs_table.c.dataset_version_id == ref
            )
        ).all():
            yield LineageEdge(node_id, f"run:{run_id}", role)
        for name, version, run_id in conn.execute(
            select(
                model_versions.c.model_name, model_versions.c.version, model_versions.c.run_id
            ).where(model_versions.c.dataset_version_id == ref)
        ).all():
            if not _run_read(conn, run_id, ref):
                yield LineageEdge(node_id, f"model:{name}:{version}", "trained_on")
    elif kind == "run":
        for name, version in conn.execute(
            select(model_versions.c.model_name, model_versions.c.version).where(
                model_versions.c.run_id == ref
            )
        ).all():
            yield LineageEdge(node_id, f"model:{name}:{version}", "produced")


def _run_read(conn: Connection, run_id: str, dataset: str) -> bool:
    return (
        conn.execute(
            select(run_inputs_table.c.role).where(
                and_(
                    run_inputs_table.c.run_id == run_id,
                    run_inputs_table.c.dataset_version_id == dataset,
                )
            )
        ).first()
        is not None
    )


def _node(conn: Connection, node_id: str) -> LineageNode:
    kind, ref = _split(node_id)
    if kind == "dataset":
        return _dataset_node(conn, ref)
    if kind == "run":
        return _run_node(conn, ref)
    return _model_node(conn, ref)


def _dataset_node(conn: Connection, ref: str) -> LineageNode:
    row = conn.execute(
        select(
            dataset_versions.c.name,
            dataset_versions.c.n_rows,
            dataset_versions.c.n_columns,
            dataset_versions.c.created_at,
            dataset_versions.c.source,
        ).where(dataset_versions.c.id == ref)
    ).first()
    if row is None:
        return LineageNode("dataset", ref, f"{ref} (missing)")
    name, n_rows, n_cols, created, source = row
    attrs = {
        "name": name,
        "n_rows": n_rows,
        "n_columns": n_cols,
        "created_at": _iso(created),
        "source": source,
    }
    return LineageNode("dataset", ref, f"{ref} {name} ({n_rows:,} rows × {n_cols} columns)", attrs)


def _run_node(conn: Connection, ref: str) -> LineageNode:
    row = conn.execute(
        select(runs.c.project, runs.c.status, runs.c.started_at, runs.c.metrics).where(
            runs.c.run_id == ref
        )
    ).first()
    if row is None:
        return LineageNode("run", ref, f"run {ref} (not in the metadata DB)")
    project, status, started, metrics = row
    attrs = {
        "project": project,
        "status": status,
        "started_at": _iso(started),
        "metrics": metrics or {},
    }
    return LineageNode("run", ref, f"run {ref} [{status}]", attrs)


def _model_node(conn: Connection, ref: str) -> LineageNode:
    name, version = _model_key(ref)
    row = conn.execute(
        select(
            model_versions.c.created_at, model_versions.c.gates_passed, model_versions.c.metrics
        ).where(and_(model_versions.c.model_name == name, model_versions.c.version == version))
    ).first()
    if row is None:
        return LineageNode("model", ref, f"model {ref} (missing)")
    tags = sorted(
        r[0]
        for r in conn.execute(
            select(aliases.c.alias).where(
                and_(aliases.c.model_name == name, aliases.c.version == version)
            )
        ).all()
    )
    created, passed, metrics = row
    attrs = {
        "model_name": name,
        "version": version,
        "aliases": tags,
        "created_at": _iso(created),
        "gates_passed": passed,
        "metrics": metrics or {},
    }
    shown = f" @{', @'.join(tags)}" if tags else ""
    return LineageNode("model", ref, f"model {ref}{shown}", attrs)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
