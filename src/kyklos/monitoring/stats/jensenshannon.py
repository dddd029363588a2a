"""Jensen–Shannon distance — name ``jensenshannon``.

Inputs: the reference and current counts of the same bins (aligned category counts or numeric
histogram bins). Default threshold: 0.1 (a feature drifts when the distance is ``>= 0.1``).
Categorical and numeric features.

Computed with :func:`scipy.spatial.distance.jensenshannon` on the two histograms with
``base=2``, so the distance lies between 0 (same distribution) and 1 (disjoint supports); it is
the same value as :func:`kyklos.data.diff.js_distance`. Evidently calls the same function with
the default natural-log base, whose values are ``sqrt(ln 2) ≈ 0.833`` times ours: its
0.1 threshold corresponds to 0.12 here.

>>> from kyklos.monitoring.stats import get_statistic
>>> import numpy as np
>>> statistic, p_value = get_statistic("jensenshannon").compute(np.array([1, 0]), np.array([0, 1]))
>>> statistic, p_value
(1.0, None)
"""

from __future__ import annotations

import math

import numpy as np

from kyklos.monitoring.stats._base import Statistic

__all__ = ["STATISTIC", "jensenshannon"]


def jensenshannon(
    ref_counts: np.ndarray, cur_counts: np.ndarray, *, edges: np.ndarray | None = None
) -> tuple[float, float | None]:
    """``(Jensen–Shannon distance in base 2, None)`` of the two histograms."""
    from scipy.spatial import distance

    value = float(distance.jensenshannon(ref_counts, cur_counts, base=2))
    # rounding can make the divergence a hair below zero, whose square root is nan
    return (0.0 if math.isnan(value) else min(max(value, 0.0), 1.0)), None


STATISTIC = Statistic(
    name="jensenshannon",
    kinds=frozenset({"categorical", "numeric"}),
    default_threshold=0.1,
    is_test=False,
    function=jensenshannon,
    summary="Jensen–Shannon distance (base 2)",
)
