"""Reference profiles: small, mergeable sketches of a table, computed once and stored.

Per column (see :class:`ColumnProfile`):

* numeric: a histogram on fixed bin edges (the quantiles of the data it was first computed on:
  about 20 bins from min to max, plus an open bin below the min and one above the max) with the
  sum of the values in each bin (so every bin's mean is known: the normalised Wasserstein
  distance is computed from bin means, exact to a few thousandths even when a window leaves the
  reference's range), the missing count, min, max, count/sum/sum of squares (so means and
  standard deviations merge exactly) and quantiles p01..p99 (exact when computed, interpolated
  from the histogram after a merge). Non-finite values (±inf) count as missing. Profiles stored
  before the per-bin sums existed read with ``sums == ()``.
* categorical and boolean: the frequencies of the ``top_k`` (default 1,000) most frequent
  values plus an ``other`` count of the rest, and the missing count.
* datetime: first and last value, and the missing count.

Two profiles computed on the same bin edges merge by adding counts
(:meth:`TableProfile.merge`); :func:`profile_table` takes ``reference=`` to reuse a profile's
edges, which is how windows of new data are profiled for drift without touching the training
data again. :func:`histogram_on` is the one binning function everything shares.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kyklos._version import __version__
from kyklos.data.schema import Kind, TableSchema, infer_schema, kind_of
from kyklos.errors import DataError

__all__ = [
    "PROFILE_FORMAT",
    "QUANTILES",
    "ColumnProfile",
    "TableProfile",
    "bin_edges",
    "histogram_on",
    "histogram_sums_on",
    "numeric_values",
    "profile_column",
    "profile_table",
]

PROFILE_FORMAT = "kyklos.profile/1"
QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99)
DEFAULT_BINS = 20
DEFAULT_TOP_K = 1000  # categories kept per column; the rest is counted in ``other``


def _qname(q: float) -> str:
    return f"p{round(q * 100):02d}"


# -- shared numeric helpers -------------------------------------------------------------------
def histogram_on(edges: Sequence[float] | np.ndarray, values: np.ndarray) -> np.ndarray:
    """Counts of ``values`` in ``len(edges) + 1`` bins on fixed, increasing ``edges``.

    Bin 0 is ``(-inf, e0)``, bin ``i`` is ``[e(i-1), e(i))`` and the last bin is ``[e_last, inf)``.
    NaN values are not counted.

    >>> histogram_on([0.0, 1.0], np.array([-5.0, 0.0, 0.5, 1.0, 7.0, np.nan])).tolist()
    [1, 2, 2]
    """
    return histogram_sums_on(edges, values)[0]


def histogram_sums_on(
    edges: Sequence[float] | np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, sums)`` of ``values`` in the bins of :func:`histogram_on`: how many values
    fall in each bin and their sum (so ``sums / counts`` is each bin's mean). NaN values are
    not counted.

    >>> counts, sums = histogram_sums_on([0.0, 1.0], np.array([-5.0, 0.0, 0.5, 1.0, 7.0]))
    >>> counts.tolist(), sums.tolist()
    ([1, 2, 2], [-5.0, 0.5, 8.0])
    """
    edges_arr = np.asarray(edges, dtype=np.float64)
    data = np.asarray(values, dtype=np.float64)
    data = data[~np.isnan(data)]
    index = np.searchsorted(edges_arr, data, side="right")
    counts = np.bincount(index, minlength=len(edges_arr) + 1).astype(np.int64)
    return counts, np.bincount(index, weights=data, minlength=len(edges_arr) + 1)


def bin_edges(values: np.ndarray, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """Bin edges for the finite ``values``: their distinct quantiles (min and max included) and
    the next float above the max, so that the upper open bin holds only values above the max
    (a constant column gets three bins: below, equal, above).

    When values repeat so much that a quarter of the quantiles or more coincide (a column
    that is mostly zeros), the bins they would have taken go to the quantiles of the other values (whose minimum is an
    edge, so each repeated value keeps a bin of its own): the rest of the distribution is not
    squeezed into a few wide bins.

    >>> bin_edges(np.array([3.0, 3.0]))[0], len(bin_edges(np.array([3.0, 3.0])))
    (np.float64(3.0), 2)
    >>> mostly_zeros = np.concatenate([np.zeros(90), np.arange(1.0, 11.0)])
    >>> bin_edges(mostly_zeros, 5).tolist()[:-1]  # the quantiles alone: [0.0, 10.0]
    [0.0, 1.0, 3.25, 5.5, 7.75, 10.0]
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.empty(0, dtype=np.float64)
    edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, n_bins + 1)))
    if len(edges) < 0.75 * (n_bins + 1):  # a quarter of the bins or more collapsed
        distinct, counts = np.unique(finite, return_counts=True)
        if len(distinct) > len(edges):
            heavy = distinct[counts * n_bins >= finite.size]  # each holds a bin's worth or more
            rest = finite[~np.isin(finite, heavy)]
            if rest.size:
                levels = np.linspace(0.0, 1.0, max(n_bins - len(heavy), 1) + 1)
                found = np.quantile(rest, levels)
                edges = np.unique(np.concatenate([edges, heavy, found]))
    return np.append(edges, np.nextafter(edges[-1], np.inf))


def numeric_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A float64 numpy array of a numeric or datetime column; nulls become NaN."""
    kind = column.type
    if pa.types.is_null(kind):
        return np.full(len(column), np.nan)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        column = (
            column.cast(pa.int64())
            if pa.types.is_timestamp(kind)
            else column.cast(pa.int32()).cast(pa.int64())
        )
    values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64)


