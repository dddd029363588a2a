"""Normalised Wasserstein (earth mover's) distance — name ``wasserstein``.

Inputs: the reference and current counts of the same numeric bins and the bin ``edges``
(``len(edges) + 1`` open bins as :func:`kyklos.data.profile.histogram_on` makes them), and,
when the profile records them, the sum of the values in each bin on both sides and the
reference's standard deviation. Default threshold: 0.1 (a feature drifts when the distance is
``>= 0.1`` reference standard deviations). Numeric features only.

The distance is :func:`scipy.stats.wasserstein_distance` between the two histograms, each bin
standing for its values by one point, divided — as Evidently normalises it — by the
reference's standard deviation (population form, floored at 0.001):

* **with bin sums** (profiles record them since per-bin sums were added): each bin stands at the *mean* of its
  values on its own side, and the reference's standard deviation is the exact one of the
  profile (from its count, sum and sum of squares). The bin means keep what a bin's edges
  lose: values of the window beyond the reference's range sit where they are (the open outer
  bins hold their true mean), and a zero-inflated feature, whose quantile edges collapse into
  a few wide bins, keeps its zeros at zero. On raw data this agrees with
  ``wasserstein_distance(ref, cur) / ref.std()`` to a few thousandths (a test measures it,
  out-of-range and mostly-zero windows included).
* **without** (profiles stored before the sums existed): each bin stands at its midpoint
  ``[e(i-1), e(i))`` and the two open outer bins at their finite edge — for a reference
  profile its minimum and (the next float above) its maximum, so values of the window beyond
  the reference's range count at the range's end and the distance is then a lower bound; the
  standard deviation is that of these representatives.

Without ``edges`` the bin indices 0, 1, 2, ... stand for the values.

>>> from kyklos.monitoring.stats import get_statistic
>>> import numpy as np
>>> edges = np.array([0.0, 1.0, 2.0, 3.0])
>>> statistic, p_value = get_statistic("wasserstein").compute(
...     np.array([0, 50, 50, 0, 0]), np.array([0, 0, 50, 50, 0]), edges=edges)
>>> round(statistic, 2), p_value
(2.0, None)
>>> statistic, _ = get_statistic("wasserstein").compute(  # half the window at 9, past 3.0
...     np.array([0, 50, 50, 0, 0]), np.array([0, 0, 50, 0, 50]), edges=edges,
...     ref_sums=np.array([0.0, 25.0, 75.0, 0.0, 0.0]),
...     cur_sums=np.array([0.0, 0.0, 75.0, 0.0, 450.0]), ref_std=0.5)
>>> round(statistic, 2)  # (0.5 · 1 + 0.5 · 7.5) / 0.5; counted at the edge 3.0: 2.5
8.5
"""

from __future__ import annotations

import numpy as np

from kyklos.monitoring.stats._base import Statistic

__all__ = ["MIN_STD", "STATISTIC", "bin_means", "bin_values", "wasserstein"]

MIN_STD = 0.001  # as Evidently


def bin_values(edges: np.ndarray | None, n_bins: int) -> np.ndarray:
    """One representative value per bin: inner midpoints, outer bins at their finite edge."""
    if edges is None or len(edges) == 0:
        return np.arange(n_bins, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    middle = (edges[:-1] + edges[1:]) / 2.0
    return np.concatenate([edges[:1], middle, edges[-1:]])


def bin_means(counts: np.ndarray, sums: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """The mean of the values in each bin (``sums / counts``); ``fallback`` for empty bins."""
    means: np.ndarray = np.array(fallback, dtype=np.float64)
    np.divide(sums, counts, out=means, where=counts > 0)
    return means


def wasserstein(
    ref_counts: np.ndarray,
    cur_counts: np.ndarray,
    *,
    edges: np.ndarray | None = None,
    sums: tuple[np.ndarray, np.ndarray] | None = None,
    ref_std: float | None = None,
) -> tuple[float, float | None]:
    """``(Wasserstein distance / reference standard deviation, None)`` of two histograms;
    ``sums`` are the per-bin sums of the reference and the current values, when known."""
    from scipy.stats import wasserstein_distance

    middle = bin_values(edges, len(ref_counts))
    if sums is None:
        ref_values = cur_values = middle
    else:
        ref_values = bin_means(ref_counts, sums[0], middle)
        cur_values = bin_means(cur_counts, sums[1], middle)
    distance = float(wasserstein_distance(ref_values, cur_values, ref_counts, cur_counts))
    if ref_std is None or sums is None:
        weights = ref_counts / ref_counts.sum()
        mean = float(np.dot(weights, ref_values))
        ref_std = float(np.sqrt(max(float(np.dot(weights, (ref_values - mean) ** 2)), 0.0)))
    return distance / max(ref_std, MIN_STD), None


STATISTIC = Statistic(
    name="wasserstein",
    kinds=frozenset({"numeric"}),
    default_threshold=0.1,
    is_test=False,
    function=wasserstein,
    summary="Wasserstein distance in reference standard deviations",
    uses_sums=True,
)
