"""Fixtures of the registry tests: a real MLflow store, a real metadata DB, tiny real models."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kyklos.registry import GateReport, ModelRegistry, Tracker, evaluate_gates
from kyklos.store import Database, open_db
from kyklos.store.schema import runs

#: MLflow 3.17 under SQLAlchemy 2.1 / pandas 3 warns once at import (the store's mappers and a
#: type-hint schema). The Tracker silences them itself; the shared `_mlflow_template` fixture
#: creates a store directly, so the tests that use it need the same filters.
MLFLOW_IMPORT_WARNINGS = (
    pytest.mark.filterwarnings(
        "ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"
    ),
    pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning"),
)


@pytest.fixture(scope="session")
def toy_frame() -> tuple[pd.DataFrame, pd.Series]:
    """300 rows: numeric and string features, a binary target."""
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.integers(0, 10, size=n),
            "x3": rng.normal(size=n),
        }
    )
    target = pd.Series(
        (frame.x1 + 0.3 * frame.x3 + rng.normal(0, 0.5, n) > 0).astype(int), name="y"
    )
    return frame, target


@pytest.fixture(scope="session")
def toy_model(toy_frame: tuple[pd.DataFrame, pd.Series]) -> Any:
    from sklearn.linear_model import LogisticRegression

    frame, target = toy_frame
    return LogisticRegression().fit(frame, target)


@pytest.fixture
def tracking_uri(mlflow_db: Path) -> str:
    return f"sqlite:///{mlflow_db}"


@pytest.fixture
def tracker(tracking_uri: str, tmp_path: Path) -> Tracker:
    return Tracker(
        tracking_uri,
        artifact_location=(tmp_path / ".kyklos" / "mlruns").as_uri(),
        experiment="registry-tests",
    )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / '.kyklos' / 'kyklos.db'}"


@pytest.fixture
def db(sqlite_url: str) -> Database:
    return open_db(sqlite_url)


@pytest.fixture
def registry(db: Database, tracker: Tracker) -> ModelRegistry:
    return ModelRegistry(db, tracker, "flights", project="flights")


def record_run(db: Database, run_id: str, project: str = "flights") -> None:
    """The minimal ``runs`` row the pipeline writes before registering (foreign key)."""
    with db.write() as conn:
        conn.execute(
            runs.insert().values(
                run_id=run_id,
                project=project,
                started_at=dt.datetime.now(dt.UTC),
                status="FINISHED",
                params={},
                metrics={},
                config={},
                environment={},
                step_hashes={},
            )
        )


@pytest.fixture
def logged_model(
    tracker: Tracker, toy_model: Any, toy_frame: tuple[pd.DataFrame, pd.Series]
) -> tuple[str, str]:
    """One real run with a logged LogisticRegression: ``(run_id, model_uri)``."""
    frame, _ = toy_frame
    run_id = tracker.start_run(run_name="fixture")
    tracker.log(run_id, params={"C": 1.0}, metrics={"roc_auc": 0.9})
    uri = tracker.log_model(run_id, toy_model, input_example=frame.head(5))
    tracker.end_run(run_id)
    return run_id, uri


RegisterFn = Callable[..., Any]


@pytest.fixture
def register(registry: ModelRegistry, logged_model: tuple[str, str]) -> RegisterFn:
    """``register(roc_auc=0.85, gates=[...])`` registers a new version of the logged model.

    Every version gets its own (empty) run; the model artifact is shared (a real logged model,
    registered again), which keeps the alias tests fast.
    """
    _, model_uri = logged_model
    tracker = registry.tracker

    def _register(
        roc_auc: float = 0.85, gates: tuple[str, ...] = ("roc_auc >= 0.80",), **kwargs: Any
    ) -> Any:
        run_id = tracker.start_run(run_name=f"v-{uuid.uuid4().hex[:6]}")
        tracker.end_run(run_id)
        record_run(registry.db, run_id)
        metrics = {"roc_auc": roc_auc, "accuracy": 0.8}
        report: GateReport = evaluate_gates(list(gates), metrics, registry.champion_metrics())
        return registry.register(
            run_id=run_id, model_uri=model_uri, metrics=metrics, gate_report=report, **kwargs
        )

    return _register
