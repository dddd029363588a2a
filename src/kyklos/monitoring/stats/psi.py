"""Population stability index — name ``psi``.

Inputs: the reference and current counts of the same bins (numeric histogram bins or aligned
category counts). Default threshold: 0.2 (a feature drifts when ``PSI >= 0.2``). Categorical
and numeric features.

``PSI = Σ (q − p) · ln(q / p)`` over the bins, with ``p`` and ``q`` the reference and current
proportions, each floored at 1e-4 so that empty bins keep it finite — the same function as
:func:`kyklos.data.diff.psi`, so ``kyklos data diff`` and the monitor agree. Evidently computes
the same sum (it floors only exact zeros, at the same 1e-4). Reading: below 0.1 no real change,
0.1–0.2 moderate, above 0.2 a major shift.

>>> from kyklos.monitoring.stats import get_statistic
>>> import numpy as np
>>> statistic, p_value = get_statistic("psi").compute(np.array([90, 10]), np.array([50, 50]))
>>> round(statistic, 3), p_value
(0.879, None)
"""

from __future__ import annotations

import numpy as np

from kyklos.data.diff import psi as psi_index
from kyklos.monitoring.stats._base import Statistic

__all__ = ["STATISTIC", "psi"]


def psi(
    ref_counts: np.ndarray, cur_counts: np.ndarray, *, edges: np.ndarray | None = None
) -> tuple[float, float | None]:
    """``(PSI, None)`` of the current histogram against the reference one."""
    return psi_index(ref_counts, cur_counts), None


STATISTIC = Statistic(
    name="psi",
    kinds=frozenset({"categorical", "numeric"}),
    default_threshold=0.2,
    is_test=False,
    function=psi,
    summary="population stability index",
)
