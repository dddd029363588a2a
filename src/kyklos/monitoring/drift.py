"""Data drift of a window against a stored reference profile, in one pass over each column.

Nothing here reads training data: the reference side of every comparison is the
:class:`~kyklos.data.profile.TableProfile` stored with the model version. The window's columns
are binned on the reference's own bins:

* numeric: the reference's fixed ``edges`` (``len(edges) + 1`` open bins, as
  :func:`~kyklos.data.profile.histogram_on`). When the reference profile records the sum of
  each bin's values, so does the window (:func:`bin_numeric_sums`), for the Wasserstein
  distance on bin means: up to 253 edges, each value's bin is how many of the edges it
  reaches, from comparisons done a cache-sized block of values at a time (4 ms per million
  values on 22 edges, 17 ms on 128, against 25 and 44 ms for ``np.searchsorted``); beyond,
  from ``np.searchsorted``; then ``np.bincount`` counts the bins and sums their values (in the
  values' order, so the sums are those of ``np.searchsorted`` + ``np.bincount`` bit for bit).
  Without sums (older profiles), :func:`bin_numeric` counts ``x >= e`` per edge. NaN, ±inf
  and nulls are missing, as in the profile. Arrow chunks are read in place (zero-copy for
  integer and float columns without nulls, one float64 copy per chunk otherwise).
* categorical and boolean: the reference's top-k categories (up to 1,000) plus one
  ``"__other__"`` slot (every value outside them, including categories the reference never
  saw), counted with ``pyarrow.compute.value_counts``, or for string columns by looking each
  value up among the top-k (:func:`category_slots`). Before a statistic is computed, the
  reference categories too rare to be measured in this window — fewer than 5 expected values
  (reference share × the window's values; Cochran's rule for the chi-square test) — are
  pooled with ``"__other__"`` (:func:`pool_rare_categories`). A long tail is thus compared
  category by category in large windows and pooled in small ones, where its sampling noise
  alone would look like drift (chi-square false alarms, a Jensen–Shannon distance above 0.1
  between two samples of the same 1,000 categories). The pooled slot still carries drift
  into the tail or to unseen categories.

The per-feature histograms are plain count arrays, so chunks and shards add up exactly:
:class:`DriftAccumulator` streams a window of any size in bounded memory and :func:`check_drift`
is one accumulator fed one table; the columns of a large table are binned in parallel threads.
Each feature is then judged by one statistic of
:mod:`kyklos.monitoring.stats`, chosen (first match wins) by ``monitor.drift.per_feature``,
``numeric`` / ``categorical``, ``method`` (unless ``auto``, and only for features of a kind it
supports) and finally :func:`~kyklos.monitoring.stats.default_method`. The dataset drifts when
the share of drifted features — weighted by feature importance when
``weight_by_importance`` is set and importances are given — reaches ``share_of_features``.

Features with no values on one side (all missing, or absent from the window) get no statistic
and are left out of the list and of the share; :mod:`kyklos.monitoring.quality` reports them.
Datetime columns are not checked for drift.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kyklos.data.profile import ColumnProfile, TableProfile, numeric_values
from kyklos.errors import MonitorError
from kyklos.monitoring.results import Distribution, FeatureDrift
from kyklos.monitoring.stats import Statistic, default_method, get_statistic

if TYPE_CHECKING:
    from kyklos.config.project import DriftConfig

__all__ = [
    "NUMBER_PATTERN",
    "OTHER",
    "PREDICTION",
    "BinBuffers",
    "CategoryCounts",
    "DriftAccumulator",
    "bin_numeric",
    "bin_numeric_sums",
    "categories_of",
    "category_counts",
    "category_slots",
    "check_drift",
    "current_histograms",
    "numeric_chunk",
    "pool_rare_categories",
    "prediction_drift",
    "resolve_method",
]

OTHER = "__other__"
PREDICTION = "__prediction__"
COMPARE_MAX_EDGES = 128  # beyond this many edges np.searchsorted beats one comparison per edge
SLOT_MAX_EDGES = 253  # bin_numeric_sums: up to here a uint8 holds the slot (255 bounds at most)
BLOCK_BYTES = 1 << 19  # comparisons of one block of values with every bin bound: kept in cache
BLOCK_MIN, BLOCK_MAX = 1 << 12, 1 << 16  # values per block
MAX_THREADS = 4  # threads binning the columns of one chunk side by side, by default
THREAD_MIN_VALUES = 1 << 20  # a chunk of fewer values (rows × columns) is binned in one thread
WORK_BYTES_PER_ROW = 16  # one thread's work arrays (BinBuffers.take): an intp and a float64
_LOWEST = np.nextafter(-np.inf, 0.0)  # the lowest float: every finite value reaches it
MIN_EXPECTED = 5.0  # a category expected fewer times in a window is pooled with "__other__"
# what a string holding a number looks like (Arrow's cast to float64 then accepts it)
NUMBER_PATTERN = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$|^\s*[-+]?(inf|infinity|nan)\s*$"


# -- binning ----------------------------------------------------------------------------------
def bin_numeric(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, int]:
    """``(counts, missing)``: counts of ``values`` in the ``len(edges) + 1`` open bins of
    :func:`~kyklos.data.profile.histogram_on`, and how many are NaN or ±inf.

    >>> counts, missing = bin_numeric(np.array([-5.0, 0.0, 0.5, 1.0, 7.0, np.nan, np.inf]),
    ...                               np.array([0.0, 1.0]))
    >>> counts.tolist(), missing
    ([1, 2, 2], 2)
    """
    n, k = len(values), len(edges)
    if n == 0:
        return np.zeros(k + 1, dtype=np.int64), 0
    floating = values.dtype.kind == "f"
    if k > COMPARE_MAX_EDGES:
        sentinels = np.concatenate([[np.nextafter(-np.inf, 0.0)], edges, [np.inf]])
        # -inf → 0, below e0 → 1, [e(i-1), e(i)) → i + 1, at or above the last edge → k + 1,
        # +inf and NaN → k + 2
        found = np.bincount(np.searchsorted(sentinels, values, side="right"), minlength=k + 3)
        return found[1 : k + 2].astype(np.int64), int(found[0] + found[k + 2])
    mask = np.empty(n, dtype=bool)
    at_least = np.empty(k, dtype=np.int64)
    for i, edge in enumerate(edges):
        np.greater_equal(values, edge, out=mask)
        at_least[i] = np.count_nonzero(mask)
    if floating:
        np.greater(values, -np.inf, out=mask)  # finite or +inf (NaN compares False)
        above = int(np.count_nonzero(mask))
        np.equal(values, np.inf, out=mask)
        plus_inf = int(np.count_nonzero(mask))
    else:
        above, plus_inf = n, 0
    counts = np.empty(k + 1, dtype=np.int64)
    if k == 0:
        counts[0] = above - plus_inf
    else:
        counts[0] = above - at_least[0]
        counts[1:k] = at_least[:-1] - at_least[1:]
        counts[k] = at_least[-1] - plus_inf
    return counts, n - (above - plus_inf)


class BinBuffers:
    """Work arrays for :func:`bin_numeric_sums` and :func:`category_slots`, reused from chunk to
    chunk and column to column: fresh arrays of a million values cost page faults on every
    call, as much as the binning itself. ``size`` is the longest chunk served so far."""

    def __init__(self) -> None:
        self.size = 0
        self._index = np.empty(0, dtype=np.intp)
        self._weights = np.empty(0, dtype=np.float64)
        self._above = np.zeros((0, 0), dtype=bool)

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(intp index, float64 weights)`` of length ``n``."""
        if n > self.size:
            self.size = n
            self._index = np.empty(n, dtype=np.intp)
            self._weights = np.empty(n, dtype=np.float64)
        return self._index[:n], self._weights[:n]

    def above(self, rows: int, block: int) -> np.ndarray:
        """A ``rows × block`` bool matrix; ``block`` is a multiple of 8, and so is its row
        stride (each row can be viewed as uint64 words)."""
        held = self._above.shape
        if held[0] < rows or held[1] < block:
            self._above = np.zeros((max(rows, held[0]), max(block, held[1])), dtype=bool)
        return self._above[:rows, :block]


