"""load_version: features from signature + profile, fast predict, tampered artifacts refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kyklos.config import load_project
from kyklos.errors import NotFoundError, ServingError
from kyklos.registry import ModelRegistry
from kyklos.serving.batch import frame_columns
from kyklos.serving.model import LoadedModel, load_version


def test_load_champion_describes_the_version(served_project: Path, loaded: LoadedModel) -> None:
    version = ModelRegistry.for_project(load_project(served_project)).get("champion")
    assert (loaded.name, loaded.version, loaded.task) == (version.model_name, 1, "classification")
    assert loaded.model_hash == version.model_hash
    assert loaded.classes == (0, 1)
    assert [f.name for f in loaded.features] == version.signature["features"]
    by_name = {f.name: f for f in loaded.features}
    assert by_name["carrier"].kind == "categorical"
    assert by_name["carrier"].categories is not None and "UA" in by_name["carrier"].categories
    assert by_name["distance"].kind == "numeric" and by_name["distance"].categories is None
    assert by_name["day_of_week"].kind == "numeric"  # made by the project's user step
    assert by_name["wind_gust"].nullable is True  # weather has gaps in January
    assert by_name["distance"].nullable is False


@pytest.mark.parametrize("n", [1, 1000], ids=["one-row", "thousand-rows"])
def test_predict_matches_the_pipeline(loaded: LoadedModel, feature_frame: Any, n: int) -> None:
    rows = feature_frame.iloc[:n]
    prediction, score = loaded.predict(frame_columns(rows, loaded.features))
    expected = loaded._model.predict_proba(rows[list(loaded._model.feature_names_in_)])[:, 1]
    assert prediction.dtype == np.float64 and score is not None and score.dtype == np.float64
    np.testing.assert_allclose(score, expected, rtol=1e-12)
    np.testing.assert_array_equal(prediction, (expected >= 0.5).astype(np.float64))


def test_predict_names_a_missing_feature(loaded: LoadedModel, feature_frame: Any) -> None:
    cols = frame_columns(feature_frame.iloc[:2], loaded.features)
    del cols["distance"]
    with pytest.raises(ServingError, match="'distance'") as info:
        loaded.predict(cols)
    assert info.value.status == 422


def test_tampered_artifact_is_refused(served_project: Path) -> None:
    project = load_project(served_project)
    registry = ModelRegistry.for_project(project)
    version = registry.get("champion")
    with registry.tracker.model_files(version.model_uri) as folder:
        pickled = Path(folder) / "model.pkl"
    original = pickled.read_bytes()
    changed = bytearray(original)
    changed[len(changed) // 2] ^= 0x01
    pickled.write_bytes(bytes(changed))
    try:
        with pytest.raises(ServingError) as info:
            load_version(project, 1)
    finally:
        pickled.write_bytes(original)
    message = str(info.value)
    assert info.value.status == 409
    assert "model artifact of v1 changed since registration" in message
    assert version.model_hash in message
    assert load_version(project, 1).model_hash == version.model_hash  # restored: loads again


def test_unknown_version_is_not_found(served_project: Path) -> None:
    with pytest.raises(NotFoundError, match="existing versions: v1"):
        load_version(load_project(served_project), 7)