# -- column profile ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnProfile:
    """The sketch of one column; which fields are set depends on ``kind``."""

    name: str
    kind: Kind
    count: int  # values present (non-missing)
    missing: int
    # numeric
    edges: tuple[float, ...] = ()
    counts: tuple[int, ...] = ()
    sums: tuple[float, ...] = ()  # per bin, as ``counts``; () in profiles from before they existed
    min: float | None = None
    max: float | None = None
    sum: float = 0.0
    sumsq: float = 0.0
    quantiles: dict[str, float] = field(default_factory=dict)
    # categorical, boolean
    frequencies: dict[str, int] = field(default_factory=dict)
    other: int = 0
    top_k: int = DEFAULT_TOP_K
    # datetime (ISO 8601)
    first: str | None = None
    last: str | None = None

    @property
    def n(self) -> int:
        return self.count + self.missing

    @property
    def missing_rate(self) -> float:
        return self.missing / self.n if self.n else 0.0

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.kind == "numeric" and self.count else None

    @property
    def std(self) -> float | None:
        """Population standard deviation (from count, sum and sum of squares)."""
        mean = self.mean
        if mean is None:
            return None
        return float(np.sqrt(max(self.sumsq / self.count - mean * mean, 0.0)))

    def merge(self, other: ColumnProfile) -> ColumnProfile:
        """The profile of both columns' rows together (see :meth:`TableProfile.merge`)."""
        if (other.name, other.kind) != (self.name, self.kind):
            raise DataError(
                f"cannot merge the profile of {other.name!r} ({other.kind}) into "
                f"{self.name!r} ({self.kind})"
            )
        count, missing = self.count + other.count, self.missing + other.missing
        if self.kind == "numeric":
            if not self.count or not other.count:
                base = self if self.count else other
                return replace(base, count=count, missing=missing)
            if self.edges != other.edges:
                raise DataError(
                    f"cannot merge profiles of column {self.name!r}: their bin edges differ. "
                    "Hint: profile the second table with profile_table(..., reference=first)"
                )
            counts = tuple(a + b for a, b in zip(self.counts, other.counts, strict=True))
            sums: tuple[float, ...] = ()
            if self.sums and other.sums:  # one side without them: the merge has none either
                sums = tuple(a + b for a, b in zip(self.sums, other.sums, strict=True))
            lo = min(_f(self.min), _f(other.min))
            hi = max(_f(self.max), _f(other.max))
            merged = replace(
                self,
                count=count,
                missing=missing,
                counts=counts,
                sums=sums,
                min=lo,
                max=hi,
                sum=self.sum + other.sum,
                sumsq=self.sumsq + other.sumsq,
            )
            return replace(merged, quantiles=merged.approx_quantiles())
        if self.kind in {"categorical", "boolean"}:
            freq = dict(self.frequencies)
            for key, value in other.frequencies.items():
                freq[key] = freq.get(key, 0) + value
            top_k = max(self.top_k, other.top_k)
            kept = dict(_top(freq.items(), top_k))
            other_count = self.other + other.other + sum(freq.values()) - sum(kept.values())
            return replace(
                self, count=count, missing=missing, frequencies=kept, other=other_count, top_k=top_k
            )
        first = min((v for v in (self.first, other.first) if v is not None), default=None)
        last = max((v for v in (self.last, other.last) if v is not None), default=None)
        return replace(self, count=count, missing=missing, first=first, last=last)

    # -- numeric approximations from the histogram -----------------------------------------
    def _cdf_knots(self) -> tuple[np.ndarray, np.ndarray]:
        """Knots of a piecewise-linear CDF through the histogram (outer bins end at min/max)."""
        edges = np.asarray(self.edges, dtype=np.float64)
        lo, hi = _f(self.min), _f(self.max)
        xs = np.concatenate([[min(lo, edges[0])], edges, [max(hi, edges[-1])]])
        ys = np.concatenate([[0.0], np.cumsum(self.counts, dtype=np.float64)])
        return xs, ys

    def approx_quantiles(self, levels: Sequence[float] = QUANTILES) -> dict[str, float]:
        """Quantiles interpolated from the histogram (used after a merge)."""
        if not self.count or not self.edges:
            return {}
        xs, ys = self._cdf_knots()
        targets = np.asarray(levels) * ys[-1]
        # invert the CDF: the first knot at which the cumulative count reaches each target
        values = np.interp(targets, ys, xs)
        return {_qname(q): float(v) for q, v in zip(levels, values, strict=True)}

    def counts_on(self, edges: Sequence[float]) -> np.ndarray:
        """This histogram re-binned onto other ``edges`` (exact when they are this profile's)."""
        target = np.asarray(edges, dtype=np.float64)
        if tuple(float(e) for e in target) == self.edges:
            return np.asarray(self.counts, dtype=np.float64)
        if not self.count:
            return np.zeros(len(target) + 1)
        if not self.edges:
            return np.zeros(len(target) + 1)
        xs, ys = self._cdf_knots()
        cdf = np.interp(target, xs, ys, left=0.0, right=ys[-1])
        return np.diff(np.concatenate([[0.0], cdf, [ys[-1]]]))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "count": self.count,
            "missing": self.missing,
        }
        if self.kind == "numeric":
            data |= {
                "edges": list(self.edges),
                "counts": list(self.counts),
                "sums": list(self.sums),
                "min": self.min,
                "max": self.max,
                "sum": self.sum,
                "sumsq": self.sumsq,
                "mean": self.mean,
                "std": self.std,
                "quantiles": dict(self.quantiles),
            }
        elif self.kind in {"categorical", "boolean"}:
            data |= {
                "frequencies": dict(self.frequencies),
                "other": self.other,
                "top_k": self.top_k,
            }
        else:
            data |= {"first": self.first, "last": self.last}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnProfile:
        kind = str(data["kind"])
        common: dict[str, Any] = {
            "name": str(data["name"]),
            "kind": kind,
            "count": int(data["count"]),
            "missing": int(data["missing"]),
        }
        if kind == "numeric":
            counts = tuple(int(c) for c in data["counts"])
            sums = tuple(float(s) for s in data.get("sums") or ())
            if sums and len(sums) != len(counts):
                raise DataError(
                    f"profile of column {common['name']!r}: {len(sums)} bin sums for "
                    f"{len(counts)} bins. Hint: the profile is damaged; recompute it"
                )
            return cls(
                **common,
                edges=tuple(float(e) for e in data["edges"]),
                counts=counts,
                sums=sums,
                min=_opt_float(data.get("min")),
                max=_opt_float(data.get("max")),
                sum=float(data["sum"]),
                sumsq=float(data["sumsq"]),
                quantiles={str(k): float(v) for k, v in data.get("quantiles", {}).items()},
            )
        if kind in {"categorical", "boolean"}:
            return cls(
                **common,
                frequencies={str(k): int(v) for k, v in data["frequencies"].items()},
                other=int(data["other"]),
                top_k=int(data.get("top_k", DEFAULT_TOP_K)),
            )
        if kind == "datetime":
            return cls(**common, first=data.get("first"), last=data.get("last"))
        raise DataError(f"profile of column {common['name']!r}: unknown kind {kind!r}")