def bin_numeric_sums(
    values: np.ndarray, edges: np.ndarray, buffers: BinBuffers | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(counts, sums, missing)``: as :func:`bin_numeric`, with the sum of the values in each
    bin (NaN and ±inf are missing, in no bin and no sum). ``buffers`` are reused work arrays.

    Counts and sums are those of ``np.searchsorted`` + ``np.bincount`` on the finite values,
    bit for bit: each bin's values are added one by one in their order.

    >>> counts, sums, missing = bin_numeric_sums(
    ...     np.array([-5.0, 0.0, 0.5, 1.0, 7.0, np.nan, np.inf]), np.array([0.0, 1.0]))
    >>> counts.tolist(), sums.tolist(), missing
    ([1, 2, 2], [-5.0, 0.5, 8.0], 2)
    """
    n, k = len(values), len(edges)
    if n == 0:
        return np.zeros(k + 1, dtype=np.int64), np.zeros(k + 1), 0
    buffers = buffers or BinBuffers()
    index, weights = buffers.take(n)
    # slots: 0 NaN and -inf, 1 below the first edge, i + 1 in [e(i-1), e(i)), k + 1 at or above
    # the last edge, k + 2 +inf; a value's slot is how many of these bounds it reaches
    bounds = np.concatenate([[_LOWEST], np.maximum(edges, _LOWEST), [np.inf]])
    copy = not (values.dtype == np.float64 and values.flags.writeable)
    if k > SLOT_MAX_EDGES:
        index[:] = np.searchsorted(bounds, values, side="right")  # NaN: k + 2, past +inf
        if copy:  # np.bincount would copy a read-only (Arrow) buffer into fresh memory itself
            np.copyto(weights, values, casting="unsafe")
    else:
        _slots_by_comparison(values, bounds, buffers, index, weights if copy else None)
    found = np.bincount(index, minlength=k + 3)
    sums = np.bincount(index, weights=weights if copy else values, minlength=k + 3)
    return found[1 : k + 2].astype(np.int64), sums[1 : k + 2], int(found[0] + found[k + 2])


def _slots_by_comparison(
    values: np.ndarray,
    bounds: np.ndarray,
    buffers: BinBuffers,
    index: np.ndarray,
    weights: np.ndarray | None,
) -> None:
    """``index[i] = count(values[i] >= bounds)`` (fewer than 256 bounds), and ``weights`` a
    float64 copy of ``values`` unless None.

    Values go by blocks small enough for their comparisons with every bound to stay in the
    core's cache: one broadcast comparison into a bool matrix, then the sum down its columns,
    eight at a time: each row viewed as uint64 words adds eight 0/1 bytes per addition, and no
    byte can carry into the next while the sum stays below 256.
    """
    n, rows = len(values), len(bounds)
    block = min(BLOCK_MAX, max(BLOCK_MIN, BLOCK_BYTES // rows)) & ~7
    above = buffers.above(rows, block)
    words = above.view(np.uint64)
    slot = np.zeros(block, dtype=np.uint8)
    slot_words = slot.view(np.uint64)
    column = bounds[:, np.newaxis]
    for start in range(0, n, block):
        stop = min(start + block, n)
        width, part = stop - start, values[np.newaxis, start:stop]
        np.greater_equal(part, column, out=above[:, :width])
        np.add.reduce(words[:, : (width + 7) // 8], axis=0, out=slot_words[: (width + 7) // 8])
        np.copyto(index[start:stop], slot[:width])
        if weights is not None:
            np.copyto(weights[start:stop], part[0], casting="unsafe")


def numeric_chunk(chunk: pa.Array) -> tuple[np.ndarray, int]:
    """``(values, not_numbers)``: one Arrow chunk of an expected-numeric column as numpy.

    Integer and float chunks without nulls are read in place; others become one float64 copy
    with NaN for nulls. String chunks are parsed; the values that are not numbers become NaN
    and are counted in ``not_numbers``.
    """
    kind = chunk.type
    if (pa.types.is_integer(kind) or pa.types.is_floating(kind)) and chunk.null_count == 0:
        return np.asarray(chunk.to_numpy(zero_copy_only=False)), 0
    if pa.types.is_dictionary(kind):
        chunk = chunk.dictionary_decode()
        kind = chunk.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        number = pc.match_substring_regex(chunk, NUMBER_PATTERN, ignore_case=True)
        not_numbers = int(pc.sum(pc.invert(number)).as_py() or 0)
        parsed = pc.cast(pc.utf8_trim_whitespace(pc.if_else(number, chunk, None)), pa.float64())
        return numeric_values(parsed), not_numbers
    try:
        return numeric_values(chunk), 0
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. a list column
        return np.full(len(chunk), np.nan), len(chunk) - chunk.null_count


@dataclass(frozen=True)
class CategoryCounts:
    """A column's values counted against the reference categories (one Arrow pass)."""

    counts: np.ndarray  # aligned with ``categories_of(reference)``: top-k, then "__other__"
    missing: int
    distinct: int  # distinct non-missing values in the column
    first: str | None  # one present value (all of them, when ``distinct == 1``)
    unseen: dict[str, int]  # the most frequent values outside the reference's top-k (≤ 20)


def category_counts(
    column: pa.Array | pa.ChunkedArray, categories: Sequence[str], *, unseen_top: int = 20
) -> CategoryCounts:
    """Count a categorical (string, dictionary, boolean or other) column on ``categories``, whose
    last entry is :data:`OTHER`: every value not among the others is counted there."""
    k = len(categories)
    missing = int(column.null_count)
    if pa.types.is_boolean(column.type):
        trues = int(pc.sum(column).as_py() or 0)
        present = len(column) - missing
        names = [name for name, count in (("false", present - trues), ("true", trues)) if count]
        values = pa.array(names, pa.large_string())
        counts = np.array([c for c in (present - trues, trues) if c], dtype=np.int64)
    else:
        found = pc.value_counts(column)
        values = found.field("values")
        counts = np.asarray(found.field("counts").to_numpy(zero_copy_only=False), dtype=np.int64)
        if values.null_count:
            valid = values.is_valid()
            values, counts = values.filter(valid), counts[valid.to_numpy(zero_copy_only=False)]
        if not pa.types.is_large_string(values.type):
            values = pc.cast(values, pa.large_string())
    known = pa.array(list(categories[:-1]), pa.large_string())
    index = np.asarray(
        pc.fill_null(pc.index_in(values, value_set=known), -1).to_numpy(zero_copy_only=False),
        dtype=np.int64,
    )
    slot = np.where(index < 0, k - 1, index)
    aligned = np.bincount(slot, weights=counts, minlength=k).astype(np.int64)
    unseen: dict[str, int] = {}
    outside = np.flatnonzero(index < 0)
    if outside.size:
        top = outside[np.argsort(-counts[outside], kind="stable")[:unseen_top]]
        names = values.take(pa.array(top)).to_pylist()
        unseen = {str(name): int(counts[i]) for name, i in zip(names, top, strict=True)}
    first = str(values[0].as_py()) if len(values) else None
    return CategoryCounts(aligned, missing, len(values), first, unseen)


def category_slots(
    column: pa.Array | pa.ChunkedArray, known: pa.Array, buffers: BinBuffers | None = None
) -> tuple[np.ndarray, int]:
    """``(counts, missing)``: the ``counts`` of :func:`category_counts` for a string column,
    whose ``known`` categories are the reference's top-k (``categories[:-1]``, large strings).

    Each value is looked up in ``known`` (one hashing pass, ``pyarrow.compute.index_in``; a
    fifth faster than ``value_counts``, which builds a table of every distinct value) and the
    slots are counted; values not found go to the last slot, :data:`OTHER`.

    >>> counts, missing = category_slots(
    ...     pa.array(["a", "b", None, "z", "a"]), pa.array(["b", "a"], pa.large_string()))
    >>> counts.tolist(), missing
    ([1, 2, 1], 1)
    """
    k = len(known) + 1
    missing = int(column.null_count)
    # not found: the last slot; nulls too, taken off it below
    found = pc.fill_null(pc.index_in(column, value_set=known), k - 1)
    chunks = found.chunks if isinstance(found, pa.ChunkedArray) else [found]
    index, _ = (buffers or BinBuffers()).take(len(column))
    start = 0
    for chunk in chunks:
        np.copyto(index[start : start + len(chunk)], chunk.to_numpy(zero_copy_only=False))
        start += len(chunk)
    counts = np.bincount(index, minlength=k).astype(np.int64)
    counts[k - 1] -= missing
    return counts, missing


def categories_of(column: ColumnProfile) -> tuple[str, ...]:
    """The categories a categorical reference column is compared on: its top-k, then OTHER."""
    return (*column.frequencies, OTHER)


def pool_rare_categories(
    ref_counts: np.ndarray, cur_counts: np.ndarray, *, min_expected: float = MIN_EXPECTED
) -> tuple[np.ndarray, np.ndarray]:
    """Category counts (the last slot being OTHER) with every category that the window would
    hold fewer than ``min_expected`` times at the reference's share pooled into OTHER, on both
    sides; unchanged when every category is frequent enough.

    >>> ref, cur = pool_rare_categories(np.array([900, 60, 40, 0]), np.array([90, 5, 1, 4]))
    >>> ref.tolist(), cur.tolist()
    ([900, 60, 40], [90, 5, 5])
    """
    ref_counts = np.asarray(ref_counts)
    cur_counts = np.asarray(cur_counts)
    total = float(ref_counts.sum())
    if total <= 0:
        return ref_counts, cur_counts
    rare = ref_counts[:-1] * (float(cur_counts.sum()) / total) < min_expected
    if not rare.any():
        return ref_counts, cur_counts
    keep = np.append(~rare, False)

    def pooled(counts: np.ndarray) -> np.ndarray:
        return np.append(counts[keep], counts[:-1][rare].sum() + counts[-1])

    return pooled(ref_counts), pooled(cur_counts)


# -- features ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    """How one feature is binned: its reference column, bins and reference counts."""

    name: str
    kind: str  # "numeric" | "categorical" (booleans are categorical here)
    profile: ColumnProfile
    edges: np.ndarray | None
    categories: tuple[str, ...] | None
    ref_counts: np.ndarray
    ref_sums: np.ndarray | None = None  # numeric, when the profile records per-bin sums
    ref_std: float | None = None  # with ref_sums: the reference's standard deviation
    known: pa.Array | None = None  # categorical: the top-k categories, for a string lookup

    @property
    def n_bins(self) -> int:
        return len(self.ref_counts)

    def reference_distribution(self, keep_other: bool) -> Distribution:
        return _distribution(self, self.ref_counts, self.profile.missing, keep_other)


def _spec(column: ColumnProfile) -> _Spec:
    if column.kind == "numeric":
        edges = np.asarray(column.edges, dtype=np.float64)
        counts = np.asarray(column.counts, dtype=np.int64)
        if len(counts) != len(edges) + 1:  # an empty column profiled without edges
            counts = np.zeros(len(edges) + 1, dtype=np.int64)
        if len(column.sums) != len(counts):  # profiles from before per-bin sums existed
            return _Spec(column.name, "numeric", column, edges, None, counts)
        sums = np.asarray(column.sums, dtype=np.float64)
        return _Spec(
            column.name, "numeric", column, edges, None, counts, sums, _std(column, counts, sums)
        )
    categories = categories_of(column)
    counts = np.array([*column.frequencies.values(), column.other], dtype=np.int64)
    known = pa.array(list(categories[:-1]), pa.large_string())
    return _Spec(column.name, "categorical", column, None, categories, counts, known=known)


def _std(column: ColumnProfile, counts: np.ndarray, sums: np.ndarray) -> float | None:
    """The reference's population standard deviation, from its count, sum and sum of squares;
    never below the spread of its bin means (a lower bound that survives the cancellation of
    ``sumsq / n - mean²`` for values far from zero)."""
    if not column.count:
        return None
    mean = column.sum / column.count
    means = np.divide(sums, counts, out=np.zeros(len(counts)), where=counts > 0)
    between = float(np.dot(counts, (means - mean) ** 2)) / column.count
    return float(np.sqrt(max(column.sumsq / column.count - mean * mean, between, 0.0)))


def _specs(reference: TableProfile, features: Sequence[str] | None) -> list[_Spec]:
    if features is None:
        names = [c.name for c in reference if c.kind != "datetime"]
    else:
        unknown = [f for f in features if f not in reference]
        if unknown:
            raise MonitorError(
                f"feature(s) {unknown} are not in the reference profile; it has "
                f"{reference.names}. Hint: check the feature names, or the model version"
            )
        names = [f for f in dict.fromkeys(features) if reference[f].kind != "datetime"]
    return [_spec(reference[name]) for name in names]


def _distribution(spec: _Spec, counts: np.ndarray, missing: int, keep_other: bool) -> Distribution:
    if spec.kind == "numeric":
        return Distribution(
            kind="numeric",
            counts=tuple(float(c) for c in counts),
            edges=tuple(float(e) for e in spec.edges) if spec.edges is not None else (),
            missing=int(missing),
        )
    categories = spec.categories or (OTHER,)
    shown = len(categories) if keep_other else len(categories) - 1
    return Distribution(
        kind="categorical",
        counts=tuple(float(c) for c in counts[:shown]),
        categories=tuple(categories[:shown]),
        missing=int(missing),
    )


def resolve_method(feature: str, kind: str, config: DriftConfig, n_current: int) -> Statistic:
    """The statistic for one feature: ``per_feature``, then ``numeric`` / ``categorical``, then
    ``method`` (unless ``auto``, and when it supports the kind), then the default."""
    kind = "categorical" if kind == "boolean" else kind
    explicit = config.per_feature.get(feature)
    source = f"monitor.drift.per_feature.{feature}"
    if explicit is None:
        explicit = config.numeric if kind == "numeric" else config.categorical
        source = f"monitor.drift.{kind}"
    if explicit is not None:
        statistic = get_statistic(explicit)
        if kind not in statistic.kinds:
            raise MonitorError(
                f"{source}: {explicit!r} does not apply to {kind} features (it takes "
                f"{', '.join(sorted(statistic.kinds))}). Hint: use one of "
                f"{', '.join(_supporting(kind))}"
            )
        return statistic
    if config.method != "auto":
        statistic = get_statistic(config.method)
        if kind in statistic.kinds:
            return statistic
    return get_statistic(default_method(kind, n_current))


def _supporting(kind: str) -> list[str]:
    from kyklos.monitoring.stats import STATISTICS

    return sorted(name for name, stat in STATISTICS.items() if kind in stat.kinds)


# -- the accumulator --------------------------------------------------------------------------
_Binned = tuple[np.ndarray, np.ndarray | None, int]  # counts, per-bin sums or None, missing


class DriftAccumulator:
    """Current-window histograms of the features of ``reference``, fed chunk by chunk.

    ``update(chunk)`` bins one Arrow table (any subset of rows; columns by name) and adds its
    counts; ``merge(other)`` adds another accumulator's (a shard of the same window);
    ``result(config)`` judges the features. Memory is bounded by the bins, not the rows: a
    10M-row × 200-column window streams in chunks.

    >>> import pyarrow as pa
    >>> from kyklos.data.profile import profile_table
    >>> reference = profile_table(pa.table({"x": [float(i) for i in range(100)]}))
    >>> acc = DriftAccumulator(reference)
    >>> acc.update(pa.table({"x": [1.0, 2.0]})).update(pa.table({"x": [3.0, None]})).n_rows
    4
    >>> int(acc.histograms["x"].sum()), acc.missing["x"]
    (3, 1)
    """

    def __init__(
        self,
        reference: TableProfile,
        features: Sequence[str] | None = None,
        *,
        threads: int | None = None,
    ) -> None:
        if threads is not None and threads < 1:
            raise MonitorError(
                f"threads must be at least 1, got {threads}. Hint: leave it None to use up to "
                f"{MAX_THREADS} of this machine's cores on large chunks, or 1 for none"
            )
        self.reference = reference
        self.threads = threads
        self._specs = _specs(reference, features)
        self.features: tuple[str, ...] = tuple(s.name for s in self._specs)
        self.n_rows = 0
        self.histograms: dict[str, np.ndarray] = {
            s.name: np.zeros(s.n_bins, dtype=np.int64) for s in self._specs
        }
        # per-bin sums of the numeric features whose reference records them
        self.sums: dict[str, np.ndarray] = {
            s.name: np.zeros(s.n_bins) for s in self._specs if s.ref_sums is not None
        }
        self.missing: dict[str, int] = dict.fromkeys(self.features, 0)
        self.absent: dict[str, int] = dict.fromkeys(self.features, 0)  # rows lacking the column
        self._buffers: list[BinBuffers] = []  # one set per thread binning columns

    def update(self, chunk: pa.Table) -> DriftAccumulator:
        """Add the counts of one table of window rows; returns ``self``.

        Its columns are binned side by side, each in one thread (numpy and Arrow release the
        GIL while they work): ``threads`` of them, or when None, for a chunk of
        :data:`THREAD_MIN_VALUES` values or more, as many as the usable cores, up to
        :data:`MAX_THREADS` and as long as the extra threads' work arrays (16 bytes a row each)
        take at most a quarter of the chunk's size. Each column is binned exactly as in one
        thread, so the counts and sums are the same.
        """
        n = chunk.num_rows
        self.n_rows += n
        present = []
        for spec in self._specs:
            if spec.name in chunk.column_names:
                present.append(spec)
            else:
                self.absent[spec.name] += n
                self.missing[spec.name] += n
        for spec, (counts, sums, missing) in zip(
            present, self._bin_columns(chunk, present), strict=True
        ):
            self.histograms[spec.name] += counts
            if sums is not None:
                self.sums[spec.name] += sums
            self.missing[spec.name] += missing
        return self

    def _bin_columns(self, chunk: pa.Table, specs: list[_Spec]) -> list[_Binned]:
        """:func:`_bin_column` of each spec's column, in the order of ``specs``."""
        if self.threads is not None:
            workers = self.threads
        elif chunk.num_rows * len(specs) >= THREAD_MIN_VALUES:
            # every thread past the first adds its work arrays: together at most a quarter of
            # the chunk's size
            spare = chunk.nbytes // (4 * WORK_BYTES_PER_ROW * chunk.num_rows)
            workers = min(MAX_THREADS, _usable_cores(), 1 + spare)
        else:
            workers = 1
        workers = max(1, min(workers, len(specs)))
        while len(self._buffers) < workers:
            self._buffers.append(BinBuffers())
        if workers == 1:
            return [_bin_column(s, chunk.column(s.name), self._buffers[0]) for s in specs]
        done: dict[int, _Binned] = {}
        # popped from the end: the categorical columns first (the slowest), then the numeric
        # ones even out the threads' ends
        queue = sorted(range(len(specs)), key=lambda i: specs[i].kind == "categorical")
        lock = threading.Lock()

        def work(buffers: BinBuffers) -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    i = queue.pop()
                done[i] = _bin_column(specs[i], chunk.column(specs[i].name), buffers)

        with ThreadPoolExecutor(workers, thread_name_prefix="kyklos-drift") as pool:
            for future in [pool.submit(work, b) for b in self._buffers[:workers]]:
                future.result()
        return [done[i] for i in range(len(specs))]

    def merge(self, other: DriftAccumulator) -> DriftAccumulator:
        """Add the counts of an accumulator of the same reference and features; returns ``self``."""
        if other.features != self.features or any(
            len(self.histograms[f]) != len(other.histograms[f]) for f in self.features
        ):
            raise MonitorError(
                "cannot merge drift accumulators of different features or bins. "
                "Hint: build both from the same reference profile and feature list"
            )
        self.n_rows += other.n_rows
        for name in self.features:
            self.histograms[name] += other.histograms[name]
            if name in self.sums:
                self.sums[name] += other.sums[name]
            self.missing[name] += other.missing[name]
            self.absent[name] += other.absent[name]
        return self

    def distributions(self) -> dict[str, tuple[Distribution, Distribution]]:
        """Reference and current histograms per feature (for reports)."""
        out = {}
        for spec in self._specs:
            current = self.histograms[spec.name]
            keep = spec.kind == "numeric" or bool(spec.ref_counts[-1] or current[-1])
            out[spec.name] = (
                spec.reference_distribution(keep),
                _distribution(spec, current, self.missing[spec.name], keep),
            )
        return out

    def result(
        self, config: DriftConfig, importances: Mapping[str, float] | None = None
    ) -> tuple[list[FeatureDrift], float, bool]:
        """``(features most drifted first, share of drifted features, dataset drift)``."""
        _check_per_feature(config, self.reference)
        judged: list[tuple[float, FeatureDrift]] = []
        distributions = self.distributions()
        for spec in self._specs:
            current = self.histograms[spec.name]
            if not spec.ref_counts.sum() or not current.sum():
                continue
            statistic = resolve_method(spec.name, spec.kind, config, self.n_rows)
            judged.append(
                _judge(
                    spec.name,
                    spec,
                    statistic,
                    current,
                    self.sums.get(spec.name),
                    config,
                    distributions[spec.name],
                    None if importances is None else importances.get(spec.name),
                )
            )
        judged.sort(key=lambda item: (not item[1].drifted, -item[0], item[1].feature))
        drifts = [drift for _, drift in judged]
        share = _share(drifts, importances if config.weight_by_importance else None)
        return drifts, share, bool(drifts) and share >= config.share_of_features


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _bin_column(spec: _Spec, column: pa.ChunkedArray, buffers: BinBuffers) -> _Binned:
    """``(counts, per-bin sums or None, missing)`` of one column on the spec's bins."""
    if spec.kind == "numeric":
        assert spec.edges is not None
        counts = np.zeros(spec.n_bins, dtype=np.int64)
        sums = np.zeros(spec.n_bins) if spec.ref_sums is not None else None
        missing = 0
        for chunk in column.chunks:
            values, _ = numeric_chunk(chunk)
            if sums is None:
                chunk_counts, chunk_missing = bin_numeric(values, spec.edges)
            else:
                chunk_counts, chunk_sums, chunk_missing = bin_numeric_sums(
                    values, spec.edges, buffers
                )
                sums += chunk_sums
            counts += chunk_counts
            missing += chunk_missing  # drift counts non-numbers as missing; quality flags them
        return counts, sums, missing
    assert spec.categories is not None and spec.known is not None
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        counts, missing = category_slots(column, spec.known, buffers)
        return counts, None, missing
    found = category_counts(column, spec.categories, unseen_top=0)
    return found.counts, None, found.missing


def _judge(
    name: str,
    spec: _Spec,
    statistic: Statistic,
    current: np.ndarray,
    current_sums: np.ndarray | None,
    config: DriftConfig,
    distributions: tuple[Distribution, Distribution],
    importance: float | None,
) -> tuple[float, FeatureDrift]:
    threshold = config.threshold if config.threshold is not None else statistic.default_threshold
    if spec.kind == "categorical":
        ref_counts, cur_counts = pool_rare_categories(spec.ref_counts, current)
        value, p_value = statistic.compute(ref_counts, cur_counts)
    else:
        value, p_value = statistic.compute(
            spec.ref_counts,
            current,
            edges=spec.edges,
            ref_sums=spec.ref_sums,
            cur_sums=current_sums,
            ref_std=spec.ref_std,
        )
    drift = FeatureDrift(
        feature=name,
        kind=spec.kind,
        method=statistic.name,
        statistic=value,
        threshold=threshold,
        drifted=statistic.drifted(value, p_value, threshold),
        p_value=p_value,
        importance=None if importance is None else float(importance),
        reference=distributions[0],
        current=distributions[1],
    )
    return statistic.severity(value, p_value, threshold), drift


def _share(drifts: Sequence[FeatureDrift], importances: Mapping[str, float] | None) -> float:
    if not drifts:
        return 0.0
    weights = [1.0] * len(drifts)
    if importances is not None:
        weighted = [max(float(importances.get(d.feature, 0.0)), 0.0) for d in drifts]
        if sum(weighted) > 0:
            weights = weighted
    drifted = sum(w for w, d in zip(weights, drifts, strict=True) if d.drifted)
    return drifted / sum(weights)


def _check_per_feature(config: DriftConfig, reference: TableProfile) -> None:
    unknown = [f for f in config.per_feature if f not in reference and f != PREDICTION]
    if unknown:
        raise MonitorError(
            f"monitor.drift.per_feature names {unknown}, which the reference profile does not "
            f"have; its features are {reference.names}. Hint: fix the names in kyklos.yaml"
        )


# -- public entry points ----------------------------------------------------------------------
def current_histograms(reference: TableProfile, current: pa.Table) -> dict[str, np.ndarray]:
    """Per feature, the counts of ``current`` on the reference's bins (one pass per column).

    Numeric: ``len(edges) + 1`` counts; categorical: counts on :func:`categories_of` (top-k,
    then ``"__other__"``). Missing values are not counted (use :class:`DriftAccumulator`, which
    keeps them too). Histograms of chunks of one window add up to the window's.
    """
    return DriftAccumulator(reference).update(current).histograms


def check_drift(
    reference: TableProfile,
    current: pa.Table,
    *,
    config: DriftConfig,
    features: Sequence[str] | None = None,
    importances: Mapping[str, float] | None = None,
    threads: int | None = None,
) -> tuple[list[FeatureDrift], float, bool]:
    """Drift of every feature of ``current`` against ``reference``.

    Returns the per-feature results sorted most drifted first (drifted ones first, then by how
    far past its threshold each is), the share of drifted features (weighted by
    ``importances`` when ``config.weight_by_importance``; features without an importance weigh
    0, and all weigh 1 if none has a positive one) and the dataset verdict
    ``share >= config.share_of_features``. ``features`` defaults to the profile's non-datetime
    columns. ``threads`` bin the columns side by side (:meth:`DriftAccumulator.update`; None:
    chosen from the table's size and the usable cores).
    """
    accumulator = DriftAccumulator(reference, features, threads=threads).update(current)
    return accumulator.result(config, importances)


def prediction_drift(
    reference: TableProfile, predictions: np.ndarray, *, config: DriftConfig
) -> FeatureDrift:
    """Drift of the model's outputs against the stored prediction profile (feature
    ``"__prediction__"``; its method: ``per_feature["__prediction__"]``, then as for features).

    ``predictions`` are what the profile holds: the positive-class probability of a binary
    classifier, the top probability of a multiclass one (a 2-D array is reduced the same way),
    the prediction of a regressor.
    """
    if len(reference.columns) != 1:
        raise MonitorError(
            f"a prediction profile has one column, this one has {reference.names}. "
            "Hint: pass profile['predictions'] of the model version"
        )
    column = reference.columns[0]
    values = np.asarray(predictions)
    if values.ndim == 2:
        values = values[:, 1] if values.shape[1] == 2 else values.max(axis=1)
    if values.ndim != 1:
        raise MonitorError(f"predictions must be one value per row, got shape {values.shape}")
    spec = _spec(column)
    array = pa.array(values if values.dtype.kind in "fiub" else values.astype(str))
    table = pa.table({column.name: array})
    accumulator = DriftAccumulator(reference).update(table)
    current = accumulator.histograms[column.name]
    if not spec.ref_counts.sum() or not current.sum():
        raise MonitorError(
            "prediction drift needs predictions on both sides: the "
            f"{'reference profile' if not spec.ref_counts.sum() else 'window'} has none"
        )
    statistic = resolve_method(PREDICTION, spec.kind, config, accumulator.n_rows)
    _, drift = _judge(
        PREDICTION,
        spec,
        statistic,
        current,
        accumulator.sums.get(column.name),
        config,
        accumulator.distributions()[column.name],
        None,
    )
    return drift
