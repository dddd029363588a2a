"""Drift statistics: one module per statistic, looked up by name in :data:`STATISTICS`.

=================  ===========================  ======================  =======================
name               what it is                   kinds                   default threshold
=================  ===========================  ======================  =======================
``ks``             Kolmogorov–Smirnov test      numeric                 p-value < 0.05
``chi2``           chi-square test              categorical, numeric    p-value < 0.05
``psi``            population stability index   categorical, numeric    PSI >= 0.2
``jensenshannon``  Jensen–Shannon distance      categorical, numeric    distance >= 0.1
``wasserstein``    normalised Wasserstein       numeric                 distance >= 0.1 std
=================  ===========================  ======================  =======================

Every statistic works on two histograms of the same bins (:meth:`Statistic.compute`), so a
window is compared with a stored reference profile without touching the training data.

Defaults (:func:`default_method`) follow Evidently's: a p-value test for small windows (up to
1,000 rows: ``ks`` for numeric, ``chi2`` for categorical features) and a distance for large
ones (``wasserstein`` and ``jensenshannon``), because with many rows a test calls every
negligible shift significant, while a distance measures how large the shift is. The choice
depends on the current window's size (the reference, a training set, is fixed and usually
large), so every window of the same size is judged by the same method.

>>> sorted(STATISTICS)
['chi2', 'jensenshannon', 'ks', 'psi', 'wasserstein']
>>> default_method("numeric", 500), default_method("categorical", 50_000)
('ks', 'jensenshannon')
"""

from __future__ import annotations

from kyklos.errors import MonitorError
from kyklos.monitoring.stats import chi2, jensenshannon, ks, psi, wasserstein
from kyklos.monitoring.stats._base import KINDS, Statistic

__all__ = ["KINDS", "LARGE_WINDOW", "STATISTICS", "Statistic", "default_method", "get_statistic"]

LARGE_WINDOW = 1000  # rows: above this, distances instead of tests

STATISTICS: dict[str, Statistic] = {
    module.STATISTIC.name: module.STATISTIC
    for module in (ks, chi2, psi, jensenshannon, wasserstein)
}


def get_statistic(name: str) -> Statistic:
    """The statistic called ``name``; :class:`~kyklos.errors.MonitorError` listing the names."""
    try:
        return STATISTICS[name]
    except KeyError:
        raise MonitorError(
            f"unknown drift statistic {name!r}; choose from {', '.join(sorted(STATISTICS))}. "
            "Hint: set monitor.drift.method (or numeric / categorical / per_feature) in kyklos.yaml"
        ) from None


def default_method(kind: str, n_current: int) -> str:
    """The statistic used for a feature of ``kind`` when kyklos.yaml names none.

    ``numeric``: ``ks`` up to 1,000 current rows, ``wasserstein`` beyond; ``categorical`` (and
    ``boolean``): ``chi2`` up to 1,000 rows, ``jensenshannon`` beyond.
    """
    large = n_current > LARGE_WINDOW
    if kind == "numeric":
        return "wasserstein" if large else "ks"
    if kind in {"categorical", "boolean"}:
        return "jensenshannon" if large else "chi2"
    raise MonitorError(
        f"no drift statistic for feature kind {kind!r}; expected numeric or categorical"
    )
