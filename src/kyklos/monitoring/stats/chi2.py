"""Pearson's chi-square test of homogeneity on counts — name ``chi2``.

Inputs: the reference and current counts of the same bins — aligned category counts
(the reference's categories plus ``"__other__"``) or numeric histogram bins. Default threshold:
p-value 0.05 (a feature drifts when ``p_value < 0.05``). Categorical and numeric features.

Computed with :func:`scipy.stats.chi2_contingency` on the 2 × k table of counts
(``correction=False``), after dropping the bins empty on both sides (they carry no
information and would make the expected frequencies zero). A category present on one side only
is therefore handled without dividing by zero. With a single non-empty bin both samples are
identical: statistic 0, p-value 1.

Evidently's ``chisquare`` test is the goodness-of-fit form, ``scipy.stats.chisquare(f_obs=cur,
f_exp=ref · n_cur / n_ref)``, which treats the reference as the known distribution. The two
agree when the reference is much larger than the window (the usual case: a training set against
a window); when they are of similar size the homogeneity test used here is the correct one (the
goodness-of-fit form ignores the reference's own sampling noise and alarms too often), and it
stays finite when a category is missing from the reference (Evidently's gives p = 0 there).

>>> from kyklos.monitoring.stats import get_statistic
>>> import numpy as np
>>> statistic, p_value = get_statistic("chi2").compute(np.array([50, 30, 20, 0]), np.array([20, 30, 50, 0]))
>>> round(statistic, 2), p_value < 0.05
(25.71, True)
"""

from __future__ import annotations

import numpy as np

from kyklos.monitoring.stats._base import Statistic

__all__ = ["STATISTIC", "chi2"]


def chi2(
    ref_counts: np.ndarray, cur_counts: np.ndarray, *, edges: np.ndarray | None = None
) -> tuple[float, float | None]:
    """``(chi-square statistic, p_value)`` of the 2 × k contingency table of the two histograms."""
    from scipy.stats import chi2_contingency

    keep = (ref_counts + cur_counts) > 0
    if int(keep.sum()) < 2:
        return 0.0, 1.0
    result = chi2_contingency(np.vstack([ref_counts[keep], cur_counts[keep]]), correction=False)
    return float(result.statistic), float(result.pvalue)


STATISTIC = Statistic(
    name="chi2",
    kinds=frozenset({"categorical", "numeric"}),
    default_threshold=0.05,
    is_test=True,
    function=chi2,
    summary="chi-square test of homogeneity (p-value)",
)
