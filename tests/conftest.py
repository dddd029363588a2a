"""Shared fixtures: real stores only (SQLite files, a real MLflow store, the real PostgreSQL)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

FLIGHTS = Path(__file__).resolve().parents[1] / "src" / "kyklos" / "datasets" / "flights.parquet"
PG_ADMIN_URL = os.environ.get(
    "KYKLOS_TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def flights_path() -> Path:
    """The shipped nycflights13-derived table (327,346 rows)."""
    return FLIGHTS


@pytest.fixture(scope="session")
def flights_small_frame():  # type: ignore[no-untyped-def]
    """The first 6,000 flights (January), as a pandas DataFrame; do not mutate."""
    import pyarrow.parquet as pq

    return pq.read_table(FLIGHTS).slice(0, 6000).to_pandas()


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow SQLite store, made once per session (migrations cost ~1 s)."""
    import warnings

    folder = tmp_path_factory.mktemp("mlflow-template")
    db = folder / "mlflow.db"
    with warnings.catch_warnings():
        # MLflow's own import-time and migration warnings, not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
        client.search_experiments()
    return db


@pytest.fixture
def mlflow_db(tmp_path: Path, _mlflow_template: Path) -> Path:
    """A fresh copy of the empty MLflow store at ``tmp_path/.kyklos/mlflow.db``."""
    target = tmp_path / ".kyklos" / "mlflow.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_mlflow_template, target)
    return target


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway database on the real PostgreSQL at 127.0.0.1:5432, dropped afterwards."""
    from sqlalchemy import create_engine, text

    from kyklos.store.db import close_all

    name = f"kyklos_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        close_all()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
