"""Each drift statistic against scipy on the same histograms, and KS against raw-data scipy."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from kyklos.data.diff import psi as diff_psi
from kyklos.data.profile import histogram_on, profile_column
from kyklos.errors import MonitorError
from kyklos.monitoring.stats import STATISTICS, default_method, get_statistic
from kyklos.monitoring.stats.wasserstein import bin_values

MODULES = [
    "kyklos.monitoring.stats",
    "kyklos.monitoring.stats.ks",
    "kyklos.monitoring.stats.chi2",
    "kyklos.monitoring.stats.psi",
    "kyklos.monitoring.stats.jensenshannon",
    "kyklos.monitoring.stats.wasserstein",
    "kyklos.monitoring.drift",
    "kyklos.monitoring.quality",
    "kyklos.monitoring.performance",
]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.rsplit(".", 1)[-1])
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(module)
    result = doctest.testmod(mod)
    assert result.attempted > 0
    assert result.failed == 0


def _histograms(n_ref: int, n_cur: int, shift: float, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Reference and current counts on the reference's own quantile edges, plus the edges."""
    rng = np.random.default_rng(seed)
    ref = rng.normal(0.0, 1.0, n_ref)
    cur = rng.normal(shift, 1.0, n_cur)
    edges = np.asarray(profile_column("x", _arrow(ref)).edges)
    return histogram_on(edges, ref), histogram_on(edges, cur), edges


def _arrow(values: np.ndarray):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    return pa.chunked_array([pa.array(values)])


def _expand(counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(counts), dtype=np.float64), counts.astype(np.int64))


@pytest.mark.parametrize(
    ("n_ref", "n_cur", "shift"),
    [(50_000, 20_000, 0.05), (30_000, 800, 0.2), (2_000, 500, 0.0), (800, 900, 0.3)],
    ids=["asymptotic-small-shift", "asymptotic-window", "exact-same", "exact-shift"],
)
def test_ks_equals_scipy_on_the_same_histograms(n_ref: int, n_cur: int, shift: float) -> None:
    ref, cur, edges = _histograms(n_ref, n_cur, shift)
    statistic, p_value = get_statistic("ks").compute(ref, cur, edges=edges)
    expected = stats.ks_2samp(_expand(ref), _expand(cur))
    assert statistic == pytest.approx(float(expected.statistic), abs=1e-15)
    assert p_value == pytest.approx(float(expected.pvalue), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.5], ids=["same", "small-shift", "shift"])
def test_ks_on_fine_bins_converges_to_scipy_on_raw_data(shift: float) -> None:
    rng = np.random.default_rng(7)
    raw_ref, raw_cur = rng.normal(0, 1, 40_000), rng.normal(shift, 1, 8_000)
    edges = np.asarray(profile_column("x", _arrow(raw_ref), n_bins=1000).edges)
    statistic, p_value = get_statistic("ks").compute(
        histogram_on(edges, raw_ref), histogram_on(edges, raw_cur), edges=edges
    )
    raw = stats.ks_2samp(raw_ref, raw_cur)
    assert statistic <= float(raw.statistic) + 1e-12  # a lower bound of the raw statistic
    assert statistic == pytest.approx(float(raw.statistic), abs=0.004)
    assert (p_value is not None) and ((p_value < 0.05) == (raw.pvalue < 0.05))


@pytest.mark.parametrize(
    ("ref", "cur"),
    [
        ([500, 300, 200, 0], [40, 35, 20, 5]),  # a category the reference never had
        ([500, 300, 200, 7], [0, 35, 20, 0]),  # categories absent from the window
        ([10, 0, 10], [12, 0, 8]),
    ],
    ids=["new-category", "vanished", "empty-bin"],
)
def test_chi2_equals_scipy_contingency(ref: list[int], cur: list[int]) -> None:
    r, c = np.array(ref, dtype=float), np.array(cur, dtype=float)
    statistic, p_value = get_statistic("chi2").compute(r, c)
    keep = (r + c) > 0
    expected = stats.chi2_contingency(np.vstack([r[keep], c[keep]]), correction=False)
    assert statistic == pytest.approx(float(expected.statistic), rel=1e-12)
    assert p_value == pytest.approx(float(expected.pvalue), rel=1e-9)


def test_chi2_approaches_evidently_goodness_of_fit_for_a_large_reference() -> None:
    ref = np.array([500_000, 300_000, 200_000], dtype=float)
    cur = np.array([530, 280, 190], dtype=float)
    _, p_value = get_statistic("chi2").compute(ref, cur)
    # Evidently: chisquare(f_obs=current, f_exp=reference scaled to the current size)
    gof = stats.chisquare(cur, ref * cur.sum() / ref.sum())
    assert p_value == pytest.approx(float(gof.pvalue), rel=0.01)


def test_chi2_with_one_bin_is_no_drift() -> None:
    assert get_statistic("chi2").compute(np.array([5, 0]), np.array([9, 0])) == (0.0, 1.0)


@pytest.mark.parametrize("shift", [0.0, 0.3, 2.0], ids=["same", "shift", "far"])
def test_psi_equals_its_formula_with_flooring(shift: float) -> None:
    ref, cur, edges = _histograms(20_000, 5_000, shift)
    statistic, p_value = get_statistic("psi").compute(ref, cur, edges=edges)
    p = np.clip(ref / ref.sum(), 1e-4, None)
    q = np.clip(cur / cur.sum(), 1e-4, None)
    assert statistic == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-12)
    assert statistic == diff_psi(ref, cur)
    assert p_value is None


