"""Two-sample Kolmogorov–Smirnov test on histograms — name ``ks``.

Inputs: the reference and current counts of the same numeric bins (``len(edges) + 1`` open
bins, as :func:`kyklos.data.profile.histogram_on` makes them). Default threshold: p-value 0.05
(a feature drifts when ``p_value < 0.05``). Numeric features only.

The statistic is ``D = max |CDF_ref − CDF_cur|`` over the bin boundaries. It is the exact KS
statistic of the *binned* data (every value replaced by its bin), and a lower bound of the KS
statistic of the raw values that converges to :func:`scipy.stats.ks_2samp` as bins get finer
(with the profile's ~20 quantile bins it typically differs by a few thousandths). The p-value
is scipy's, for the same effective sample size: when both samples hold at most 10,000 values
the histograms are expanded to bin indices and handed to :func:`scipy.stats.ks_2samp`
(``method="auto"``: its exact distribution); beyond that, exactly as ``ks_2samp`` does it
there, ``scipy.stats.kstwo.sf(D, round(n·m / (n + m)))``. So on the same histograms the result
*is* scipy's.

Use it for small windows: with large samples the test flags shifts too small to matter, which
is why :func:`~kyklos.monitoring.stats.default_method` switches to ``wasserstein`` beyond 1,000
rows (as Evidently does).

>>> from kyklos.monitoring.stats import get_statistic
>>> import numpy as np
>>> statistic, p_value = get_statistic("ks").compute(np.array([0, 50, 50, 0]), np.array([0, 10, 90, 0]))
>>> round(statistic, 2), p_value < 0.05
(0.4, True)
"""

from __future__ import annotations

import warnings

import numpy as np

from kyklos.monitoring.stats._base import Statistic

__all__ = ["EXACT_MAX_N", "STATISTIC", "ks"]

EXACT_MAX_N = 10_000  # as scipy.stats.ks_2samp(method="auto")


def ks(
    ref_counts: np.ndarray, cur_counts: np.ndarray, *, edges: np.ndarray | None = None
) -> tuple[float, float | None]:
    """``(D, p_value)`` of the two-sample KS test on two histograms of the same bins."""
    from scipy import stats

    n_ref, n_cur = round(float(ref_counts.sum())), round(float(cur_counts.sum()))
    if max(n_ref, n_cur) <= EXACT_MAX_N:
        index = np.arange(len(ref_counts), dtype=np.float64)
        ref = np.repeat(index, ref_counts.astype(np.int64))
        cur = np.repeat(index, cur_counts.astype(np.int64))
        with warnings.catch_warnings():
            # scipy falls back to the asymptotic p-value when the exact one does not converge
            warnings.filterwarnings("ignore", "ks_2samp: Exact calculation", RuntimeWarning)
            result = stats.ks_2samp(ref, cur, method="auto")
        return float(result.statistic), float(result.pvalue)
    cddiffs = np.cumsum(ref_counts) / n_ref - np.cumsum(cur_counts) / n_cur
    d = float(max(np.clip(-cddiffs.min(), 0.0, 1.0), cddiffs.max()))
    m, n = sorted([float(n_ref), float(n_cur)], reverse=True)
    p_value = float(np.clip(stats.kstwo.sf(d, np.round(m * n / (m + n))), 0.0, 1.0))
    return d, p_value


STATISTIC = Statistic(
    name="ks",
    kinds=frozenset({"numeric"}),
    default_threshold=0.05,
    is_test=True,
    function=ks,
    summary="two-sample Kolmogorov–Smirnov test (p-value)",
)
