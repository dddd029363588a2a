"""Data and prediction drift against a reference profile: verdicts, methods, chunks, flights."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from kyklos.config.project import DriftConfig
from kyklos.data.profile import TableProfile, histogram_on, profile_table
from kyklos.errors import MonitorError
from kyklos.monitoring.drift import (
    OTHER,
    PREDICTION,
    DriftAccumulator,
    bin_numeric,
    category_counts,
    check_drift,
    current_histograms,
    prediction_drift,
)

CATEGORIES = np.array(["red", "green", "blue", "grey", "black"])


def _table(n: int, *, seed: int, shift: float = 0.0, tilt: bool = False) -> pa.Table:
    """Three numeric and two categorical features; ``shift`` moves ``a``, ``tilt`` skews ``colour``."""
    rng = np.random.default_rng(seed)
    p = np.array([0.6, 0.1, 0.1, 0.1, 0.1]) if tilt else np.full(5, 0.2)
    return pa.table(
        {
            "a": rng.normal(shift, 1.0, n),
            "b": rng.exponential(2.0, n),
            "c": rng.integers(0, 100, n).astype(np.int32),
            "colour": pa.array(CATEGORIES[rng.choice(5, n, p=p)], pa.large_string()),
            "flag": pa.array(rng.random(n) < 0.3),
        }
    )


@pytest.fixture(scope="module")
def reference() -> TableProfile:
    return profile_table(_table(20_000, seed=1))


# -- verdicts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [600, 20_000], ids=["small-window-tests", "large-window-distances"])
def test_same_distribution_does_not_drift(reference: TableProfile, n: int) -> None:
    drifts, share, dataset = check_drift(reference, _table(n, seed=2), config=DriftConfig())
    assert [d.feature for d in drifts if d.drifted] == []
    assert share == 0.0
    assert dataset is False
    methods = {d.feature: d.method for d in drifts}
    if n <= 1000:
        assert methods == {"a": "ks", "b": "ks", "c": "ks", "colour": "chi2", "flag": "chi2"}
    else:
        assert methods["a"] == "wasserstein"
        assert methods["colour"] == "jensenshannon"


@pytest.mark.parametrize("n", [600, 20_000], ids=["small-window-tests", "large-window-distances"])
def test_shifted_numeric_and_tilted_categorical_drift(reference: TableProfile, n: int) -> None:
    current = _table(n, seed=3, shift=0.5, tilt=True)
    drifts, share, dataset = check_drift(reference, current, config=DriftConfig())
    assert {d.feature for d in drifts if d.drifted} == {"a", "colour"}
    assert all(d.drifted for d in drifts[:2]) and not any(d.drifted for d in drifts[2:])
    assert share == pytest.approx(2 / 5)
    assert dataset is True  # 0.4 >= 0.3


def test_results_carry_both_histograms_and_are_json(reference: TableProfile) -> None:
    drifts, _, _ = check_drift(reference, _table(2_000, seed=4), config=DriftConfig())
    by_name = {d.feature: d for d in drifts}
    a = by_name["a"]
    assert a.reference is not None and a.current is not None
    assert a.reference.edges == reference["a"].edges
    assert a.reference.counts == tuple(float(c) for c in reference["a"].counts)
    assert sum(a.current.counts) == 2_000
    colour = by_name["colour"]
    assert colour.current is not None and colour.current.categories is not None
    assert OTHER not in colour.current.categories  # no value outside the reference's categories
    assert sorted(colour.current.categories) == sorted(CATEGORIES)
    text = json.dumps([d.to_dict() for d in drifts], allow_nan=False)
    assert json.loads(text)[0]["feature"] in by_name


def test_dataset_decision_uses_the_share_threshold(reference: TableProfile) -> None:
    current = _table(5_000, seed=3, shift=0.5, tilt=True)
    _, share, dataset = check_drift(reference, current, config=DriftConfig(share_of_features=0.5))
    assert share == pytest.approx(0.4)
    assert dataset is False


def test_importance_weights_the_share(reference: TableProfile) -> None:
    current = _table(5_000, seed=3, shift=0.5, tilt=True)
    importances = {"a": 0.7, "b": 0.1, "c": 0.1, "colour": 0.1}  # flag: no importance → 0
    config = DriftConfig(weight_by_importance=True, share_of_features=0.75)
    drifts, share, dataset = check_drift(reference, current, config=config, importances=importances)
    assert share == pytest.approx(0.8)  # (0.7 + 0.1) / 1.0
    assert dataset is True
    assert {d.feature: d.importance for d in drifts}["a"] == 0.7
    assert {d.feature: d.importance for d in drifts}["flag"] is None
    _, unweighted, _ = check_drift(
        reference, current, config=DriftConfig(), importances=importances
    )
    assert unweighted == pytest.approx(0.4)


def test_threshold_overrides_every_method(reference: TableProfile) -> None:
    current = _table(5_000, seed=3, shift=0.5, tilt=True)
    drifts, _, _ = check_drift(reference, current, config=DriftConfig(threshold=10.0))
    assert all(d.threshold == 10.0 and not d.drifted for d in drifts)


# -- method choice ----------------------------------------------------------------------------
def test_method_precedence(reference: TableProfile) -> None:
    config = DriftConfig(
        method="psi",
        numeric="ks",
        per_feature={"a": "wasserstein", "colour": "chi2"},
    )
    drifts, _, _ = check_drift(reference, _table(5_000, seed=5), config=config)
    methods = {d.feature: d.method for d in drifts}
    assert methods == {"a": "wasserstein", "b": "ks", "c": "ks", "colour": "chi2", "flag": "psi"}


def test_global_method_applies_only_where_it_can(reference: TableProfile) -> None:
    drifts, _, _ = check_drift(reference, _table(5_000, seed=5), config=DriftConfig(method="ks"))
    methods = {d.feature: d.method for d in drifts}
    assert methods["a"] == "ks"
    assert methods["colour"] == "jensenshannon"  # ks has no meaning for categories: default


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (DriftConfig(per_feature={"colour": "ks"}), "per_feature.colour: 'ks' does not apply"),
        (DriftConfig(categorical="wasserstein"), "drift.categorical: 'wasserstein' does not"),
        (DriftConfig(per_feature={"nope": "ks"}), r"names \['nope'\]"),
    ],
    ids=["per-feature-kind", "kind-setting", "unknown-feature"],
)
def test_bad_method_settings_are_refused(
    reference: TableProfile, config: DriftConfig, message: str
) -> None:
    with pytest.raises(MonitorError, match=message):
        check_drift(reference, _table(100, seed=5), config=config)


def test_unknown_feature_is_refused(reference: TableProfile) -> None:
    with pytest.raises(MonitorError, match=r"\['zzz'\] are not in the reference profile"):
        check_drift(reference, _table(100, seed=5), config=DriftConfig(), features=["a", "zzz"])


def test_features_subset_and_absent_columns(reference: TableProfile) -> None:
    current = _table(3_000, seed=6).drop_columns(["b"])
    drifts, _, _ = check_drift(reference, current, config=DriftConfig(), features=["a", "b"])
    assert [d.feature for d in drifts] == ["a"]  # b is absent: quality reports it


def test_datetime_columns_are_not_checked() -> None:
    import datetime as dt

    times = pa.array([dt.datetime(2024, 1, 1) + dt.timedelta(hours=i) for i in range(50)])
    table = pa.table({"t": times, "x": np.arange(50.0)})
    drifts, _, _ = check_drift(profile_table(table), table, config=DriftConfig())
    assert [d.feature for d in drifts] == ["x"]


# -- binning ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n_edges", [5, 300], ids=["compare-path", "searchsorted-path"])
def test_bin_numeric_matches_histogram_on(n_edges: int) -> None:
    rng = np.random.default_rng(9)
    values = rng.normal(0, 2, 50_000)
    values[::97] = np.nan
    values[::101] = np.inf
    values[::103] = -np.inf
    values[:10] = np.linspace(-1, 1, 10)
    edges = np.unique(np.quantile(values[np.isfinite(values)], np.linspace(0, 1, n_edges)))
    edges = np.concatenate([edges[:3], [0.0], edges[3:]]) if 0.0 not in edges else edges
    edges.sort()
    counts, missing = bin_numeric(values, edges)
    finite = values[np.isfinite(values)]
    assert counts.tolist() == histogram_on(edges, finite).tolist()
    assert missing == values.size - finite.size
    ints = rng.integers(-50, 50, 10_000)
    assert bin_numeric(ints, edges)[0].tolist() == histogram_on(edges, ints).tolist()


def test_category_counts_on_strings_dictionaries_and_booleans() -> None:
    categories = ("b", "a", OTHER)
    strings = pa.chunked_array([["a", "b", None, "z"], ["a", "y", "y"]])
    found = category_counts(strings, categories)
    assert found.counts.tolist() == [1, 2, 3]
    assert found.missing == 1
    assert found.unseen == {"y": 2, "z": 1}
    encoded = pa.chunked_array([c.dictionary_encode() for c in strings.chunks])
    assert category_counts(encoded, categories).counts.tolist() == [1, 2, 3]
    flags = category_counts(pa.chunked_array([[True, False, None, True]]), ("true", OTHER))
    assert flags.counts.tolist() == [2, 1]
    assert flags.missing == 1


# -- chunks -----------------------------------------------------------------------------------
def test_chunked_accumulator_equals_one_shot(reference: TableProfile) -> None:
    current = _table(10_000, seed=8, shift=0.2, tilt=True)
    config = DriftConfig()
    one_shot = check_drift(reference, current, config=config)

    streamed = DriftAccumulator(reference)
    for start in range(0, current.num_rows, 3_333):
        streamed.update(current.slice(start, 3_333))
    _assert_same_result(streamed.result(config), one_shot)

    # two shards merged, and a table whose columns hold several Arrow chunks
    left, right = DriftAccumulator(reference), DriftAccumulator(reference)
    left.update(current.slice(0, 4_000))
    right.update(pa.concat_tables([current.slice(4_000, 1), current.slice(4_001)]))
    _assert_same_result(left.merge(right).result(config), one_shot)

    whole = current_histograms(reference, current)
    assert all(np.array_equal(whole[k], streamed.histograms[k]) for k in whole)
    assert set(streamed.sums) == {"a", "b", "c"}  # numeric features: per-bin sums too
    one = DriftAccumulator(reference).update(current)
    assert all(np.allclose(streamed.sums[k], one.sums[k], rtol=1e-12) for k in one.sums)


def _assert_same_result(got: tuple[Any, ...], expected: tuple[Any, ...]) -> None:
    """Counts add up exactly; per-bin sums are floats, added in another order: the statistics
    they feed (Wasserstein) agree to rounding."""
    assert got[1:] == expected[1:]
    assert [replace(d, statistic=0.0) for d in got[0]] == [
        replace(d, statistic=0.0) for d in expected[0]
    ]
    assert [d.statistic for d in got[0]] == pytest.approx([d.statistic for d in expected[0]])


def test_missing_values_are_counted_apart(reference: TableProfile) -> None:
    current = pa.table({"a": pa.array([0.1, None, np.nan, np.inf, 0.2]), "colour": ["red"] * 5})
    acc = DriftAccumulator(reference, ["a", "colour"]).update(current)
    assert int(acc.histograms["a"].sum()) == 2
    assert acc.missing["a"] == 3
    drifts, _, _ = acc.result(DriftConfig())
    a = next(d for d in drifts if d.feature == "a")
    assert a.current is not None and a.current.missing == 3


def test_merge_refuses_other_features(reference: TableProfile) -> None:
    with pytest.raises(MonitorError, match="different features"):
        DriftAccumulator(reference, ["a"]).merge(DriftAccumulator(reference, ["b"]))


# -- predictions ------------------------------------------------------------------------------
def test_prediction_drift() -> None:
    rng = np.random.default_rng(11)
    reference = profile_table(pa.table({"prediction": rng.beta(2, 5, 20_000)}))
    same = prediction_drift(reference, rng.beta(2, 5, 5_000), config=DriftConfig())
    moved = prediction_drift(reference, rng.beta(4, 4, 5_000), config=DriftConfig())
    assert same.feature == moved.feature == PREDICTION
    assert (same.drifted, moved.drifted) == (False, True)
    assert moved.method == "wasserstein"
    proba = np.column_stack([1 - rng.beta(4, 4, 500), rng.beta(4, 4, 500)])
    config = DriftConfig(per_feature={PREDICTION: "psi"})
    assert prediction_drift(reference, proba, config=config).method == "psi"


def test_prediction_drift_needs_a_prediction_profile(reference: TableProfile) -> None:
    with pytest.raises(MonitorError, match="one column"):
        prediction_drift(reference, np.zeros(3), config=DriftConfig())


# -- real data --------------------------------------------------------------------------------
def test_flights_winter_reference_against_summer_flags_the_weather(flights_path) -> None:  # type: ignore[no-untyped-def]
    table = pq.read_table(flights_path).drop_columns(["arr_delay", "late"])
    month = pc.month(table["time_hour"])
    winter = table.filter(pc.less_equal(month, 2))
    summer = table.filter(pc.and_(pc.greater_equal(month, 6), pc.less_equal(month, 7)))
    drifts, share, dataset = check_drift(profile_table(winter), summer, config=DriftConfig())
    flagged = {d.feature for d in drifts if d.drifted}
    print("flagged:", sorted(flagged), f"share={share:.2f}")
    assert {"temp", "dewp"} <= flagged
    # month: winter months against summer ones, all past the reference range (trivially first)
    assert [d.feature for d in drifts[:3]] == ["month", "temp", "dewp"]
    # precip (93 % zeros, summer rain past the winter maximum) measured from bin means, and the
    # destinations beyond the 50 most frequent (dest has 94): both drift, as on the raw data
    assert {"precip", "dest"} <= flagged
    assert flagged.isdisjoint({"distance", "carrier", "origin", "hour", "sched_dep_time"})
    assert dataset is True
