"""The contract every drift statistic fulfils, and the checks shared by all of them."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kyklos.errors import MonitorError

__all__ = ["KINDS", "Compute", "Statistic", "as_counts"]

KINDS = frozenset({"numeric", "categorical"})

Compute = Callable[..., tuple[float, float | None]]


@dataclass(frozen=True)
class Statistic:
    """One drift statistic, computed on two histograms of the same bins.

    ``kinds`` are the feature kinds it applies to (``numeric``, ``categorical``). A test
    (``is_test``) reports a p-value and a feature drifts when ``p_value < threshold``; a
    distance drifts when ``statistic >= threshold``. A statistic that ``uses_sums`` also takes
    the sum of the values in each numeric bin (``ref_sums``, ``cur_sums``) and the reference's
    standard deviation (``ref_std``) when they are known.
    """

    name: str
    kinds: frozenset[str]
    default_threshold: float
    is_test: bool
    function: Compute
    summary: str = ""
    uses_sums: bool = False

    def compute(
        self,
        ref_counts: np.ndarray,
        cur_counts: np.ndarray,
        *,
        edges: np.ndarray | None = None,
        ref_sums: np.ndarray | None = None,
        cur_sums: np.ndarray | None = None,
        ref_std: float | None = None,
    ) -> tuple[float, float | None]:
        """``(statistic, p_value)`` of the current histogram against the reference one.

        Numeric histograms have ``len(edges) + 1`` open bins as in
        :func:`kyklos.data.profile.histogram_on`; categorical ones are aligned category counts
        (the reference's categories plus ``"__other__"``). ``p_value`` is None for distances.
        ``ref_sums`` / ``cur_sums`` (the sum of the values in each bin) and ``ref_std`` reach
        the statistics that use them (``uses_sums``); the others ignore them.
        """
        ref, cur = as_counts(self.name, ref_counts, cur_counts)
        if edges is not None:
            edges = np.asarray(edges, dtype=np.float64)
            if edges.ndim != 1 or len(edges) + 1 != len(ref):
                raise MonitorError(
                    f"drift statistic {self.name!r}: {len(ref)} bins need {len(ref) - 1} edges, "
                    f"got {edges.size}. Hint: pass the reference profile's edges"
                )
        if self.uses_sums and ref_sums is not None and cur_sums is not None:
            sums = [np.asarray(a, dtype=np.float64) for a in (ref_sums, cur_sums)]
            if any(a.shape != ref.shape or not np.all(np.isfinite(a)) for a in sums):
                raise MonitorError(
                    f"drift statistic {self.name!r}: the bin sums must be finite, one per bin "
                    f"({len(ref)})"
                )
            return self.function(ref, cur, edges=edges, sums=(sums[0], sums[1]), ref_std=ref_std)
        return self.function(ref, cur, edges=edges)

    def drifted(self, statistic: float, p_value: float | None, threshold: float) -> bool:
        """The verdict: ``p_value < threshold`` for a test, ``statistic >= threshold`` otherwise."""
        if self.is_test:
            return p_value is not None and p_value < threshold
        return statistic >= threshold

    def severity(self, statistic: float, p_value: float | None, threshold: float) -> float:
        """How far past (> 1) or below (< 1) its threshold a result is, comparable across methods.

        Distances: ``statistic / threshold``. Tests: ``log(p) / log(threshold)``, so that
        ``p == threshold`` gives 1 and ``p == 0`` gives infinity.
        """
        if self.is_test:
            p = 1.0 if p_value is None else p_value
            if not 0.0 < threshold < 1.0:
                return 1.0 - p
            return math.inf if p <= 0.0 else math.log(p) / math.log(threshold)
        if threshold <= 0.0:
            return math.inf if statistic > 0 else 0.0
        return statistic / threshold


def as_counts(name: str, ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Both histograms as float64 arrays, checked: same length, finite, non-negative, non-empty."""
    ref = np.asarray(ref_counts, dtype=np.float64)
    cur = np.asarray(cur_counts, dtype=np.float64)
    if ref.ndim != 1 or ref.shape != cur.shape:
        raise MonitorError(
            f"drift statistic {name!r} needs two histograms of the same bins, got shapes "
            f"{ref.shape} and {cur.shape}. Hint: bin the current data on the reference edges"
        )
    for side, arr in (("reference", ref), ("current", cur)):
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise MonitorError(
                f"drift statistic {name!r}: the {side} histogram must hold finite, "
                "non-negative counts"
            )
        if arr.sum() <= 0:
            raise MonitorError(
                f"drift statistic {name!r}: the {side} histogram is empty (no values). "
                "Hint: a feature without values on one side has no drift statistic; "
                "the quality check reports it"
            )
    return ref, cur
