"""Fixtures of the prediction-log tests: a log folder, record batches, a project folder."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kyklos.config import Project, load_project

FEATURES = [("distance", "numeric"), ("carrier", "categorical")]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def batch(
    request_id: str,
    rows: int = 1,
    *,
    version: int = 1,
    arm: str = "champion",
    ts: dt.datetime | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """One request of ``rows`` rows with the two ``FEATURES``."""
    rng = np.random.default_rng(seed)
    record: dict[str, Any] = {
        "request_id": request_id,
        "model": "flights",
        "version": version,
        "arm": arm,
        "latency_ms": 1.5,
        "prediction": rng.integers(0, 2, rows).astype(float),
        "score": rng.random(rows),
        "f.distance": rng.normal(1000, 300, rows),
        "f.carrier": rng.choice(["UA", "AA", "B6"], rows),
    }
    if ts is not None:
        record["ts"] = ts
    return record


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project's ``.kyklos/logs`` folder (not created yet)."""
    return tmp_path / "proj" / ".kyklos" / "logs"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    folder = tmp_path / "proj"
    folder.mkdir(exist_ok=True)
    (folder / "kyklos.yaml").write_text(
        "name: flights\ndata:\n  source: data/flights.parquet\n  target: late\n"
    )
    return load_project(folder, env={})


@pytest.fixture
def make_batch() -> Callable[..., dict[str, Any]]:
    return batch
