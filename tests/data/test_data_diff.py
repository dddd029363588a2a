"""``diff A B``: real drift between January and July flights, none between random halves."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kyklos.data import DatasetStore, diff_versions, js_distance, psi


def _diff(store: DatasetStore, a: pa.Table, b: pa.Table, **kwargs: object):  # type: ignore[no-untyped-def]
    va, _ = store.add("a", name="flights", table=a)
    vb, _ = store.add("b", name="flights", table=b)
    return diff_versions(va, vb, tables=(store.load(va), store.load(vb)), **kwargs)  # type: ignore[arg-type]


def test_january_to_july_drift_is_found(
    store: DatasetStore, flights_table: pa.Table, january: pa.Table
) -> None:
    start = pc.index(flights_table.column("month"), 7).as_py()
    july = flights_table.slice(start, 20000)  # the first days of July, all hours
    result = _diff(store, january, july)
    assert result.schema_changes == () or all(
        c.change in {"nullability_changed", "new_categories", "removed_categories"}
        for c in result.schema_changes
    )
    temp = result["temp"]
    assert temp.drifted and temp.psi is not None and temp.psi > 1.0
    assert temp.ks is not None and temp.ks > 0.9 and temp.ks_pvalue is not None
    assert temp.mean_delta is not None and temp.mean_delta > 30  # °F warmer in July
    late = result["late"]
    assert late.mean_a is not None and late.mean_b is not None
    assert late.mean_b - late.mean_a > 0.05  # more late arrivals in summer
    assert late.ks is not None and late.ks > 0.05 and late.ks_pvalue is not None
    assert late.ks_pvalue < 1e-6
    assert "month" in result.drifted  # a constant 1 became a constant 7
    # sorted by PSI, largest first; datetime columns (no PSI) last
    scores = [c.psi for c in result.columns if c.psi is not None]
    assert scores == sorted(scores, reverse=True)
    assert result.columns[-1].name == "time_hour"
    assert result.to_dict()["drifted"] == result.drifted


def test_two_halves_of_a_shuffled_table_do_not_drift(
    store: DatasetStore, flights_table: pa.Table
) -> None:
    sample = flights_table.take(
        np.random.default_rng(7).permutation(flights_table.num_rows)[:20000]
    )
    result = _diff(store, sample.slice(0, 10000), sample.slice(10000))
    assert result.drifted == []
    assert result.schema_changes == () or all(
        c.change in {"new_categories", "removed_categories", "nullability_changed"}
        for c in result.schema_changes
    )
    for column in result.columns:
        if column.psi is not None:
            assert column.psi < 0.05, column.name
        if column.ks is not None:
            assert column.ks < 0.03, column.name


def test_categorical_shift_and_new_categories(store: DatasetStore) -> None:
    flags = [True] * 30 + [False] * 70
    a = pa.table({"c": ["x"] * 80 + ["y"] * 20, "n": np.arange(100.0), "f": flags})
    b = pa.table(
        {"c": ["x"] * 20 + ["y"] * 60 + ["z"] * 20, "n": np.arange(100.0) + 0.5, "f": flags[::-1]}
    )
    result = _diff(store, a, b)
    f = result["f"]
    assert f.kind == "boolean" and f.details == {"true_rate_a": 0.3, "true_rate_b": 0.3}
    assert f.psi == pytest.approx(0.0) and not f.drifted
    c = result["c"]
    assert c.new_categories == ("z",) and c.vanished_categories == ()
    assert c.js is not None and 0.3 < c.js < 1.0
    assert c.drifted
    assert [ch.change for ch in result.schema_changes] == ["new_categories"]
    # without the tables, the profiles give the same answer for a small category set
    va, vb = store.get("flights@previous"), store.get("flights@latest")
    approx = diff_versions(va, vb)
    assert not approx.exact and approx["c"].psi == pytest.approx(c.psi)
    assert approx["n"].ks is None and approx["n"].psi is not None


def test_psi_and_js_reference_values() -> None:
    assert psi([50, 50], [50, 50]) == 0.0
    assert psi([90, 10], [50, 50]) == pytest.approx(0.879, abs=1e-3)
    assert psi([100, 0], [50, 50]) == pytest.approx(
        (0.5 - 1.0) * np.log(0.5 / 1.0) + (0.5 - 1e-4) * np.log(0.5 / 1e-4)
    )
    assert js_distance([1, 0], [0, 1]) == 1.0
    assert js_distance([3, 1], [3, 1]) == 0.0
