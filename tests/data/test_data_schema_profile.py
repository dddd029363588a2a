"""Schema inference and changes; reference profiles and their exact merge."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from kyklos.data import (
    TableProfile,
    TableSchema,
    canonicalize,
    histogram_on,
    infer_schema,
    profile_table,
    schema_changes,
)
from kyklos.errors import DataError


def test_schema_kinds_categories_and_nullability(january: pa.Table) -> None:
    table = canonicalize(
        january.append_column("is_late", pa.compute.equal(january.column("late"), 1))
    )
    schema = infer_schema(table, max_categories=20)
    assert schema["carrier"].kind == "categorical"
    assert schema["carrier"].categories is not None and "UA" in schema["carrier"].categories
    assert schema["origin"].categories == ["EWR", "JFK", "LGA"]
    assert schema["dest"].categories is None  # more than 20 values: high cardinality
    assert schema["temp"].kind == "numeric" and schema["temp"].arrow_type == "double"
    assert schema["month"].arrow_type == "int64"  # int32 in the file, canonical int64
    assert schema["is_late"].kind == "boolean"
    assert schema["time_hour"].kind == "datetime"
    assert schema["wind_gust"].nullable and schema["wind_gust"].null_count > 0
    assert not schema["carrier"].nullable and schema["carrier"].null_count == 0
    assert TableSchema.from_dict(json.loads(json.dumps(schema.to_dict()))) == schema


def test_schema_changes_lists_every_difference() -> None:
    old = infer_schema(
        canonicalize(pa.table({"a": [1, 2], "b": ["x", "y"], "c": [1.0, 2.0], "gone": [1, 1]}))
    )
    new = infer_schema(
        canonicalize(
            pa.table({"a": [1.5, None], "b": ["x", "z"], "c": [1.0, 2.0], "extra": [True, False]})
        )
    )
    found = {(c.column, c.change): c for c in schema_changes(old, new)}
    assert set(found) == {
        ("extra", "added"),
        ("gone", "removed"),
        ("a", "type_changed"),
        ("a", "nullability_changed"),
        ("b", "new_categories"),
        ("b", "removed_categories"),
    }
    assert found[("a", "type_changed")].message == "a: type int64 -> double"
    assert found[("b", "new_categories")].values == ["z"]
    assert schema_changes(new, new) == []


def test_histogram_bins_are_open_at_both_ends() -> None:
    counts = histogram_on([0.0, 1.0, 2.0], np.array([-9.0, 0.0, 0.99, 1.0, 2.0, 50.0, np.nan]))
    assert counts.tolist() == [1, 2, 1, 2]


def test_numeric_profile_statistics(january: pa.Table) -> None:
    table = canonicalize(january)
    profile = profile_table(table)
    temp = profile["temp"]
    values = table.column("temp").to_numpy(zero_copy_only=False)
    present = values[~np.isnan(values)]
    assert temp.count == present.size and temp.missing == np.isnan(values).sum()
    assert sum(temp.counts) == temp.count
    assert temp.min == present.min() and temp.max == present.max()
    assert temp.mean == pytest.approx(present.mean())
    assert temp.std == pytest.approx(present.std())
    assert temp.quantiles["p50"] == pytest.approx(np.median(present))
    assert 10 <= len(temp.edges) <= 22
    # a constant column still separates below / equal / above
    month = profile["month"]
    assert month.counts == (0, month.count, 0)


def test_merge_equals_the_profile_of_the_concatenation(january: pa.Table, july: pa.Table) -> None:
    reference = profile_table(canonicalize(january))
    whole = canonicalize(pa.concat_tables([january, july]))
    schema = infer_schema(whole)
    left, right = whole.slice(0, 3000), whole.slice(3000)
    parts = profile_table(left, schema, reference=reference).merge(
        profile_table(right, schema, reference=reference)
    )
    full = profile_table(whole, schema, reference=reference)
    assert parts.n_rows == full.n_rows == whole.num_rows
    for a, b in zip(parts, full, strict=True):
        assert (a.count, a.missing) == (b.count, b.missing), a.name
        assert a.counts == b.counts, a.name  # numeric histograms: exactly
        assert a.frequencies == b.frequencies or a.name == "dest", a.name  # within top-k
        assert (a.other == b.other) or a.name == "dest"
        assert (a.first, a.last) == (b.first, b.last)
        if a.kind == "numeric" and a.count:
            assert (a.min, a.max) == (b.min, b.max)
            assert a.mean == pytest.approx(b.mean)
            assert a.std == pytest.approx(b.std)
            # quantiles come back from the merged histogram, within a bin of the exact ones
            lo, hi = np.searchsorted(a.edges, [a.quantiles["p50"], b.quantiles["p50"]])
            assert abs(int(lo) - int(hi)) <= 1, a.name


def test_merge_needs_the_same_bin_edges(january: pa.Table, july: pa.Table) -> None:
    a = profile_table(canonicalize(january))
    b = profile_table(canonicalize(july))
    with pytest.raises(DataError, match=r"bin edges differ.*reference="):
        a.merge(b)


def test_profile_round_trips_through_strict_json(january: pa.Table) -> None:
    profile = profile_table(canonicalize(january))
    text = json.dumps(profile.to_dict(), allow_nan=False)  # no NaN: PostgreSQL JSON refuses it
    again = TableProfile.from_dict(json.loads(text))
    assert again == profile
    assert again.to_dict()["format"] == "kyklos.profile/1"
    with pytest.raises(DataError, match="unsupported profile format"):
        TableProfile.from_dict({"format": "kyklos.profile/99"})


def test_categorical_top_k_and_other_count(january: pa.Table) -> None:
    table = canonicalize(january)
    profile = profile_table(table, top_k=5)
    dest = profile["dest"]
    assert len(dest.frequencies) == 5
    assert sum(dest.frequencies.values()) + dest.other == dest.count == table.num_rows
    counts = list(dest.frequencies.values())
    assert counts == sorted(counts, reverse=True)
