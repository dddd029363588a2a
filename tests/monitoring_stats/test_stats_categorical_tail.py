"""Categorical features with long tails: up to 1,000 categories kept, drift in the tail seen,
rare categories pooled by the window's size, categories unseen in the reference."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency

from kyklos.config.project import DriftConfig
from kyklos.data.profile import DEFAULT_TOP_K, TableProfile, profile_table
from kyklos.monitoring.drift import OTHER, check_drift, pool_rare_categories


def _zipf(k: int, exponent: float = 1.1) -> np.ndarray:
    p = 1.0 / np.arange(1, k + 1) ** exponent
    return p / p.sum()


def _sample(p: np.ndarray, n: int, seed: int, prefix: str = "c") -> pa.Table:
    names = np.array([f"{prefix}{i:04d}" for i in range(len(p))])
    drawn = names[np.random.default_rng(seed).choice(len(p), n, p=p)]
    return pa.table({"x": pa.array(drawn, pa.large_string())})


def _drift(reference: TableProfile, window: pa.Table, **config: str) -> tuple[float, bool, str]:
    drifts, _, _ = check_drift(reference, window, config=DriftConfig(**config))  # type: ignore[arg-type]
    return drifts[0].statistic, drifts[0].drifted, drifts[0].method


def test_profiles_keep_up_to_1000_categories_and_count_the_rest_as_other() -> None:
    table = pa.table({"x": pa.array([f"v{i}" for i in range(1_200)] * 2, pa.large_string())})
    column = profile_table(table)["x"]
    assert DEFAULT_TOP_K == 1000
    assert (len(column.frequencies), column.other, column.count) == (1000, 400, 2400)


def test_drift_in_the_tail_is_seen_with_the_full_profile_and_diluted_with_a_top_50() -> None:
    """450 categories: 50 frequent ones (60 % of the rows) and a tail of 400. The window keeps
    the frequent ones and the tail's total mass, and reverses the tail (its rare categories
    become its frequent ones)."""
    head = _zipf(50) * 0.6
    tail = np.linspace(2.0, 0.5, 400)
    tail = tail / tail.sum() * 0.4
    reference_rows = _sample(np.concatenate([head, tail]), 200_000, seed=1)
    window = _sample(np.concatenate([head, tail[::-1]]), 50_000, seed=2)

    full = profile_table(reference_rows)
    assert full["x"].other == 0 and len(full["x"].frequencies) == 450
    statistic, drifted, method = _drift(full, window)
    assert (method, drifted) == ("jensenshannon", True)
    # every category is expected 20+ times in the window: none is pooled, and the value is
    # scipy's on the raw category counts
    names = sorted(full["x"].frequencies)
    counts = dict(zip(*np.unique(window.column("x").to_numpy(), return_counts=True), strict=True))
    raw_ref = np.array([full["x"].frequencies[name] for name in names])
    raw_cur = np.array([counts.get(name, 0) for name in names])
    assert statistic == pytest.approx(float(jensenshannon(raw_ref, raw_cur, base=2)))

    top_50 = profile_table(reference_rows, top_k=50)  # the former default: the tail is "other"
    assert sorted(top_50["x"].frequencies) == names[:50]
    diluted, drifted, _ = _drift(top_50, window)
    assert drifted is False and diluted < statistic / 5
    for method in ("chi2", "psi"):
        assert _drift(full, window, categorical=method)[1] is True, method
        assert _drift(top_50, window, categorical=method)[1] is False, method


@pytest.mark.parametrize(
    ("n", "method", "unpooled_at_least"),
    [(300, "chi2", 8), (2_000, "jensenshannon", 30), (5_000, "jensenshannon", 30)],
    ids=["300-rows-chi2", "2000-rows-js", "5000-rows-js"],
)
def test_a_long_tail_does_not_alarm_by_sampling_noise(
    n: int, method: str, unpooled_at_least: int
) -> None:
    """1,000 Zipf categories; 30 windows drawn from the reference's own distribution. Pooled by
    expected count, the alarms stay at the test's nominal rate (5 %: at most 4 of 30); with
    every category on its own, chi-square alarms on noise in about a third of the windows and
    the Jensen–Shannon distance of two samples of the same 1,000 categories exceeds 0.1."""
    p = _zipf(1_000)
    reference = profile_table(_sample(p, 200_000, seed=3))
    ref = np.array([*reference["x"].frequencies.values(), reference["x"].other], dtype=float)
    alarms = unpooled = 0
    for seed in range(100, 130):
        window = _sample(p, n, seed=seed)
        _, drifted, used = _drift(reference, window)
        assert used == method
        alarms += drifted
        found = dict(
            zip(*np.unique(window.column("x").to_numpy(), return_counts=True), strict=True)
        )
        cur = np.array([*(found.get(k, 0) for k in reference["x"].frequencies), 0], dtype=float)
        if method == "chi2":
            keep = (ref + cur) > 0
            table = np.vstack([ref[keep], cur[keep]])
            unpooled += chi2_contingency(table, correction=False).pvalue < 0.05
        else:
            unpooled += float(jensenshannon(ref, cur, base=2)) >= 0.1
    assert alarms <= 4
    assert unpooled >= unpooled_at_least


def test_categories_unseen_in_the_reference_drift_under_every_statistic() -> None:
    """The reference recorded all its categories (``other == 0``); a fifth of the window
    falls on ten new ones. They share the OTHER slot, whose reference count is 0."""
    p = np.full(8, 1 / 8)
    reference = profile_table(_sample(p, 40_000, seed=5))
    assert reference["x"].other == 0
    seen = _sample(p, 8_000, seed=6)
    unseen = _sample(np.full(10, 1 / 10), 2_000, seed=7, prefix="new")
    window = pa.concat_tables([seen, unseen])

    for method in ("chi2", "psi", "jensenshannon"):
        statistic, drifted, _ = _drift(reference, window, categorical=method)
        assert drifted and np.isfinite(statistic), method
        assert _drift(reference, seen, categorical=method)[1] is False, method

    # chi-square and Jensen–Shannon are the raw-data values with every new category on its
    # own: a category absent from the reference adds linearly to both, so pooling them is exact
    ref = np.array([*reference["x"].frequencies.values(), *[0] * 10], dtype=float)
    names = [*reference["x"].frequencies, *[f"new{i:04d}" for i in range(10)]]
    counts = dict(zip(*np.unique(window.column("x").to_numpy(), return_counts=True), strict=True))
    cur = np.array([counts.get(name, 0) for name in names], dtype=float)
    raw_chi2 = chi2_contingency(np.vstack([ref, cur]), correction=False).statistic
    assert _drift(reference, window, categorical="chi2")[0] == pytest.approx(raw_chi2)
    assert _drift(reference, window, categorical="jensenshannon")[0] == pytest.approx(
        float(jensenshannon(ref, cur, base=2))
    )
    drifts, _, _ = check_drift(reference, window, config=DriftConfig())
    assert drifts[0].current is not None and drifts[0].current.categories is not None
    assert drifts[0].current.categories[-1] == OTHER  # shown in the report as "other"


def test_pool_rare_categories_keeps_frequent_ones_and_the_totals() -> None:
    ref = np.array([5_000, 3_000, 1_500, 400, 90, 10, 0])
    cur = np.array([500, 310, 140, 35, 10, 0, 5])
    for n_rows, kept in ((1_000, 5), (100, 3), (100_000, 6)):
        scaled = np.round(cur * n_rows / cur.sum()).astype(int)
        pooled_ref, pooled_cur = pool_rare_categories(ref, scaled)
        assert len(pooled_ref) == len(pooled_cur) == kept + 1
        assert pooled_ref.sum() == ref.sum() and pooled_cur.sum() == scaled.sum()
        assert pooled_ref[:kept].tolist() == ref[:kept].tolist()
