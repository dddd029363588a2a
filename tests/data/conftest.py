"""Fixtures of the data-layer tests: flights slices, a project folder and its dataset store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kyklos.config import Project, load_project
from kyklos.data import DatasetStore

PROJECT_YAML = """\
name: flights
data:
  source: data/flights.parquet
  target: late
  time_column: time_hour
"""


@pytest.fixture(scope="session")
def flights_table(flights_path: Path) -> pa.Table:
    """All 327,346 flights as an Arrow table (read once per session; do not mutate)."""
    return pq.read_table(flights_path)


@pytest.fixture(scope="session")
def january(flights_table: pa.Table) -> pa.Table:
    """5,000 flights of early January."""
    return flights_table.slice(0, 5000)


@pytest.fixture(scope="session")
def july(flights_table: pa.Table) -> pa.Table:
    """5,000 flights of early July (the table is ordered by time)."""
    import pyarrow.compute as pc

    start = pc.index(flights_table.column("month"), 7).as_py()
    return flights_table.slice(start, 5000)


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Project]:
    """Factory: a project folder under ``tmp_path`` (``name`` picks the subfolder)."""

    def make(name: str = "proj", text: str = PROJECT_YAML) -> Project:
        root = tmp_path / name
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "kyklos.yaml").write_text(text)
        return load_project(root, env={})

    return make


@pytest.fixture
def project(make_project: Callable[..., Project]) -> Project:
    return make_project()


@pytest.fixture
def store(project: Project) -> DatasetStore:
    """The dataset store of a fresh project (SQLite file + local artifact folder)."""
    return DatasetStore.for_project(project)