def _f(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _top(items: Any, k: int) -> list[tuple[str, int]]:
    return sorted(items, key=lambda kv: (-kv[1], kv[0]))[:k]


def profile_column(
    name: str,
    column: pa.ChunkedArray,
    kind: Kind | None = None,
    *,
    edges: Sequence[float] | None = None,
    n_bins: int = DEFAULT_BINS,
    top_k: int = DEFAULT_TOP_K,
) -> ColumnProfile:
    """Profile one column; numeric columns use ``edges`` when given, else their own quantiles."""
    kind = kind or kind_of(column.type)
    n = len(column)
    if kind == "numeric":
        values = numeric_values(column)
        finite = values[np.isfinite(values)]
        count = int(finite.size)
        own = bin_edges(finite, n_bins) if edges is None else np.asarray(edges, dtype=np.float64)
        if count == 0:
            empty = tuple([0] * (len(own) + 1))
            return ColumnProfile(
                name,
                kind,
                0,
                n,
                edges=tuple(float(e) for e in own),
                counts=empty,
                sums=tuple([0.0] * len(empty)),
            )
        qs = np.quantile(finite, QUANTILES)
        counts, sums = histogram_sums_on(own, finite)
        return ColumnProfile(
            name,
            kind,
            count,
            n - count,
            edges=tuple(float(e) for e in own),
            counts=tuple(int(c) for c in counts),
            sums=tuple(float(s) for s in sums),
            min=float(finite.min()),
            max=float(finite.max()),
            sum=float(finite.sum()),
            sumsq=float(np.dot(finite, finite)),
            quantiles={_qname(q): float(v) for q, v in zip(QUANTILES, qs, strict=True)},
        )
    missing = column.null_count
    if kind == "boolean":
        trues = int(pc.sum(column).as_py() or 0)
        present = n - missing
        freq = {k: v for k, v in (("false", present - trues), ("true", trues)) if v}
        return ColumnProfile(name, kind, present, missing, frequencies=freq, top_k=top_k)
    if kind == "categorical":
        present_values = column.drop_null()
        if len(present_values) == 0:
            return ColumnProfile(name, kind, 0, missing, top_k=top_k)
        counted = pc.value_counts(present_values)
        table = pa.table(
            {"v": counted.field("values").cast(pa.large_string()), "c": counted.field("counts")}
        ).sort_by([("c", "descending"), ("v", "ascending")])
        head = table.slice(0, top_k)
        freq = dict(zip(head.column("v").to_pylist(), head.column("c").to_pylist(), strict=True))
        other = len(present_values) - sum(freq.values())
        return ColumnProfile(
            name, kind, len(present_values), missing, frequencies=freq, other=other, top_k=top_k
        )
    bounds = pc.min_max(column)
    lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
    return ColumnProfile(
        name,
        kind,
        n - missing,
        missing,
        first=lo.isoformat() if lo is not None else None,
        last=hi.isoformat() if hi is not None else None,
    )


# -- table profile ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TableProfile:
    """The profile of a table: its row count and one :class:`ColumnProfile` per column."""

    n_rows: int
    columns: tuple[ColumnProfile, ...]
    kyklos_version: str = __version__

    def __iter__(self) -> Iterator[ColumnProfile]:
        return iter(self.columns)

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.columns)

    def __getitem__(self, name: str) -> ColumnProfile:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def merge(self, other: TableProfile) -> TableProfile:
        """The profile of both tables' rows together; numeric columns need the same bin edges.

        Counts, missing counts, min/max, sums and (up to ``top_k`` distinct values) category
        frequencies merge exactly; quantiles are re-interpolated from the merged histogram.
        """
        if self.names != other.names:
            raise DataError(
                f"cannot merge profiles of different columns: {self.names} vs {other.names}"
            )
        merged = tuple(a.merge(b) for a, b in zip(self.columns, other.columns, strict=True))
        return TableProfile(self.n_rows + other.n_rows, merged)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "kyklos_version": self.kyklos_version,
            "n_rows": self.n_rows,
            "columns": [c.to_dict() for c in self.columns],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TableProfile:
        fmt = data.get("format")
        if fmt != PROFILE_FORMAT:
            raise DataError(
                f"unsupported profile format {fmt!r}; this kyklos reads {PROFILE_FORMAT!r}. "
                "Hint: upgrade kyklos, or re-add the dataset to recompute its profile"
            )
        return cls(
            n_rows=int(data["n_rows"]),
            columns=tuple(ColumnProfile.from_dict(c) for c in data["columns"]),
            kyklos_version=str(data.get("kyklos_version", "unknown")),
        )


def profile_table(
    table: pa.Table,
    schema: TableSchema | None = None,
    *,
    reference: TableProfile | None = None,
    n_bins: int = DEFAULT_BINS,
    top_k: int = DEFAULT_TOP_K,
) -> TableProfile:
    """Profile every column of ``table`` (canonical form expected).

    With ``reference``, numeric columns it also profiles as numeric are binned on its edges, so
    that the two profiles compare bin by bin and merge.
    """
    schema = schema or infer_schema(table)
    columns = []
    for col in schema:
        if col.name not in table.column_names:
            raise DataError(f"the table has no column {col.name!r} listed in its schema")
        edges = None
        if reference is not None and col.name in reference:
            ref = reference[col.name]
            if ref.kind == "numeric" and col.kind == "numeric" and ref.count:
                edges = ref.edges
        columns.append(
            profile_column(
                col.name, table.column(col.name), col.kind, edges=edges, n_bins=n_bins, top_k=top_k
            )
        )
    return TableProfile(table.num_rows, tuple(columns))