@pytest.mark.parametrize("shift", [0.0, 0.3, 2.0], ids=["same", "shift", "far"])
def test_jensenshannon_equals_scipy_base_2(shift: float) -> None:
    ref, cur, edges = _histograms(20_000, 5_000, shift)
    statistic, _ = get_statistic("jensenshannon").compute(ref, cur, edges=edges)
    assert statistic == pytest.approx(float(jensenshannon(ref, cur, base=2)), rel=1e-12)
    assert get_statistic("jensenshannon").compute(np.array([3, 4]), np.array([3, 4]))[0] == 0.0


@pytest.mark.parametrize("shift", [0.0, 0.3, 2.0], ids=["same", "shift", "far"])
def test_wasserstein_equals_scipy_normalised_by_reference_std(shift: float) -> None:
    ref, cur, edges = _histograms(20_000, 5_000, shift)
    statistic, p_value = get_statistic("wasserstein").compute(ref, cur, edges=edges)
    values = bin_values(edges, len(ref))
    distance = stats.wasserstein_distance(values, values, ref, cur)
    std = np.std(np.repeat(values, ref))  # the reference, every value at its bin's value
    assert statistic == pytest.approx(distance / max(std, 0.001), rel=1e-9)
    assert p_value is None


def test_wasserstein_on_fine_bins_is_close_to_evidentlys_raw_value() -> None:
    rng = np.random.default_rng(3)
    raw_ref, raw_cur = rng.normal(0, 1, 40_000), rng.normal(0.3, 1, 8_000)
    edges = np.asarray(profile_column("x", _arrow(raw_ref), n_bins=500).edges)
    statistic, _ = get_statistic("wasserstein").compute(
        histogram_on(edges, raw_ref), histogram_on(edges, raw_cur), edges=edges
    )
    evidently = stats.wasserstein_distance(raw_ref, raw_cur) / np.std(raw_ref)
    assert statistic == pytest.approx(evidently, rel=0.02)


def test_wasserstein_outer_bins_sit_at_the_reference_range() -> None:
    edges = np.array([0.0, 1.0, 2.0])
    values = bin_values(edges, 4)
    assert values.tolist() == [0.0, 0.5, 1.5, 2.0]


def test_registry_lists_five_statistics_with_their_contract() -> None:
    assert sorted(STATISTICS) == ["chi2", "jensenshannon", "ks", "psi", "wasserstein"]
    assert {n for n, s in STATISTICS.items() if s.is_test} == {"chi2", "ks"}
    assert {n for n, s in STATISTICS.items() if "categorical" in s.kinds} == {
        "chi2",
        "jensenshannon",
        "psi",
    }
    for name, statistic in STATISTICS.items():
        assert statistic.name == name
        assert statistic.default_threshold > 0


def test_unknown_statistic_lists_the_names() -> None:
    with pytest.raises(
        MonitorError, match=r"'hellinger'.*chi2, jensenshannon, ks, psi, wasserstein"
    ):
        get_statistic("hellinger")


@pytest.mark.parametrize(
    ("kind", "n", "expected"),
    [
        ("numeric", 1000, "ks"),
        ("numeric", 1001, "wasserstein"),
        ("categorical", 50, "chi2"),
        ("categorical", 10_000, "jensenshannon"),
        ("boolean", 10_000, "jensenshannon"),
    ],
    ids=["num-small", "num-large", "cat-small", "cat-large", "bool-large"],
)
def test_default_method(kind: str, n: int, expected: str) -> None:
    assert default_method(kind, n) == expected


def test_default_method_refuses_datetime() -> None:
    with pytest.raises(MonitorError, match="datetime"):
        default_method("datetime", 10)


@pytest.mark.parametrize(
    ("ref", "cur", "message"),
    [
        ([1, 2], [1, 2, 3], "same bins"),
        ([0, 0], [1, 2], "reference histogram is empty"),
        ([1, 2], [0, 0], "current histogram is empty"),
        ([1, -2], [1, 2], "non-negative"),
    ],
    ids=["shape", "empty-reference", "empty-current", "negative"],
)
def test_bad_histograms_are_refused(ref: list[int], cur: list[int], message: str) -> None:
    with pytest.raises(MonitorError, match=message):
        get_statistic("psi").compute(np.array(ref), np.array(cur))


def test_edges_must_match_the_bins() -> None:
    with pytest.raises(MonitorError, match="3 bins need 2 edges, got 3"):
        get_statistic("wasserstein").compute(
            np.array([1, 2, 3]), np.array([1, 2, 3]), edges=np.array([0.0, 1.0, 2.0])
        )


@pytest.mark.parametrize(
    ("name", "statistic", "p_value", "threshold", "drifted"),
    [
        ("ks", 0.3, 0.01, 0.05, True),
        ("ks", 0.3, 0.05, 0.05, False),
        ("psi", 0.2, None, 0.2, True),
        ("psi", 0.19, None, 0.2, False),
    ],
    ids=["test-below", "test-at", "distance-at", "distance-below"],
)
def test_verdict_rule(
    name: str, statistic: float, p_value: float | None, threshold: float, drifted: bool
) -> None:
    assert get_statistic(name).drifted(statistic, p_value, threshold) is drifted
