"""Evaluation plots: valid, small, deterministic PNGs."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from kyklos.pipeline.plots import evaluation_plots

PNG = b"\x89PNG\r\n\x1a\n"


def _size(png: bytes) -> tuple[int, int]:
    assert png[:8] == PNG
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert png.endswith(b"IEND\xaeB`\x82")
    return width, height


RNG = np.random.RandomState(0)
Y = RNG.randint(0, 2, size=300)
SCORE = np.clip(Y * 0.3 + RNG.uniform(0, 0.7, size=300), 0, 1)


@pytest.mark.parametrize(
    ("task", "y_true", "y_pred", "y_score", "names"),
    [
        (
            "classification",
            Y,
            (SCORE > 0.5).astype(int),
            SCORE,
            {"roc_curve.png", "pr_curve.png", "confusion_matrix.png"},
        ),
        ("classification", Y, (SCORE > 0.5).astype(int), None, {"confusion_matrix.png"}),
        (
            "classification",
            np.array(["a", "b", "c"] * 20),
            np.array(["a", "c", "c"] * 20),
            RNG.dirichlet([1, 1, 1], size=60),
            {"roc_curve.png", "pr_curve.png", "confusion_matrix.png"},
        ),
        (
            "regression",
            RNG.normal(size=8000),
            RNG.normal(size=8000),
            None,
            {"residuals.png", "predicted_vs_actual.png"},
        ),
    ],
    ids=["binary", "binary-no-scores", "multiclass", "regression"],
)
def test_plots_are_valid_deterministic_pngs(
    task: str, y_true: np.ndarray, y_pred: np.ndarray, y_score: np.ndarray | None, names: set[str]
) -> None:
    plots = evaluation_plots(task, y_true, y_pred, y_score)
    assert set(plots) == names
    for png in plots.values():
        assert _size(png) == (500, 400)
        assert len(png) < 200_000
    assert evaluation_plots(task, y_true, y_pred, y_score) == plots
