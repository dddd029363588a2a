"""Normalised Wasserstein (earth mover's) distance — name ``wasserstein``.

Inputs: the reference and current counts of the same numeric bins and the bin ``edges``
(``len(edges) + 1`` open bins as :func:`kyklos.data.profile.histogram_on` makes them).
Default threshold: 0.1 (a feature drifts when the distance is ``>= 0.1`` reference standard
deviations). Numeric features only.

Each bin is represented by one value: the midpoint of ``[e(i-1), e(i))`` for the inner bins,
and for the two open outer bins their finite edge. For a reference profile those are its
minimum and (the next float above) its maximum, since its edges run from min to max: values
of the current window beyond the reference's range are counted at the range's end, so the
distance is then a lower bound. The distance is :func:`scipy.stats.wasserstein_distance` of
the two samples these representatives weighted by the counts form, divided — as Evidently
normalises it — by the reference's standard deviation on the same representatives (population
form, floored at 0.001). On raw data Evidently's value converges to this one as bins get finer.

Without ``edges`` the bin indices 0, 1, 2, ... stand for the values.

>>> from kyklos.monitoring.stats import get_statistic
>>> import numpy as np
>>> edges = np.array([0.0, 1.0, 2.0, 3.0])
>>> statistic, p_value = get_statistic("wasserstein").compute(
...     np.array([0, 50, 50, 0, 0]), np.array([0, 0, 50, 50, 0]), edges=edges)
>>> round(statistic, 2), p_value
(2.0, None)
"""

from __future__ import annotations

import numpy as np

from kyklos.monitoring.stats._base import Statistic

__all__ = ["MIN_STD", "STATISTIC", "bin_values", "wasserstein"]

MIN_STD = 0.001  # as Evidently


def bin_values(edges: np.ndarray | None, n_bins: int) -> np.ndarray:
    """One representative value per bin: inner midpoints, outer bins at their finite edge."""
    if edges is None or len(edges) == 0:
        return np.arange(n_bins, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    middle = (edges[:-1] + edges[1:]) / 2.0
    return np.concatenate([edges[:1], middle, edges[-1:]])


def wasserstein(
    ref_counts: np.ndarray, cur_counts: np.ndarray, *, edges: np.ndarray | None = None
) -> tuple[float, float | None]:
    """``(Wasserstein distance / reference standard deviation, None)`` of two histograms."""
    from scipy.stats import wasserstein_distance

    values = bin_values(edges, len(ref_counts))
    distance = float(wasserstein_distance(values, values, ref_counts, cur_counts))
    weights = ref_counts / ref_counts.sum()
    mean = float(np.dot(weights, values))
    std = float(np.sqrt(max(float(np.dot(weights, (values - mean) ** 2)), 0.0)))
    return distance / max(std, MIN_STD), None


STATISTIC = Statistic(
    name="wasserstein",
    kinds=frozenset({"numeric"}),
    default_threshold=0.1,
    is_test=False,
    function=wasserstein,
    summary="Wasserstein distance in reference standard deviations",
)
