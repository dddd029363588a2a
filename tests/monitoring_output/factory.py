"""Realistic CheckResult objects built directly (the statistics are written elsewhere).

25 flights-like features (20 numeric, 5 categorical): reference and window samples drawn with
numpy, histograms on the reference's quantile edges (kyklos.data.profile), statistics computed
with scipy exactly as the drift methods define them. Drift is injected in 5 features, scaled by
``drift`` (0 = none). Quality issues, prediction drift and live performance are included.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from kyklos.data.profile import bin_edges, histogram_on
from kyklos.monitoring.results import (
    CheckResult,
    Distribution,
    FeatureDrift,
    PerformanceResult,
    QualityIssue,
    WindowSpec,
)

# name, generator of reference values, method
NUMERIC = [
    ("dep_time", lambda r, n: r.normal(1350, 480, n).clip(1, 2400), "psi"),
    ("sched_dep_time", lambda r, n: r.normal(1340, 460, n).clip(500, 2359), "psi"),
    ("sched_arr_time", lambda r, n: r.normal(1530, 500, n).clip(1, 2359), "psi"),
    ("distance", lambda r, n: r.lognormal(6.7, 0.6, n), "wasserstein"),
    ("hour", lambda r, n: r.integers(5, 24, n).astype(float), "psi"),
    ("minute", lambda r, n: r.integers(0, 60, n).astype(float), "psi"),
    ("day", lambda r, n: r.integers(1, 32, n).astype(float), "psi"),
    ("temp", lambda r, n: r.normal(38, 11, n), "ks"),
    ("dewp", lambda r, n: r.normal(22, 13, n), "ks"),
    ("humid", lambda r, n: r.beta(4, 3, n) * 100, "ks"),
    ("wind_dir", lambda r, n: r.uniform(0, 360, n), "jensenshannon"),
    ("wind_speed", lambda r, n: r.gamma(3.0, 3.7, n), "wasserstein"),
    ("wind_gust", lambda r, n: r.gamma(6.0, 3.5, n), "wasserstein"),
    ("precip", lambda r, n: r.exponential(0.01, n) * (r.random(n) < 0.08), "psi"),
    ("pressure", lambda r, n: r.normal(1017, 7.5, n), "ks"),
    ("visib", lambda r, n: np.minimum(10, r.gamma(9, 1.3, n)), "psi"),
    ("air_temp_delta", lambda r, n: r.normal(0, 2.5, n), "ks"),
    ("seats", lambda r, n: r.choice([50, 76, 149, 180, 200, 255], n).astype(float), "psi"),
    ("plane_year", lambda r, n: r.normal(2001, 7, n).round(), "psi"),
    ("month", lambda r, n: r.integers(1, 3, n).astype(float), "psi"),
]
CATEGORICAL = [
    ("carrier", ["UA", "B6", "EV", "DL", "AA", "MQ", "US", "9E", "WN", "VX", "FL", "AS"], "chi2"),
    ("origin", ["EWR", "JFK", "LGA"], "chi2"),
    (
        "dest",
        ["ATL", "ORD", "LAX", "BOS", "MCO", "CLT", "SFO", "FLL", "MIA", "DCA", "DTW", "DFW"]
        + [f"D{i:02d}" for i in range(30)],
        "jensenshannon",
    ),
    ("weekday", ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "chi2"),
    ("time_of_day", ["night", "morning", "afternoon", "evening"], "jensenshannon"),
]
DRIFTED = (
    "dep_time",
    "sched_dep_time",
    "temp",
    "dewp",
    "wind_speed",
    "distance",
    "carrier",
    "dest",
)
THRESHOLDS = {"psi": 0.2, "ks": 0.05, "chi2": 0.05, "jensenshannon": 0.1, "wasserstein": 0.1}
TOP = 10  # categorical profiles keep this many categories, then "__other__"


def _numeric_current(name: str, values: np.ndarray, rng: np.random.Generator, drift: float):
    if drift == 0 or name not in DRIFTED:
        return values
    if name in ("dep_time", "sched_dep_time"):
        return (values + 260 * drift).clip(1, 2400)
    if name == "dewp":
        return values + 3 * drift
    if name == "temp":
        return values + 14 * drift
    if name == "wind_speed":
        return values * (1 + 0.8 * drift)
    if name == "distance":  # a new long-haul route: values above the reference maximum
        out = values.copy()
        k = int(len(out) * 0.06 * drift)
        out[:k] = rng.uniform(4000, 5000, k)
        return out
    return values


def _psi(p: np.ndarray, q: np.ndarray) -> float:
    p = np.clip(p, 1e-4, None)
    q = np.clip(q, 1e-4, None)
    return float(np.sum((q - p) * np.log(q / p)))


def _numeric_feature(name, gen, method, rng, n_ref, n_cur, drift) -> FeatureDrift:
    ref = gen(rng, n_ref)
    cur = _numeric_current(name, gen(rng, n_cur), rng, drift)
    edges = bin_edges(ref)
    ref_counts = histogram_on(edges, ref)
    cur_counts = histogram_on(edges, cur)
    p, q = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
    threshold = THRESHOLDS[method]
    p_value = None
    if method == "ks":
        test = stats.ks_2samp(ref, cur)
        statistic, p_value = float(test.statistic), float(test.pvalue)
        drifted = p_value < threshold
    else:
        if method == "psi":
            statistic = _psi(p, q)
        elif method == "jensenshannon":
            statistic = float(jensenshannon(p, q))
        else:
            statistic = float(stats.wasserstein_distance(ref, cur) / np.std(ref))
        drifted = statistic >= threshold
    missing_ref = int(n_ref * 0.01) if name == "wind_gust" else 0
    missing_cur = int(n_cur * 0.31 * (drift > 0)) if name == "wind_gust" else 0
    return FeatureDrift(
        feature=name,
        kind="numeric",
        method=method,
        statistic=statistic,
        threshold=threshold,
        drifted=bool(drifted),
        p_value=p_value,
        reference=Distribution(
            "numeric",
            tuple(float(c) for c in ref_counts),
            tuple(map(float, edges)),
            None,
            missing_ref,
        ),
        current=Distribution(
            "numeric",
            tuple(float(c) for c in cur_counts),
            tuple(map(float, edges)),
            None,
            missing_cur,
        ),
    )


def _categorical_feature(name, cats, method, rng, n_ref, n_cur, drift, new) -> FeatureDrift:
    weights = np.array([1.0 / (i + 1.3) for i in range(len(cats))])
    weights /= weights.sum()
    ref = rng.choice(len(cats), n_ref, p=weights)
    cur_w = weights.copy()
    cats_cur = list(cats)
    if drift and name in DRIFTED:
        cur_w[1], cur_w[3] = cur_w[1] + 0.12 * drift, max(cur_w[3] - 0.08 * drift, 0.005)
        cur_w /= cur_w.sum()
    cur = rng.choice(len(cats), n_cur, p=cur_w)
    ref_counts = np.bincount(ref, minlength=len(cats)).astype(float)
    cur_counts = np.bincount(cur, minlength=len(cats)).astype(float)
    if new and drift and name == "carrier":
        cats_cur.append(new)
        cur_counts = np.append(cur_counts, round(n_cur * 0.03 * drift))
    # profile: top categories of the reference, the rest in "__other__"
    order = np.argsort(-ref_counts)[:TOP]
    keep = [cats[i] for i in order]

    def fold(names, counts):
        out = dict.fromkeys(keep, 0.0)
        out["__other__"] = 0.0
        for nm, c in zip(names, counts, strict=True):
            out[nm if nm in keep else "__other__"] += c
        return out

    r, c = fold(cats, ref_counts), fold(cats_cur, cur_counts)
    extra_cur = {nm: v for nm, v in zip(cats_cur, cur_counts, strict=True) if nm not in cats}
    for nm in extra_cur:
        c["__other__"] -= extra_cur[nm]
    names = list(r)
    pr = np.array([r[nm] for nm in names]) / sum(r.values())
    pc_all = np.array([c[nm] for nm in names] + list(extra_cur.values()))
    pr_all = np.append(pr, [0.0] * len(extra_cur))
    pc_all = pc_all / pc_all.sum()
    threshold = THRESHOLDS[method]
    p_value = None
    if method == "chi2":
        expected = np.clip(pr_all, 1e-3, None) * pc_all.sum() * n_cur
        expected *= (pc_all * n_cur).sum() / expected.sum()
        test = stats.chisquare(pc_all * n_cur, expected)
        statistic, p_value = float(test.statistic), float(test.pvalue)
        drifted = p_value < threshold
    else:
        statistic = float(jensenshannon(pr_all, pc_all))
        drifted = statistic >= threshold
    cur_names = [*names[:-1], *extra_cur, "__other__"]
    cur_vals = [c[nm] for nm in names[:-1]] + list(extra_cur.values()) + [c["__other__"]]
    return FeatureDrift(
        feature=name,
        kind="categorical",
        method=method,
        statistic=statistic,
        threshold=threshold,
        drifted=bool(drifted),
        p_value=p_value,
        reference=Distribution("categorical", tuple(r.values()), None, tuple(names), 0),
        current=Distribution("categorical", tuple(cur_vals), None, tuple(cur_names), 0),
    )


def make_result(
    *,
    n_rows: int = 2000,
    n_reference: int = 10000,
    drift: float = 1.0,
    seed: int = 7,
    performance: bool = True,
    auc: float = 0.712,
    label: str = "2013-06-01 00:00 → 06-08 00:00",
    start: dt.datetime | None = None,
    rename: dict[str, str] | None = None,
    new_category: str = "ZZ",
    quality: bool = True,
    version: int = 3,
) -> CheckResult:
    rng = np.random.default_rng(seed)
    features = [
        _numeric_feature(name, gen, method, rng, n_reference, n_rows, drift)
        for name, gen, method in NUMERIC
    ] + [
        _categorical_feature(name, cats, method, rng, n_reference, n_rows, drift, new_category)
        for name, cats, method in CATEGORICAL
    ]
    if rename:
        features = [
            dataclasses.replace(f, feature=rename.get(f.feature, f.feature)) for f in features
        ]
    n_drifted = sum(f.drifted for f in features)
    share = n_drifted / len(features)
    # predictions: probabilities of a late arrival
    ref_p = rng.beta(1.3, 6.0, n_reference)
    cur_p = rng.beta(1.3 + 0.9 * drift, 6.0, n_rows)
    edges = bin_edges(ref_p)
    rc, cc = histogram_on(edges, ref_p), histogram_on(edges, cur_p)
    psi = _psi(rc / rc.sum(), cc / cc.sum())
    prediction = FeatureDrift(
        feature="__prediction__",
        kind="numeric",
        method="psi",
        statistic=psi,
        threshold=0.2,
        drifted=psi >= 0.2,
        reference=Distribution("numeric", tuple(map(float, rc)), tuple(map(float, edges))),
        current=Distribution("numeric", tuple(map(float, cc)), tuple(map(float, edges))),
    )
    issues: tuple[QualityIssue, ...] = ()
    if quality and drift:
        issues = (
            QualityIssue(
                "wind_gust",
                "missing_rate_jump",
                int(n_rows * 0.31),
                "missing rate 0.01 → 0.31 (reference → current)",
                "error",
            ),
            QualityIssue(
                "distance",
                "out_of_range",
                int(n_rows * 0.06 * drift),
                "values above the reference maximum 4,983 (up to 4,999)",
            ),
            QualityIssue(
                "carrier",
                "new_category",
                round(n_rows * 0.03 * drift),
                f"new category {new_category!r} not seen in the reference",
            ),
            QualityIssue("pressure", "type_violation", 12, "12 values are not numbers", "error"),
            QualityIssue("month", "constant", n_rows, "a single value (6) in the window"),
        )
    perf = None
    if performance:
        reference = {"roc_auc": 0.761, "f1": 0.412, "accuracy": 0.842, "calibration_error": 0.021}
        metrics = {
            "roc_auc": auc,
            "f1": 0.371,
            "accuracy": 0.801,
            "calibration_error": 0.064,
        }
        drop = reference["roc_auc"] - auc
        perf = PerformanceResult(
            n_labelled=int(n_rows * 0.6),
            metrics=metrics,
            reference=reference,
            metric="roc_auc",
            drop=drop,
            max_drop=0.03,
            degraded=drop > 0.03,
        )
    start = start or dt.datetime(2013, 6, 1, tzinfo=dt.UTC)
    return CheckResult(
        window=WindowSpec(
            start=start,
            end=start + dt.timedelta(days=7),
            n_rows=n_rows,
            model_version=version,
            label=label,
        ),
        n_reference=n_reference,
        features=tuple(features),
        share_drifted=share,
        dataset_drift=share >= 0.3,
        drift_share_threshold=0.3,
        quality=issues,
        prediction=prediction,
        performance=perf,
        seconds=0.0423,
    )


def make_history(n: int = 8) -> list[CheckResult]:
    """``n`` weekly windows, drift and the AUC drop growing over time (oldest first)."""
    out = []
    base = dt.datetime(2013, 4, 13, tzinfo=dt.UTC)
    for i in range(n):
        start = base + dt.timedelta(days=7 * i)
        level = max(0.0, (i - 2) / (n - 3))
        out.append(
            make_result(
                drift=level,
                seed=100 + i,
                auc=0.765 - 0.055 * level + (0.004 if i % 2 else -0.003),
                start=start,
                label=start.strftime("%m-%d")
                + " → "
                + (start + dt.timedelta(days=7)).strftime("%m-%d"),
                performance=i != 1,  # a window whose labels have not arrived
                n_reference=10000,
            )
        )
    return out
