"""Deterministic synthetic drift data for the monitoring benchmark, written once to Parquet.

Two layouts (numpy + pyarrow only, so both the project venv and the Evidently venv import it):

* ``narrow``: 25 features — 20 numeric of varied shapes (normal, log-normal, exponential,
  uniform, gamma, beta, Student t, a bimodal mixture, Poisson and binomial counts, Weibull,
  chi-square, Laplace, one with 5 % missing values) and 5 categorical (strings, 5 / 10 / 20 / 30 /
  50 Zipf-distributed categories). The current table drifts in 5 of them: ``num_00`` (mean
  shift of 0.25 standard deviations), ``num_01`` (standard deviation × 1.5), ``num_02``
  (log-normal scaled × 1.3, a shift of its mean), ``cat_0`` and ``cat_3`` (category mix: half
  of the mass moved from the frequent to the rare categories).
* ``wide``: 200 features — 180 numeric (``float32``, the 20 narrow shapes in turn) and 20
  categorical. Drift in 20: every tenth numeric column (mean shift or variance change, on
  the normal shapes) and ``cat_00`` / ``cat_10``.

Every (table, row chunk, column) has its own seed, so a 10M-row table is generated and written
chunk by chunk in bounded memory, and the same call always writes the same bytes.

    .venv/bin/python benchmarks/monitoring/synth.py --layout narrow --rows 100000 --out DIR
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

Sampler = Callable[[np.random.Generator, int], np.ndarray]

# (shape, sampler) — the 20 numeric shapes; ``num_i`` uses shape ``i % 20``
SHAPES: list[tuple[str, Sampler]] = [
    ("normal(0, 1)", lambda g, n: g.normal(0.0, 1.0, n)),
    ("normal(50, 10)", lambda g, n: g.normal(50.0, 10.0, n)),
    ("lognormal(0, 0.75)", lambda g, n: g.lognormal(0.0, 0.75, n)),
    ("exponential(2)", lambda g, n: g.exponential(2.0, n)),
    ("uniform(-5, 5)", lambda g, n: g.uniform(-5.0, 5.0, n)),
    ("gamma(2, 3)", lambda g, n: g.gamma(2.0, 3.0, n)),
    ("beta(2, 5)", lambda g, n: g.beta(2.0, 5.0, n)),
    ("student_t(3)", lambda g, n: g.standard_t(3.0, n)),
    (
        "bimodal 0.6·N(-2,1)+0.4·N(3,0.5)",
        lambda g, n: np.where(g.random(n) < 0.6, g.normal(-2.0, 1.0, n), g.normal(3.0, 0.5, n)),
    ),
    ("poisson(3) (integer)", lambda g, n: g.poisson(3.0, n)),
    ("normal(100, 25)", lambda g, n: g.normal(100.0, 25.0, n)),
    ("lognormal(3, 0.5)", lambda g, n: g.lognormal(3.0, 0.5, n)),
    ("exponential(0.5)", lambda g, n: g.exponential(0.5, n)),
    ("uniform(0, 1)", lambda g, n: g.random(n)),
    ("weibull(1.5)", lambda g, n: g.weibull(1.5, n)),
    ("chisquare(4)", lambda g, n: g.chisquare(4.0, n)),
    ("laplace(0, 2)", lambda g, n: g.laplace(0.0, 2.0, n)),
    ("lognormal(0, 1.5) (heavy tail)", lambda g, n: g.lognormal(0.0, 1.5, n)),
    ("binomial(20, 0.3) (integer)", lambda g, n: g.binomial(20, 0.3, n)),
    ("normal(10, 3), 5 % missing", lambda g, n: g.normal(10.0, 3.0, n)),
]
MISSING_SHAPE = 19  # this shape gets 5 % NaN (both tables: no drift in the missing rate)
CATEGORY_COUNTS = (5, 10, 20, 30, 50)


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # "numeric" | "categorical"
    shape: int  # numeric: index into SHAPES; categorical: number of categories
    drift: str | None  # "mean_shift" | "variance" | "scale" | "mix" | None
    dtype: str = "float64"

    def describe(self) -> str:
        what = SHAPES[self.shape][0] if self.kind == "numeric" else f"{self.shape} categories"
        return f"{what}" + (f", drift: {self.drift}" if self.drift else "")


def features(layout: str) -> list[Feature]:
    """The feature list of ``layout`` (``narrow`` or ``wide``)."""
    if layout == "narrow":
        numeric_drift = {0: "mean_shift", 1: "variance", 2: "scale"}
        out = [
            Feature(
                f"num_{i:02d}",
                "numeric",
                i,
                numeric_drift.get(i),
                "int64" if i in (9, 18) else "float64",
            )
            for i in range(20)
        ]
        categorical_drift = {0: "mix", 3: "mix"}
        out += [
            Feature(f"cat_{j}", "categorical", CATEGORY_COUNTS[j], categorical_drift.get(j))
            for j in range(5)
        ]
        return out
    if layout == "wide":
        out = []
        for i in range(180):
            drift = None
            if i % 20 == 0:
                drift = "mean_shift"  # shape 0, normal(0, 1)
            elif i % 20 == 10:
                drift = "variance"  # shape 10, normal(100, 25)
            out.append(Feature(f"num_{i:03d}", "numeric", i % 20, drift, "float32"))
        out += [
            Feature(
                f"cat_{j:02d}",
                "categorical",
                CATEGORY_COUNTS[j % 5],
                "mix" if j % 10 == 0 else None,
            )
            for j in range(20)
        ]
        return out
    raise ValueError(f"unknown layout {layout!r}; expected narrow or wide")


def drifted(layout: str) -> list[str]:
    return [f.name for f in features(layout) if f.drift]


def category_probabilities(k: int, drift: bool) -> np.ndarray:
    """Zipf(1.1) over ``k`` categories; drifted: half of it mixed with the reversed order."""
    p = 1.0 / np.arange(1, k + 1) ** 1.1
    p /= p.sum()
    return 0.5 * p + 0.5 * p[::-1] if drift else p


def column(feature: Feature, rng: np.random.Generator, n: int, *, current: bool) -> pa.Array:
    """``n`` values of ``feature``; the current table applies its drift."""
    if feature.kind == "categorical":
        labels = pa.array([f"c{v:02d}" for v in range(feature.shape)], pa.string())
        p = category_probabilities(feature.shape, current and feature.drift == "mix")
        codes = rng.choice(feature.shape, size=n, p=p).astype(np.int32)
        return pa.DictionaryArray.from_arrays(pa.array(codes), labels).cast(pa.string())
    values = SHAPES[feature.shape][1](rng, n)
    if current and feature.drift == "mean_shift":
        values = values + 0.25 * _shape_std(feature.shape)
    elif current and feature.drift == "variance":
        centre = _shape_mean(feature.shape)
        values = centre + (values - centre) * 1.5
    elif current and feature.drift == "scale":
        values = values * 1.3
    if feature.dtype == "int64":
        return pa.array(values.astype(np.int64))
    values = values.astype(feature.dtype)
    if feature.shape == MISSING_SHAPE:
        values[rng.random(n) < 0.05] = np.nan
    return pa.array(values)


def _shape_mean(shape: int) -> float:
    return {0: 0.0, 1: 50.0, 10: 100.0}[shape]


def _shape_std(shape: int) -> float:
    return {0: 1.0, 1: 10.0, 10: 25.0, 2: math.sqrt((math.exp(0.5625) - 1) * math.exp(0.5625))}[
        shape
    ]


def write_table(
    path: Path,
    layout: str,
    rows: int,
    *,
    current: bool,
    seed: int = 2026,
    chunk_rows: int = 250_000,
) -> Path:
    """Write ``rows`` rows of ``layout`` to ``path`` (one row group per chunk), atomically."""
    feats = features(layout)
    schema = pa.schema(
        [
            pa.field(
                f.name, pa.string() if f.kind == "categorical" else pa.from_numpy_dtype(f.dtype)
            )
            for f in feats
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    role = 1 if current else 0
    with pq.ParquetWriter(tmp, schema, compression="snappy") as writer:
        for chunk, start in enumerate(range(0, rows, chunk_rows)):
            n = min(chunk_rows, rows - start)
            arrays = [
                column(f, np.random.default_rng([seed, role, chunk, i]), n, current=current)
                for i, f in enumerate(feats)
            ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema), row_group_size=n)
    tmp.replace(path)
    return path


def ensure(
    out: Path, layout: str, rows: int, *, reference_rows: int | None = None
) -> tuple[Path, Path]:
    """``(reference, current)`` Parquet files under ``out``, written when missing."""
    reference_rows = reference_rows or rows
    folder = out / f"{layout}-{reference_rows}-{rows}"
    ref, cur = folder / "reference.parquet", folder / "current.parquet"
    if not ref.exists():
        write_table(ref, layout, reference_rows, current=False)
    if not cur.exists():
        write_table(cur, layout, rows, current=True)
    return ref, cur


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layout", choices=["narrow", "wide"], default="narrow")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--reference-rows", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("/tmp/kyklos-bench-monitoring"))
    args = parser.parse_args()
    for path in ensure(args.out, args.layout, args.rows, reference_rows=args.reference_rows):
        print(path, f"{path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
