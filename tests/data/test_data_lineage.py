"""Lineage walks dataset -> run -> model version and back, through parents and children."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from kyklos.data import DatasetStore, LineageGraph, lineage, record_run_input
from kyklos.errors import NotFoundError
from kyklos.store.schema import aliases, model_versions, runs

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def _run(store: DatasetStore, run_id: str, *inputs: str) -> None:
    with store.db.write() as conn:
        conn.execute(
            runs.insert().values(
                run_id=run_id,
                project="flights",
                started_at=NOW,
                status="FINISHED",
                params={},
                metrics={"roc_auc": 0.71},
                config={},
                environment={},
                step_hashes={},
            )
        )
        for dataset in inputs:
            record_run_input(conn, run_id, dataset)
            record_run_input(conn, run_id, dataset)  # idempotent


def _model(
    store: DatasetStore, version: int, run_id: str, dataset: str | None, alias: str | None = None
) -> None:
    with store.db.write() as conn:
        conn.execute(
            model_versions.insert().values(
                model_name="flights",
                version=version,
                run_id=run_id,
                dataset_version_id=dataset,
                created_at=NOW,
                model_uri=f"models:/flights/{version}",
                model_hash="0" * 64,
                metrics={},
                gate_results=[],
                gates_passed=True,
            )
        )
        if alias:
            conn.execute(
                aliases.insert().values(
                    model_name="flights", alias=alias, version=version, revision=1
                )
            )


@pytest.fixture
def chain(store: DatasetStore, january: pa.Table, july: pa.Table) -> dict[str, str]:
    """jan -> jan_clean (derived) -> run1 -> flights:1 @champion; july (unrelated) -> run2 -> v2."""
    raw, _ = store.add("raw", name="flights", table=january)
    clean, _ = store.add("clean", name="flights", table=january.slice(0, 4000), parents=[raw.id])
    other, _ = store.add("other", name="flights", table=july)
    _run(store, "a1b2c3d4e5f60718293a4b5c6d7e8f90", clean.id)
    _model(store, 1, "a1b2c3d4e5f60718293a4b5c6d7e8f90", clean.id, alias="champion")
    _run(store, "ffff0000ffff0000ffff0000ffff0000")  # the registry did not record its input ...
    _model(store, 2, "ffff0000ffff0000ffff0000ffff0000", other.id)  # ... but the model did
    return {"raw": raw.id, "clean": clean.id, "other": other.id}


def _ids(graph: LineageGraph) -> set[str]:
    return set(graph.ids())


def test_from_a_dataset_downstream_to_the_model(store: DatasetStore, chain: dict[str, str]) -> None:
    graph = lineage(store.db, chain["raw"])
    assert graph.root == f"dataset:{chain['raw']}"
    assert _ids(graph) == {
        f"dataset:{chain['raw']}",
        f"dataset:{chain['clean']}",
        "run:a1b2c3d4e5f60718293a4b5c6d7e8f90",
        "model:flights:1",
    }
    relations = {(e.source, e.target): e.relation for e in graph.edges}
    assert relations[(f"dataset:{chain['raw']}", f"dataset:{chain['clean']}")] == "derived"
    assert (
        relations[(f"dataset:{chain['clean']}", "run:a1b2c3d4e5f60718293a4b5c6d7e8f90")]
        == "training"
    )
    assert relations[("run:a1b2c3d4e5f60718293a4b5c6d7e8f90", "model:flights:1")] == "produced"
    # the model's own dataset link is already covered by the run's input: not drawn twice
    assert (f"dataset:{chain['clean']}", "model:flights:1") not in relations
    assert graph.node("model:flights:1").attrs["aliases"] == ["champion"]


@pytest.mark.parametrize(
    "ref",
    ["flights:1", "flights@champion", "1", "models:/flights/1", "a1b2c3d4e5f60718293a4b5c6d7e8f90", "a1b2c3d4"],
    ids=["name-version", "alias", "bare-version", "mlflow-uri", "run-id", "run-prefix"],
)  # fmt: skip
def test_from_a_model_or_run_upstream_to_the_raw_data(
    store: DatasetStore, chain: dict[str, str], ref: str
) -> None:
    graph = lineage(store.db, ref, default_model="flights")
    assert {f"dataset:{chain['raw']}", f"dataset:{chain['clean']}", "model:flights:1"} <= _ids(
        graph
    )
    assert f"dataset:{chain['other']}" not in _ids(graph)  # no sideways walk
    assert "model:flights:2" not in _ids(graph)


def test_model_without_recorded_run_input_links_to_its_dataset(
    store: DatasetStore, chain: dict[str, str]
) -> None:
    graph = lineage(store.db, "flights:2")
    assert (f"dataset:{chain['other']}", "model:flights:2", "trained_on") in {
        (e.source, e.target, e.relation) for e in graph.edges
    }
    down = lineage(store.db, chain["other"])
    assert "model:flights:2" in _ids(down)
    assert down.to_dict()["root"] == f"dataset:{chain['other']}"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("flights:9", r"no model version flights:9"),
        ("flights@challenger", r"no model alias 'challenger'"),
        ("ds-999999", r"no dataset version 'ds-999999'"),
        ("deadbeefdead", r"nothing called 'deadbeefdead'"),
        ("flights:x", r"NAME:VERSION"),
    ],
    ids=["unknown-version", "unknown-alias", "unknown-dataset", "unknown-run", "bad-version"],
)
def test_unknown_lineage_refs(
    store: DatasetStore, chain: dict[str, str], ref: str, message: str
) -> None:
    with pytest.raises(NotFoundError, match=message):
        lineage(store.db, ref, default_model="flights")


def test_dataset_name_at_latest_resolves(store: DatasetStore, chain: dict[str, str]) -> None:
    assert lineage(store.db, "flights@latest").root == f"dataset:{chain['other']}"
