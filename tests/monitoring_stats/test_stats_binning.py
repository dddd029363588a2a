"""The window's binning: blocked comparisons and the string lookup give exactly the counts and
sums of the plain numpy / Arrow calls, and threads change nothing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from kyklos.config.project import DriftConfig
from kyklos.data.profile import profile_table
from kyklos.errors import MonitorError
from kyklos.monitoring.drift import (
    BLOCK_MAX,
    OTHER,
    SLOT_MAX_EDGES,
    BinBuffers,
    DriftAccumulator,
    bin_numeric,
    bin_numeric_sums,
    category_counts,
    category_slots,
    check_drift,
)


def _searchsorted_bincount(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, ...]:
    """The plain way: finite values only, ``np.searchsorted`` then ``np.bincount``."""
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    index = np.searchsorted(edges, finite.astype(np.float64), side="right")
    counts = np.bincount(index, minlength=len(edges) + 1)
    sums = np.bincount(index, weights=finite.astype(np.float64), minlength=len(edges) + 1)
    return counts, sums, np.array(len(values) - len(finite))


def _values(rng: np.random.Generator, n: int, edges: np.ndarray, dtype: str) -> np.ndarray:
    """Normal values, a tenth of them exactly on an edge, with NaN, +inf and -inf sprinkled."""
    values = rng.normal(0.0, 4.0, n)
    if len(edges) and n:
        on_edge = rng.random(n) < 0.1
        values[on_edge] = rng.choice(edges, int(on_edge.sum()))
    if dtype == "int64":
        return np.round(values).astype(np.int64)
    special = rng.random(n)
    values[special < 0.02] = np.nan
    values[(special >= 0.02) & (special < 0.03)] = np.inf
    values[(special >= 0.03) & (special < 0.04)] = -np.inf
    return values.astype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64"])
@pytest.mark.parametrize("read_only", [False, True], ids=["writeable", "read-only"])
@pytest.mark.parametrize(
    "n_edges",
    [0, 1, 22, 128, SLOT_MAX_EDGES, SLOT_MAX_EDGES + 1, 300],
    ids=lambda k: f"{k}-edges",
)
@pytest.mark.parametrize("n", [1, 7, 1_000, BLOCK_MAX + 1, 150_003], ids=lambda n: f"{n}-values")
def test_bin_numeric_sums_is_searchsorted_bincount_bit_for_bit(
    dtype: str, read_only: bool, n_edges: int, n: int
) -> None:
    rng = np.random.default_rng(n_edges * 7 + n)
    edges = np.unique(np.round(rng.normal(0.0, 4.0, n_edges), 1))  # sorted; some integers
    values = _values(rng, n, edges, dtype)
    values.flags.writeable = not read_only
    before = values.copy()
    counts, sums, missing = bin_numeric_sums(values, edges)
    expected_counts, expected_sums, expected_missing = _searchsorted_bincount(values, edges)
    np.testing.assert_array_equal(counts, expected_counts)
    np.testing.assert_array_equal(sums, expected_sums)  # not close: equal
    assert missing == expected_missing
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(values, before)
    assert bin_numeric(values, edges)[0].tolist() == counts.tolist()


@pytest.mark.parametrize(
    "edges",
    [[-np.inf, 0.0, 1.0], [0.0, 1.0, np.inf], [-np.inf, np.inf], [5.0, 5.0, 5.0]],
    ids=["minus-inf-edge", "plus-inf-edge", "both-infinite", "repeated-edge"],
)
def test_infinite_and_repeated_edges(edges: list[float]) -> None:
    values = np.array([-np.inf, -1e308, -5.0, 0.0, 1.0, 5.0, np.inf, np.nan, 1.7e308])
    counts, sums, missing = bin_numeric_sums(values, np.array(edges))
    expected_counts, expected_sums, expected_missing = _searchsorted_bincount(
        values, np.array(edges)
    )
    np.testing.assert_array_equal(counts, expected_counts)
    np.testing.assert_array_equal(sums, expected_sums)
    assert missing == expected_missing == 3


def test_buffers_serve_columns_of_any_number_of_edges_in_turn() -> None:
    """The comparison matrix grows to the widest and tallest block asked for, and a smaller
    column after a larger one (stale cells left over) still bins exactly."""
    rng = np.random.default_rng(11)
    buffers = BinBuffers()
    for n_edges, n in [(3, 100_000), (200, 5_000), (0, 70_001), (40, 9), (250, 100_000)]:
        edges = np.sort(rng.normal(0.0, 3.0, n_edges))
        values = _values(rng, n, edges, "float64")
        got = bin_numeric_sums(values, edges, buffers)
        counts, sums, missing = _searchsorted_bincount(values, edges)
        np.testing.assert_array_equal(got[0], counts)
        np.testing.assert_array_equal(got[1], sums)
        assert got[2] == missing
    assert buffers.size == 100_000


def test_profile_histogram_and_window_binning_agree() -> None:
    """A window binned on a profile's own edges gives back the profile's counts and sums."""
    rng = np.random.default_rng(3)
    values = rng.lognormal(0.0, 1.0, 50_000)
    values[::50] = np.nan
    profile = profile_table(pa.table({"x": values}))["x"]
    edges = np.array(profile.edges)
    counts, sums, missing = bin_numeric_sums(values, edges)
    assert counts.tolist() == list(profile.counts)
    assert sums.tolist() == list(profile.sums)
    assert missing == profile.missing


# -- categories -------------------------------------------------------------------------------
CATEGORIES = ("b", "a", "c", OTHER)


@pytest.mark.parametrize(
    "column",
    [
        pa.chunked_array([["a", "b", None, "z"], [], ["a", "y", "y", None, "c"]]),
        pa.chunked_array([["a", "b", None, "z", "__other__"]], pa.large_string()),
        pa.chunked_array([[None, None]], pa.string()),
        pa.chunked_array([], pa.large_string()),
        pa.array(["c", "c", "q", None]),
    ],
    ids=["chunked-strings", "large-strings-and-other", "all-null", "empty", "one-array"],
)
@pytest.mark.parametrize("categories", [CATEGORIES, (OTHER,)], ids=["top-3", "no-category"])
def test_category_slots_count_as_value_counts(
    column: pa.Array | pa.ChunkedArray, categories: tuple[str, ...]
) -> None:
    known = pa.array(list(categories[:-1]), pa.large_string())
    counts, missing = category_slots(column, known, BinBuffers())
    expected = category_counts(column, categories)
    assert counts.tolist() == expected.counts.tolist()
    assert missing == expected.missing
    assert counts.dtype == np.int64


def test_category_slots_on_random_strings() -> None:
    rng = np.random.default_rng(5)
    words = np.array([f"w{i}" for i in range(40)])
    values = pa.array(words[rng.integers(0, 40, 20_000)], pa.large_string())
    values = pa.chunked_array([values.slice(0, 7_000), values.slice(7_000)])
    categories = (*[f"w{i}" for i in range(0, 40, 3)], OTHER)
    known = pa.array(list(categories[:-1]), pa.large_string())
    assert (
        category_slots(values, known)[0].tolist()
        == category_counts(values, categories).counts.tolist()
    )


# -- threads ----------------------------------------------------------------------------------
def _window(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    columns: dict[str, pa.Array | np.ndarray] = {}
    for i in range(12):
        values = rng.normal(i, 1.0 + i / 4, n)
        values[rng.random(n) < 0.01] = np.nan
        columns[f"x{i}"] = values
    columns["ints"] = pa.array(rng.integers(0, 50, n), pa.int32())
    columns["with_nulls"] = pa.array(rng.normal(0, 1, n), mask=rng.random(n) < 0.05)
    words = np.array(["red", "green", "blue", "grey", "pink"])
    columns["colour"] = pa.array(words[rng.integers(0, 5, n)], pa.large_string())
    columns["shade"] = pa.array(words[rng.integers(0, 5, n)]).dictionary_encode()
    columns["flag"] = pa.array(rng.random(n) < 0.3)
    return pa.table(columns)


@pytest.mark.parametrize("threads", [2, 3, None], ids=["2-threads", "3-threads", "auto"])
def test_threads_give_the_same_counts_and_sums(threads: int | None) -> None:
    reference = profile_table(_window(20_000, seed=1))
    window = _window(90_000, seed=2).drop_columns(["x11"])  # one feature absent
    one = DriftAccumulator(reference, threads=1).update(window)
    many = DriftAccumulator(reference, threads=threads).update(window)
    for name in one.features:
        np.testing.assert_array_equal(many.histograms[name], one.histograms[name])
        if name in one.sums:
            np.testing.assert_array_equal(many.sums[name], one.sums[name])
    assert (many.missing, many.absent, many.n_rows) == (one.missing, one.absent, one.n_rows)
    assert many.result(DriftConfig()) == one.result(DriftConfig())
    assert check_drift(reference, window, config=DriftConfig(), threads=threads) == one.result(
        DriftConfig()
    )


def test_threads_must_be_positive() -> None:
    reference = profile_table(pa.table({"x": [1.0, 2.0, 3.0]}))
    with pytest.raises(MonitorError, match="threads must be at least 1"):
        DriftAccumulator(reference, threads=0)
