"""Per-bin sums in profiles: the Wasserstein distance from bin means against scipy on raw data,
merging, old profiles without sums, and the binning that sums a window's values per bin."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import wasserstein_distance

from kyklos.config.project import DriftConfig
from kyklos.data.profile import ColumnProfile, TableProfile, histogram_sums_on, profile_table
from kyklos.monitoring.drift import (
    BinBuffers,
    DriftAccumulator,
    bin_numeric,
    bin_numeric_sums,
    check_drift,
)
from kyklos.monitoring.stats import get_statistic

N = 100_000
WASSERSTEIN = DriftConfig(numeric="wasserstein")


def _zero_inflated(zeros: float, scale: float) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda g: np.where(g.random(N) < zeros, 0.0, g.exponential(scale, N))


# reference sampler, current sampler: each a function of a seeded generator
CASES: dict[str, tuple[Callable[[np.random.Generator], np.ndarray], ...]] = {
    "no-drift": (lambda g: g.normal(0, 1, N), lambda g: g.normal(0, 1, N)),
    "mean-shift": (lambda g: g.normal(0, 1, N), lambda g: g.normal(0.25, 1, N)),
    "variance": (lambda g: g.normal(50, 10, N), lambda g: g.normal(50, 15, N)),
    "lognormal-scaled-past-the-max": (
        lambda g: g.lognormal(0, 0.75, N),
        lambda g: 1.3 * g.lognormal(0, 0.75, N),
    ),
    "all-above-the-range": (lambda g: g.normal(0, 1, N), lambda g: g.normal(6, 1, N)),
    "half-below-the-range": (
        lambda g: g.uniform(0, 1, N),
        lambda g: np.concatenate([g.uniform(0, 1, N // 2), g.uniform(-3, -2, N // 2)]),
    ),
    "mostly-zeros-tail-grows": (_zero_inflated(0.93, 0.1), _zero_inflated(0.90, 0.15)),
    "mostly-zeros-same": (_zero_inflated(0.93, 0.1), _zero_inflated(0.93, 0.1)),
    "integers": (
        lambda g: g.poisson(3, N).astype(np.float64),
        lambda g: g.poisson(3.5, N).astype(np.float64),
    ),
    "heavy-tail-no-drift": (lambda g: g.lognormal(0, 1.5, N), lambda g: g.lognormal(0, 1.5, N)),
}


def _exact(ref: np.ndarray, cur: np.ndarray) -> float:
    """Evidently's normalised Wasserstein on the raw values."""
    return float(wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001))


def _statistic(reference: TableProfile, cur: np.ndarray) -> float:
    drifts, _, _ = check_drift(reference, pa.table({"x": cur}), config=WASSERSTEIN)
    assert drifts[0].method == "wasserstein"
    return drifts[0].statistic


@pytest.mark.parametrize("n_bins", [20, 100], ids=["20-bins", "100-bins-as-the-profile-step"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_wasserstein_from_bin_means_agrees_with_scipy_on_raw_data(case: str, n_bins: int) -> None:
    """Within 0.005 + 1 % of scipy's value on the raw arrays (normalised by np.std of the
    reference), also when the window leaves the reference's range or is mostly zeros."""
    make_ref, make_cur = CASES[case]
    ref, cur = make_ref(np.random.default_rng(1)), make_cur(np.random.default_rng(2))
    reference = profile_table(pa.table({"x": ref}), n_bins=n_bins)
    exact = _exact(ref, cur)
    got = _statistic(reference, cur)
    print(f"{case}: kyklos {got:.4f}, scipy {exact:.4f}")
    assert got == pytest.approx(exact, rel=0.01, abs=0.005)


@pytest.mark.parametrize("case", ["all-above-the-range", "lognormal-scaled-past-the-max"])
def test_old_profiles_without_sums_keep_the_edge_based_lower_bound(case: str) -> None:
    """A stored profile from before the sums existed reads (``sums == ()``) and gets the
    previous, edge-based value, which falls short of the raw-data value in these cases."""
    make_ref, make_cur = CASES[case]
    ref, cur = make_ref(np.random.default_rng(1)), make_cur(np.random.default_rng(2))
    stored = profile_table(pa.table({"x": ref})).to_dict()
    for column in stored["columns"]:
        del column["sums"]
    old = TableProfile.from_dict(stored)
    assert old["x"].sums == ()
    counts = np.asarray(old["x"].counts, dtype=np.float64)
    current = DriftAccumulator(old).update(pa.table({"x": cur}))
    assert current.sums == {}  # nothing to compare them with: the window's are not summed
    by_edges, _ = get_statistic("wasserstein").compute(
        counts, current.histograms["x"], edges=np.asarray(old["x"].edges)
    )
    assert _statistic(old, cur) == pytest.approx(by_edges)
    assert by_edges < 0.9 * _exact(ref, cur)
    assert _statistic(profile_table(pa.table({"x": ref})), cur) == pytest.approx(
        _exact(ref, cur), rel=0.01, abs=0.005
    )


def test_sums_merge_and_round_trip() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0, 1, 5_000), [np.nan, np.inf]])
    whole = profile_table(pa.table({"x": values}))
    first = profile_table(pa.table({"x": values[:2_000]}), reference=whole)
    second = profile_table(pa.table({"x": values[2_000:]}), reference=whole)
    merged = first.merge(second)["x"]
    assert merged.counts == whole["x"].counts
    np.testing.assert_allclose(merged.sums, whole["x"].sums, rtol=1e-12, atol=1e-9)
    assert float(np.sum(whole["x"].sums)) == pytest.approx(whole["x"].sum)
    assert TableProfile.from_dict(whole.to_dict()) == whole

    without = ColumnProfile.from_dict({**first["x"].to_dict(), "sums": []})
    assert without.sums == ()
    assert without.merge(second["x"]).sums == ()  # one side lacks them: so does the merge
    damaged = {**first["x"].to_dict(), "sums": [1.0]}
    with pytest.raises(Exception, match="bin sums"):
        ColumnProfile.from_dict(damaged)


