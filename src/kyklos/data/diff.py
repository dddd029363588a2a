"""What changed between two dataset versions: schema changes and per-column distribution shifts.

Numeric columns get the population stability index (PSI) on the first version's bin edges, the
two-sample Kolmogorov–Smirnov statistic on the stored data (each side sampled deterministically
to at most 200,000 values) and the change of mean and missing rate. Categorical and boolean
columns get PSI over categories, the Jensen–Shannon distance (base 2, in [0, 1]) and the
categories that appeared or vanished. Columns are sorted by PSI, largest first.

Without the tables (``tables=None``) everything is computed from the two stored profiles: PSI
then uses the second histogram re-binned onto the first one's edges, and KS is not available.

PSI reads: below 0.1 no real change, 0.1–0.25 a moderate shift, above 0.25 a major one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kyklos.data.profile import ColumnProfile, histogram_on, numeric_values
from kyklos.data.schema import SchemaChange, schema_changes
from kyklos.data.versions import DatasetVersion

__all__ = [
    "ColumnShift",
    "DatasetDiff",
    "diff_versions",
    "js_distance",
    "psi",
]

PSI_EPSILON = 1e-4
DEFAULT_THRESHOLD = 0.1
MAX_SAMPLE = 200_000


def psi(expected: np.ndarray | list[float], actual: np.ndarray | list[float]) -> float:
    """Population stability index of two histograms on the same bins (counts or proportions).

    Empty bins are floored at a proportion of 1e-4 so that the index stays finite.

    >>> round(psi([50, 50], [50, 50]), 6)
    0.0
    >>> round(psi([90, 10], [50, 50]), 3)
    0.879
    """
    p = _proportions(expected)
    q = _proportions(actual)
    p, q = np.clip(p, PSI_EPSILON, None), np.clip(q, PSI_EPSILON, None)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(expected: np.ndarray | list[float], actual: np.ndarray | list[float]) -> float:
    """Jensen–Shannon distance (base 2, between 0 and 1) of two histograms on the same bins.

    >>> js_distance([1, 0], [0, 1])
    1.0
    """
    from scipy.spatial.distance import jensenshannon

    value = jensenshannon(_proportions(expected), _proportions(actual), base=2)
    return float(np.clip(value, 0.0, 1.0))


def _proportions(counts: np.ndarray | list[float]) -> np.ndarray:
    arr = np.asarray(counts, dtype=np.float64)
    total = arr.sum()
    return arr / total if total > 0 else arr


@dataclass(frozen=True)
class ColumnShift:
    """How one column's distribution moved from version ``a`` to version ``b``."""

    name: str
    kind: str
    psi: float | None = None
    ks: float | None = None
    ks_pvalue: float | None = None
    js: float | None = None
    mean_a: float | None = None
    mean_b: float | None = None
    missing_rate_a: float = 0.0
    missing_rate_b: float = 0.0
    new_categories: tuple[str, ...] = ()
    vanished_categories: tuple[str, ...] = ()
    drifted: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_delta(self) -> float | None:
        if self.mean_a is None or self.mean_b is None:
            return None
        return self.mean_b - self.mean_a

    @property
    def missing_delta(self) -> float:
        return self.missing_rate_b - self.missing_rate_a

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "psi": self.psi,
            "ks": self.ks,
            "ks_pvalue": self.ks_pvalue,
            "js": self.js,
            "mean_a": self.mean_a,
            "mean_b": self.mean_b,
            "mean_delta": self.mean_delta,
            "missing_rate_a": self.missing_rate_a,
            "missing_rate_b": self.missing_rate_b,
            "missing_delta": self.missing_delta,
            "new_categories": list(self.new_categories),
            "vanished_categories": list(self.vanished_categories),
            "drifted": self.drifted,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class DatasetDiff:
    """Schema changes and column shifts from version ``a`` to version ``b``."""

    a: str
    b: str
    n_rows_a: int
    n_rows_b: int
    schema_changes: tuple[SchemaChange, ...]
    columns: tuple[ColumnShift, ...]
    threshold: float = DEFAULT_THRESHOLD
    exact: bool = True  # computed on the stored data (False: from profiles only)

    @property
    def drifted(self) -> list[str]:
        """Names of the columns whose PSI reaches the threshold."""
        return [c.name for c in self.columns if c.drifted]

    def __getitem__(self, name: str) -> ColumnShift:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "n_rows_a": self.n_rows_a,
            "n_rows_b": self.n_rows_b,
            "threshold": self.threshold,
            "exact": self.exact,
            "drifted": self.drifted,
            "schema_changes": [c.to_dict() for c in self.schema_changes],
            "columns": [c.to_dict() for c in self.columns],
        }