@pytest.mark.parametrize(
    "values",
    [
        np.array([-5.0, 0.0, 0.5, 1.0, 7.0, np.nan, np.inf, -np.inf]),
        np.random.default_rng(4).normal(0, 1, 10_000),
        np.random.default_rng(5).integers(-3, 40, 10_000),
        np.random.default_rng(6).normal(0, 1, 10_000).astype(np.float32),
        np.array([], dtype=np.float64),
    ],
    ids=["specials", "floats", "integers", "float32", "empty"],
)
@pytest.mark.parametrize("n_edges", [0, 1, 21, 200], ids=lambda k: f"{k}-edges")
def test_bin_numeric_sums_equals_searchsorted(values: np.ndarray, n_edges: int) -> None:
    edges = np.sort(np.random.default_rng(n_edges).normal(5, 10, n_edges))
    counts, sums, missing = bin_numeric_sums(values, edges)
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    expected_counts, expected_sums = histogram_sums_on(edges, finite.astype(np.float64))
    assert counts.tolist() == expected_counts.tolist()
    np.testing.assert_allclose(sums, expected_sums, rtol=1e-9, atol=1e-6)
    assert missing == len(values) - len(finite)
    plain_counts, plain_missing = bin_numeric(values, edges)
    assert (counts.tolist(), missing) == (plain_counts.tolist(), plain_missing)


@pytest.mark.parametrize("months", [(6, 7), (9,)], ids=["june-july", "september"])
@pytest.mark.parametrize("n_bins", [20, 100], ids=["20-bins", "100-bins"])
def test_flights_precipitation_against_scipy(
    flights_path: Path, months: tuple[int, ...], n_bins: int
) -> None:
    """``precip`` is 93 % zeros in January–February (98.7 % in September) in steps of 0.01,
    and summer rain goes past the winter maximum 0.32. Its quantile edges would collapse to
    ``[0, 0.02, 0.32]``; the profile gives the other values the bins the zeros would take."""
    table = pq.read_table(flights_path, columns=["month", "precip"])
    month = table.column("month").to_numpy()
    precip = table.column("precip").to_numpy(zero_copy_only=False).astype(np.float64)
    ref, cur = precip[month <= 2], precip[np.isin(month, months)]
    reference = profile_table(pa.table({"x": ref}), n_bins=n_bins)
    assert len(reference["x"].edges) >= 10
    exact = _exact(ref[np.isfinite(ref)], cur[np.isfinite(cur)])
    assert _statistic(reference, cur) == pytest.approx(exact, rel=0.01, abs=0.005)


def test_bin_buffers_are_reused_across_sizes_and_columns() -> None:
    """One set of work arrays serves chunks of any size in turn, NaN chunks included, and never
    changes the values it bins."""
    rng = np.random.default_rng(7)
    buffers = BinBuffers()
    edges = np.linspace(-2.0, 2.0, 9)
    chunks = [
        rng.normal(0, 1, 5_000),
        np.where(rng.random(300) < 0.1, np.nan, rng.normal(0, 1, 300)),
        rng.integers(-3, 4, 2_000),
        rng.normal(0, 1, 7_000),
    ]
    for values in chunks:
        before = values.copy()
        got = bin_numeric_sums(values, edges, buffers)
        fresh = bin_numeric_sums(values, edges)
        assert got[0].tolist() == fresh[0].tolist() and got[2] == fresh[2]
        np.testing.assert_array_equal(got[1], fresh[1])
        np.testing.assert_array_equal(values, before)
    assert buffers.size == 7_000