def diff_versions(
    a: DatasetVersion,
    b: DatasetVersion,
    *,
    tables: tuple[pa.Table, pa.Table] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    max_sample: int = MAX_SAMPLE,
    seed: int = 0,
) -> DatasetDiff:
    """Compare ``b`` against ``a`` (the reference); pass ``tables`` (their stored data) for exact
    category counts and KS statistics."""
    shifts: list[ColumnShift] = []
    for col in a.schema:
        if col.name not in b.schema or b.schema[col.name].kind != col.kind:
            continue  # reported as a schema change
        pa_, pb = a.profile[col.name], b.profile[col.name]
        data = (tables[0].column(col.name), tables[1].column(col.name)) if tables else None
        if col.kind == "numeric":
            shift = _numeric(pa_, pb, data, max_sample=max_sample, seed=seed)
        elif col.kind in {"categorical", "boolean"}:
            shift = _categorical(pa_, pb, data)
        else:
            shift = ColumnShift(
                col.name,
                col.kind,
                missing_rate_a=pa_.missing_rate,
                missing_rate_b=pb.missing_rate,
                details={"a": [pa_.first, pa_.last], "b": [pb.first, pb.last]},
            )
        drifted = shift.psi is not None and shift.psi >= threshold
        shifts.append(_with(shift, drifted=drifted))
    shifts.sort(key=lambda s: (s.psi is None, -(s.psi or 0.0), s.name))
    return DatasetDiff(
        a=a.id,
        b=b.id,
        n_rows_a=a.n_rows,
        n_rows_b=b.n_rows,
        schema_changes=tuple(schema_changes(a.schema, b.schema)),
        columns=tuple(shifts),
        threshold=threshold,
        exact=tables is not None,
    )


def _with(shift: ColumnShift, **changes: Any) -> ColumnShift:
    from dataclasses import replace

    return replace(shift, **changes)


def _numeric(
    a: ColumnProfile,
    b: ColumnProfile,
    data: tuple[pa.ChunkedArray, pa.ChunkedArray] | None,
    *,
    max_sample: int,
    seed: int,
) -> ColumnShift:
    value_psi = ks = pvalue = None
    if a.count and b.count:
        if data is not None:
            xa, xb = (_finite(numeric_values(d)) for d in data)
            counts_b = histogram_on(a.edges, xb).astype(np.float64)
            ks, pvalue = _ks(_sample(xa, max_sample, seed), _sample(xb, max_sample, seed + 1))
        else:
            counts_b = b.counts_on(a.edges)
        value_psi = psi(np.asarray(a.counts, dtype=np.float64), counts_b)
    return ColumnShift(
        a.name,
        a.kind,
        psi=value_psi,
        ks=ks,
        ks_pvalue=pvalue,
        mean_a=a.mean,
        mean_b=b.mean,
        missing_rate_a=a.missing_rate,
        missing_rate_b=b.missing_rate,
        details={"std_a": a.std, "std_b": b.std},
    )


def _ks(xa: np.ndarray, xb: np.ndarray) -> tuple[float, float]:
    """KS statistic and p-value; exact p-values for small samples, asymptotic beyond 1,000."""
    import warnings

    from scipy.stats import ks_2samp

    method = "exact" if max(xa.size, xb.size) <= 1000 else "asymp"
    with warnings.catch_warnings():
        # scipy falls back to the asymptotic p-value when the exact one does not converge
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation", RuntimeWarning)
        result = ks_2samp(xa, xb, method=method)
    return float(result.statistic), float(result.pvalue)


def _finite(values: np.ndarray) -> np.ndarray:
    return np.asarray(values[np.isfinite(values)])


def _sample(values: np.ndarray, size: int, seed: int) -> np.ndarray:
    if values.size <= size:
        return values
    rng = np.random.default_rng(seed)
    return np.asarray(values[rng.choice(values.size, size=size, replace=False)])


def _categorical(
    a: ColumnProfile,
    b: ColumnProfile,
    data: tuple[pa.ChunkedArray, pa.ChunkedArray] | None,
) -> ColumnShift:
    if data is not None:
        fa, fb = (_value_counts(d) for d in data)
        new = sorted(set(fb) - set(fa))
        gone = sorted(set(fa) - set(fb))
    else:
        fa, fb = dict(a.frequencies), dict(b.frequencies)
        # a value outside one side's top-k may still be in its "other" count
        new = sorted(set(fb) - set(fa)) if not a.other else []
        gone = sorted(set(fa) - set(fb)) if not b.other else []
        if a.other or b.other:
            fa["\0other"], fb["\0other"] = a.other, b.other
    keys = sorted(set(fa) | set(fb))
    ca = np.array([fa.get(k, 0) for k in keys], dtype=np.float64)
    cb = np.array([fb.get(k, 0) for k in keys], dtype=np.float64)
    value_psi = js = None
    if ca.sum() and cb.sum():
        value_psi, js = psi(ca, cb), js_distance(ca, cb)
    details: dict[str, Any] = {}
    if a.kind == "boolean":
        details = {"true_rate_a": _rate(fa, "true"), "true_rate_b": _rate(fb, "true")}
    return ColumnShift(
        a.name,
        a.kind,
        psi=value_psi,
        js=js,
        missing_rate_a=a.missing_rate,
        missing_rate_b=b.missing_rate,
        new_categories=tuple(new),
        vanished_categories=tuple(gone),
        details=details,
    )


def _value_counts(column: pa.ChunkedArray) -> dict[str, int]:
    present = column.drop_null()
    if len(present) == 0:
        return {}
    if pa.types.is_boolean(present.type):
        trues = int(pc.sum(present).as_py() or 0)
        return {k: v for k, v in (("false", len(present) - trues), ("true", trues)) if v}
    counted = pc.value_counts(present)
    values = counted.field("values").cast(pa.large_string()).to_pylist()
    return dict(zip(values, counted.field("counts").to_pylist(), strict=True))


def _rate(freq: Mapping[str, int], key: str) -> float | None:
    total = sum(v for k, v in freq.items() if not k.startswith("\0"))
    return freq.get(key, 0) / total if total else None
