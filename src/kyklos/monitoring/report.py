"""The monitor report of one window: one self-contained HTML file (or JSON).

The page reads top-down: the summary verdict first (``ok``, ``drift``, ``degraded`` or
``quality``, with the reasons), key figures, then one row per feature sorted by drift (statistic,
threshold, p-value, verdict and an overlay of the reference and current distributions), the
prediction drift, the data-quality issues and, given earlier windows, drift and performance over
time.

It is built from the :class:`~kyklos.monitoring.results.CheckResult` alone, whose distributions
are histograms, so its size depends on the number of features and bins, never on the number of
rows. Everything is inline: CSS, SVG plots drawn here, and a few lines of plain JavaScript for
sorting and filtering the feature table. No network, no CDN. Every piece of user text (feature
names, categories, labels, details, the title) is HTML-escaped.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from kyklos._version import __version__
from kyklos.config.metrics import HIGHER_IS_BETTER
from kyklos.errors import StoreError
from kyklos.monitoring.results import CheckResult, Distribution, FeatureDrift, PerformanceResult
from kyklos.monitoring.signals import drift_ratio, sort_by_drift

__all__ = ["render_html", "render_json", "write_report"]

PLOT_W, PLOT_H = 300, 78
TOP_CATEGORIES = 6
_OTHER = "__other__"
_REF, _CUR, _BAD = "#94a3b8", "#2563eb", "#dc2626"
_WORDS = {
    "ok": "No drift",
    "drift": "Drift detected",
    "degraded": "Performance degraded",
    "quality": "Data-quality errors",
}


# -- public API ------------------------------------------------------------------------------


def render_html(
    result: CheckResult, *, history: Sequence[CheckResult] = (), title: str = ""
) -> str:
    """The report of ``result`` as one self-contained HTML document.

    ``history`` is the earlier checks (oldest first) shown in the charts over time; ``result``
    is appended when it is not already the last one.
    """
    label = result.window.label or _window_text(result)
    page_title = title or (f"kyklos monitor report — {label}" if label else "kyklos monitor report")
    series = list(history)
    if not series or series[-1] is not result:
        series.append(result)
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(
        [
            f"<h1>{_e(page_title)}</h1>",
            f'<div class="sub">generated {generated} by kyklos {_e(__version__)}</div>',
            _banner(result),
            _cards(result),
            _features_section(result),
            _prediction_section(result),
            _quality_section(result),
            _performance_table(result),
            _over_time_section(series),
            "<footer>This report embeds histograms of the reference and the window (profiles), "
            f"not rows · result format <code>{_e(result.format)}</code> · "
            f"{len(result.features)} features · check took {result.seconds:.3f} s</footer>",
        ]
    )
    return _template().substitute(title=_e(page_title), body=body, version=_e(__version__))


def render_json(result: CheckResult) -> str:
    """The result as indented JSON (non-finite numbers become ``null``)."""
    return json.dumps(_clean(result.to_dict()), indent=2, allow_nan=False) + "\n"


def write_report(
    result: CheckResult,
    path: str | os.PathLike[str],
    *,
    history: Sequence[CheckResult] = (),
    title: str = "",
) -> Path:
    """Write the report to ``path`` atomically: JSON when it ends in ``.json``, else HTML."""
    target = Path(path)
    content = (
        render_json(result)
        if target.suffix.lower() == ".json"
        else render_html(result, history=history, title=title)
    )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(content)
            Path(tmp).replace(target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StoreError(
            f"cannot write the monitor report to {target}: {exc.strerror or exc}. "
            "Hint: choose a writable path"
        ) from exc
    return target


# -- sections --------------------------------------------------------------------------------


def _banner(result: CheckResult) -> str:
    verdict = result.verdict
    reasons: list[str] = []
    n = len(result.features)
    n_drifted = sum(1 for f in result.features if f.drifted)
    share, limit = result.share_drifted, result.drift_share_threshold
    if n:
        comparison = "≥" if result.dataset_drift else "<"
        reasons.append(
            f"<b>{n_drifted} of {n}</b> features drifted — share {_pct(share)} {comparison} "
            f"threshold {_pct(limit)}: {'dataset drift' if result.dataset_drift else 'no dataset drift'}"
        )
        top = [f for f in sort_by_drift(result.features) if f.drifted][:3]
        if top:
            names = ", ".join(
                f"<b>{_e(f.feature)}</b> ({_e(f.method)} {_num(f.statistic)})" for f in top
            )
            reasons.append(f"most drifted: {names}")
    pred = result.prediction
    if pred is not None:
        state = "drifted" if pred.drifted else "stable"
        reasons.append(f"predictions {state}: {_statement(pred)}")
    perf = result.performance
    if perf is not None:
        reasons.append(_performance_sentence(perf))
    errors = sum(1 for q in result.quality if q.severity == "error")
    warnings = len(result.quality) - errors
    if result.quality:
        reasons.append(
            f"{errors} data-quality error{'s' * (errors != 1)}, "
            f"{warnings} warning{'s' * (warnings != 1)}"
        )
    else:
        reasons.append("no data-quality issues")
    w = result.window
    meta = [f"window <b>{_e(w.label or _window_text(result))}</b>"]
    if w.label and (w.start or w.end):
        meta.append(_e(_window_text(result)))
    meta.append(f"<b>{w.n_rows:,}</b> rows")
    meta.append(f"reference <b>{result.n_reference:,}</b> rows")
    if w.model_version is not None:
        meta.append(f"model version <b>{w.model_version}</b>")
    items = "".join(f"<li>{r}</li>" for r in reasons)
    return (
        f'<section class="banner v-{_e(verdict)}" id="verdict" data-verdict="{_e(verdict)}">'
        f'<div class="word">{_WORDS.get(verdict, _e(verdict))}</div>'
        f"<ul>{items}</ul>"
        f'<div class="meta">{" · ".join(meta)}</div></section>'
    )


def _cards(result: CheckResult) -> str:
    cards: list[str] = []
    n = len(result.features)
    n_drifted = sum(1 for f in result.features if f.drifted)
    cards.append(
        _card(
            "features drifted",
            f"{n_drifted} / {n}",
            f"share {_pct(result.share_drifted)} · threshold {_pct(result.drift_share_threshold)}",
            "bad" if result.dataset_drift else ("warn" if n_drifted else "good"),
        )
    )
    pred = result.prediction
    if pred is None:
        cards.append(_card("prediction drift", "—", "no predictions in this window", ""))
    else:
        cards.append(
            _card(
                "prediction drift",
                "drifted" if pred.drifted else "stable",
                _statement(pred),
                "bad" if pred.drifted else "good",
            )
        )
    perf = result.performance
    if perf is None:
        cards.append(_card("performance", "—", "no labelled rows yet", ""))
    else:
        value = perf.metrics.get(perf.metric)
        drop = _num(perf.drop)
        cards.append(
            _card(
                _e(perf.metric),
                _num(value),
                f"reference {_num(perf.reference.get(perf.metric))} · drop {drop} "
                f"(max {_num(perf.max_drop)}) · {perf.n_labelled:,} labelled",
                "bad" if perf.degraded else "good",
            )
        )
    errors = sum(1 for q in result.quality if q.severity == "error")
    cards.append(
        _card(
            "quality issues",
            str(len(result.quality)),
            f"{errors} error{'s' * (errors != 1)} · "
            f"{len(result.quality) - errors} warning{'s' * (len(result.quality) - errors != 1)}",
            "bad" if errors else ("warn" if result.quality else "good"),
        )
    )
    return f'<section class="cards">{"".join(cards)}</section>'


def _card(key: str, value: str, detail: str, tone: str) -> str:
    return (
        f'<div class="card {tone}"><div class="k">{key}</div><div class="v">{value}</div>'
        f'<div class="d">{detail}</div></div>'
    )


def _features_section(result: CheckResult) -> str:
    features = sort_by_drift(result.features)
    n_drifted = sum(1 for f in features if f.drifted)
    head = (
        f"<h2>Features <small>{len(features)} checked, {n_drifted} drifted — "
        "sorted by drift relative to the threshold</small></h2>"
    )
    if not features:
        return head + '<div class="panel"><div class="empty">No features were checked.</div></div>'
    columns = [
        ("feature", "Feature", ""),
        ("method", "Method", ""),
        ("statistic", "Statistic", "num"),
        ("threshold", "Threshold", "num"),
        ("p", "p-value", "num"),
        ("ratio", "Drift / threshold", "num"),
        ("verdict", "Verdict", ""),
        ("", "Reference vs current", ""),
    ]
    ths = "".join(
        f'<th class="{cls}"'
        + (f' data-key="{key}">{label}<span class="arrow"></span>' if key else f">{label}")
        + "</th>"
        for key, label, cls in columns
    )
    rows = "\n".join(_feature_row(f, i) for i, f in enumerate(features))
    tools = (
        '<div class="tools">'
        '<input type="search" id="feature-filter" placeholder="filter features…" '
        'aria-label="filter features">'
        '<label><input type="checkbox" id="only-drifted"> drifted only</label>'
        '<span class="legend"><span><span class="sw ref"></span>reference</span>'
        '<span><span class="sw cur"></span>current</span>'
        '<span><span class="sw curbad"></span>current (drifted)</span></span>'
        f'<span class="count" id="feature-count">{len(features)} features</span></div>'
    )
    return (
        f'{head}<div class="panel">{tools}<table id="features"><thead><tr>{ths}</tr></thead>'
        f"<tbody>\n{rows}\n</tbody></table></div>"
        '<p class="note">Drift / threshold puts every method on one scale: above 1 (the tick) '
        "is past the threshold. For tests (ks, chi2) it is log(p) / log(threshold). "
        "Numeric histograms use the reference's bins (heights are densities; bins of very "
        "unequal width are drawn equally wide, the reference then looks flat); the dashed slots "
        "at either end hold values below the reference minimum and above its maximum. "
        "Hover a bar for its numbers.</p>"
    )


def _feature_row(f: FeatureDrift, rank: int) -> str:
    ratio = drift_ratio(f)
    verdict = "drifted" if f.drifted else "ok"
    cells = [
        f'<td class="feat" data-v="{_e(f.feature)}">{_e(f.feature)}'
        f'<span class="kind">{_e(f.kind)}'
        + (f" · weight {_num(f.importance)}" if f.importance is not None else "")
        + "</span></td>",
        f'<td data-v="{_e(f.method)}"><code>{_e(f.method)}</code></td>',
        f'<td class="num" data-v="{_v(f.statistic)}">{_num(f.statistic)}</td>',
        f'<td class="num" data-v="{_v(f.threshold)}">{_num(f.threshold)}</td>',
        f'<td class="num" data-v="{_v(f.p_value)}">{_p(f.p_value)}</td>',
        f'<td class="num" data-v="{_v(ratio)}">{_num(ratio, 3)}{_ratio_bar(ratio)}</td>',
        f'<td data-v="{int(f.drifted)}"><span class="pill {verdict}">{verdict}</span></td>',
        f'<td class="plot">{_distribution_plot(f)}</td>',
    ]
    return (
        f'<tr data-name="{_e(f.feature)}" data-drifted="{int(f.drifted)}" data-rank="{rank}">'
        + "".join(cells)
        + "</tr>"
    )


def _prediction_section(result: CheckResult) -> str:
    pred = result.prediction
    if pred is None:
        return ""
    verdict = "drifted" if pred.drifted else "ok"
    ratio = drift_ratio(pred)
    return (
        "<h2>Prediction drift <small>the model's outputs, reference vs window</small></h2>"
        '<div class="panel"><table id="prediction"><thead><tr><th>Output</th><th>Method</th>'
        '<th class="num">Statistic</th><th class="num">Threshold</th><th class="num">p-value</th>'
        '<th class="num">Drift / threshold</th><th>Verdict</th><th>Reference vs current</th>'
        "</tr></thead><tbody><tr>"
        f'<td class="feat">{_e(pred.feature if pred.feature != "__prediction__" else "prediction")}'
        f'<span class="kind">{_e(pred.kind)}</span></td>'
        f"<td><code>{_e(pred.method)}</code></td>"
        f'<td class="num">{_num(pred.statistic)}</td><td class="num">{_num(pred.threshold)}</td>'
        f'<td class="num">{_p(pred.p_value)}</td>'
        f'<td class="num">{_num(ratio, 3)}{_ratio_bar(ratio)}</td>'
        f'<td><span class="pill {verdict}">{verdict}</span></td>'
        f'<td class="plot">{_distribution_plot(pred)}</td></tr></tbody></table></div>'
    )


def _quality_section(result: CheckResult) -> str:
    issues = sorted(
        result.quality, key=lambda q: (q.severity != "error", -q.count, q.feature, q.kind)
    )
    head = f"<h2>Data quality <small>{len(issues)} issue{'s' * (len(issues) != 1)}</small></h2>"
    if not issues:
        return head + (
            '<div class="panel"><div class="empty">No data-quality issues in this window.'
            "</div></div>"
        )
    n_rows = result.window.n_rows
    rows = "".join(
        f'<tr><td><span class="pill {_e(q.severity)}">{_e(q.severity)}</span></td>'
        f'<td class="feat">{_e(q.feature)}</td><td><code>{_e(q.kind)}</code></td>'
        f'<td class="num">{q.count:,}</td>'
        f'<td class="num">{_pct(q.count / n_rows) if n_rows else "—"}</td>'
        f"<td>{_e(q.detail)}</td></tr>"
        for q in issues
    )
    return (
        f'{head}<div class="panel"><table id="quality"><thead><tr><th>Severity</th>'
        '<th>Feature</th><th>Kind</th><th class="num">Rows</th><th class="num">Share</th>'
        f"<th>Detail</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _performance_table(result: CheckResult) -> str:
    perf = result.performance
    if perf is None:
        return ""
    names = list(dict.fromkeys([perf.metric, *perf.metrics, *perf.reference]))
    rows = []
    for name in names:
        live, ref = perf.metrics.get(name), perf.reference.get(name)
        change = ""
        if live is not None and ref is not None and math.isfinite(live) and math.isfinite(ref):
            delta = live - ref
            better = (delta >= 0) == HIGHER_IS_BETTER.get(name, True)
            change = f'<span class="{"up" if better or delta == 0 else "down"}">{delta:+.4f}</span>'
        watched = " (watched)" if name == perf.metric else ""
        rows.append(
            f"<tr><td><code>{_e(name)}</code>{watched}</td><td class='num'>{_num(ref)}</td>"
            f"<td class='num'>{_num(live)}</td><td class='num'>{change}</td></tr>"
        )
    return (
        "<h2>Performance of this window <small>"
        f"{perf.n_labelled:,} labelled rows</small></h2>"
        '<div class="panel"><table id="performance"><thead><tr><th>Metric</th>'
        '<th class="num">Reference</th><th class="num">Live</th><th class="num">Change</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        f'<p class="note">{_performance_sentence(perf)}.</p>'
    )


def _over_time_section(series: Sequence[CheckResult]) -> str:
    if len(series) < 2:
        return ""
    labels = [r.window.label or _window_text(r) or f"#{i + 1}" for i, r in enumerate(series)]
    last = series[-1]
    charts = [
        '<div class="chart"><h3>Share of drifted features<small>per window; shaded: above the '
        f"dataset-drift threshold {_pct(last.drift_share_threshold)}</small></h3>"
        + _line_chart(
            labels,
            [r.share_drifted for r in series],
            [r.dataset_drift for r in series],
            reference=None,
            zone=(last.drift_share_threshold, math.inf),
            limit=last.drift_share_threshold,
            percent=True,
        )
        + "</div>"
    ]
    watched = next((r.performance for r in reversed(series) if r.performance), None)
    if watched is not None:
        metric = watched.metric
        ref = watched.reference.get(metric)
        values: list[float | None] = [
            r.performance.metrics.get(metric) if r.performance else None for r in series
        ]
        higher = HIGHER_IS_BETTER.get(metric, True)
        zone: tuple[float, float] | None = None
        limit = None
        if ref is not None and math.isfinite(ref):
            limit = ref - watched.max_drop if higher else ref + watched.max_drop
            zone = (-math.inf, limit) if higher else (limit, math.inf)
        charts.append(
            f'<div class="chart"><h3>{_e(metric)} over time<small>live on labelled rows; '
            f"dashed: reference {_num(ref)}; shaded: a drop of more than "
            f"{_num(watched.max_drop)} (degraded)</small></h3>"
            + _line_chart(
                labels,
                values,
                [bool(r.performance and r.performance.degraded) for r in series],
                reference=ref,
                zone=zone,
                limit=limit,
                percent=False,
            )
            + "</div>"
        )
    return (
        f"<h2>Over time <small>{len(series)} windows, oldest first</small></h2>"
        f'<div class="charts">{"".join(charts)}</div>'
    )


# -- plots -----------------------------------------------------------------------------------


def _distribution_plot(f: FeatureDrift) -> str:
    ref, cur = f.reference, f.current
    if ref is None and cur is None:
        return '<span class="miss">no histogram</span>'
    color = _BAD if f.drifted else _CUR
    kind = (ref.kind if ref is not None else None) or (cur.kind if cur is not None else f.kind)
    if kind == "categorical":
        svg = _categorical_svg(ref, cur, color)
    else:
        svg = _numeric_svg(ref, cur, color)
    return svg + _missing_note(ref, cur)


def _numeric_svg(ref: Distribution | None, cur: Distribution | None, color: str) -> str:
    base = ref if ref is not None and ref.edges else cur
    edges = list(base.edges or ()) if base is not None else []
    k = len(edges) + 1
    p_ref = _proportions(ref, k)
    p_cur = _proportions(cur, k)
    if not edges or (p_ref is None and p_cur is None):
        return '<span class="miss">histograms on different bins</span>'
    zero = [0.0] * k
    pr, pc = p_ref or zero, p_cur or zero
    show_lo = pr[0] > 0 or pc[0] > 0
    show_hi = pr[-1] > 0 or pc[-1] > 0
    bins = _display_bins(edges)
    widths = sorted(hi - lo for _, _, lo, hi in bins)
    quantile_axis = not widths or widths[0] <= 0 or widths[-1] / widths[len(widths) // 2] > 6.0
    left, right, top, bottom = 2.0, 2.0, 5.0, 15.0
    slot, gap = 14.0, 4.0
    x0 = left + (slot + gap if show_lo else 0.0)
    x1 = PLOT_W - right - (slot + gap if show_hi else 0.0)
    # (first count index, last count index, x from, x to, factor turning a share into a height)
    boxes: list[tuple[int, int, float, float, float]] = []
    if bins:
        lo_all, hi_all = bins[0][2], bins[-1][3]
        for n, (first, last, lo, hi) in enumerate(bins):
            if quantile_axis:
                step = (x1 - x0) / len(bins)
                boxes.append((first, last, x0 + n * step, x0 + (n + 1) * step, 1.0))
            else:
                span = hi_all - lo_all
                xa = x0 + (lo - lo_all) / span * (x1 - x0)
                xb = x0 + (hi - lo_all) / span * (x1 - x0)
                boxes.append((first, last, xa, xb, span / len(bins) / (hi - lo)))
    slots: list[tuple[int, int, float, float, float]] = []
    if show_lo:
        slots.append((0, 0, left, left + slot, 1.0))
    if show_hi:
        slots.append((k - 1, k - 1, PLOT_W - right - slot, PLOT_W - right, 1.0))
    every = sorted([*boxes, *slots], key=lambda b: b[2])

    def share(p: list[float], box: tuple[int, int, float, float, float]) -> float:
        return sum(p[box[0] : box[1] + 1])

    h_ref = [share(pr, b) * b[4] for b in every]
    h_cur = [share(pc, b) * b[4] for b in every]
    peak = max([*h_ref, *h_cur, 1e-12])
    ybase = PLOT_H - bottom

    def y(h: float) -> float:
        return ybase - h / peak * (ybase - top)

    parts = [_svg_open(PLOT_W, PLOT_H)]
    for _, _, xa, xb, _ in slots:  # open-ended bins: below the reference min, above its max
        parts.append(
            f'<rect x="{xa:.1f}" y="{top:.1f}" width="{xb - xa:.1f}" height="{ybase - top:.1f}" '
            'fill="#f8fafc" stroke="#cbd5e1" stroke-dasharray="2 2"/>'
        )
    if p_ref is not None:
        for (_, _, xa, xb, _), h in zip(every, h_ref, strict=True):
            if h > 0:
                parts.append(
                    f'<rect x="{xa + 0.4:.1f}" y="{y(h):.1f}" width="{max(xb - xa - 0.8, 0.6):.1f}"'
                    f' height="{ybase - y(h):.1f}" fill="{_REF}" fill-opacity="0.6"/>'
                )
    if p_cur is not None:
        parts.extend(_step_paths(every, h_cur, y, ybase, color))
    parts.append(
        f'<line x1="{left}" x2="{PLOT_W - right}" y1="{ybase}" y2="{ybase}" stroke="#cbd5e1"/>'
    )
    # tick labels: the reference minimum, a middle edge and the maximum
    ticks = [(x0, bins[0][2] if bins else edges[0], "start")]
    ticks.append((x1, bins[-1][3] if bins else edges[-1], "end"))
    if len(boxes) >= 4:
        mid = len(boxes) // 2
        ticks.append((boxes[mid][2], bins[mid][2], "middle"))
    for x, value, anchor in ticks:
        parts.append(
            f'<text x="{x:.1f}" y="{PLOT_H - 3}" font-size="9" fill="#64748b" '
            f'text-anchor="{anchor}">{_e(_num(value))}</text>'
        )
    for box in every:  # hover targets with the exact numbers
        first, last, xa, xb, _ = box
        parts.append(
            f'<rect x="{xa:.1f}" y="{top:.1f}" width="{xb - xa:.1f}" height="{ybase - top:.1f}" '
            f'fill="transparent"><title>{_e(_bin_text(edges, first, last))}: reference '
            f"{_pct(share(pr, box), 1)} · current {_pct(share(pc, box), 1)}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _display_bins(edges: Sequence[float]) -> list[tuple[int, int, float, float]]:
    """The inner bins as (first, last count index, low, high), a bin of (almost) no width merged
    into its neighbour: profiles end with ``[max, nextafter(max))``, which holds the maximum."""
    span = edges[-1] - edges[0]
    out: list[tuple[int, int, float, float]] = []
    for i in range(1, len(edges)):
        lo, hi = edges[i - 1], edges[i]
        if out and hi - lo <= span * 1e-9:
            first, _, start, _ = out[-1]
            out[-1] = (first, i, start, hi)
        elif out and out[-1][3] - out[-1][2] <= span * 1e-9:
            _, _, start, _ = out[-1]
            out[-1] = (out[-1][0], i, start, hi)
        else:
            out.append((i, i, lo, hi))
    return out


def _step_paths(
    boxes: list[tuple[int, int, float, float, float]],
    heights: list[float],
    y: Callable[[float], float],
    ybase: float,
    color: str,
) -> list[str]:
    """The current histogram as one outlined, lightly filled step shape per contiguous run."""
    runs: list[list[tuple[float, float, float]]] = []
    for (_, _, xa, xb, _), h in zip(boxes, heights, strict=True):
        if runs and abs(runs[-1][-1][1] - xa) < 0.01:
            runs[-1].append((xa, xb, h))
        else:
            runs.append([(xa, xb, h)])
    out = []
    for run in runs:
        d = [f"M{run[0][0]:.1f},{ybase:.1f}"]
        for xa, xb, h in run:
            d.append(f"L{xa:.1f},{y(h):.1f}L{xb:.1f},{y(h):.1f}")
        d.append(f"L{run[-1][1]:.1f},{ybase:.1f}Z")
        out.append(
            f'<path d="{"".join(d)}" fill="{color}" fill-opacity="0.16" stroke="{color}" '
            'stroke-width="1.5" stroke-linejoin="round"/>'
        )
    return out


def _categorical_svg(ref: Distribution | None, cur: Distribution | None, color: str) -> str:
    shares_ref = _category_shares(ref)
    shares_cur = _category_shares(cur)
    names = [n for n in dict.fromkeys([*shares_ref, *shares_cur]) if n != _OTHER]
    # new categories first (they are news), then by the larger of the two shares
    names.sort(
        key=lambda n: (
            not (shares_ref and n not in shares_ref),
            -max(shares_ref.get(n, 0.0), shares_cur.get(n, 0.0)),
            n,
        )
    )
    top, rest = names[:TOP_CATEGORIES], names[TOP_CATEGORIES:]
    rows: list[tuple[str, float, float, bool]] = [
        (
            n,
            shares_ref.get(n, 0.0),
            shares_cur.get(n, 0.0),
            bool(shares_ref) and n not in shares_ref,
        )
        for n in top
    ]
    other_ref = shares_ref.get(_OTHER, 0.0) + sum(shares_ref.get(n, 0.0) for n in rest)
    other_cur = shares_cur.get(_OTHER, 0.0) + sum(shares_cur.get(n, 0.0) for n in rest)
    if other_ref > 0 or other_cur > 0:
        extra = f" ({len(rest)} more)" if rest else ""
        rows.append((f"other{extra}", other_ref, other_cur, False))
    row_h, label_w, top_pad = 12.0, 96.0, 2.0
    height = top_pad + row_h * len(rows) + 2
    bar_x, bar_w = label_w + 4, PLOT_W - label_w - 40
    peak = max([r[1] for r in rows] + [r[2] for r in rows] + [1e-12])
    parts = [_svg_open(PLOT_W, height)]
    for n, (name, a, b, new) in enumerate(rows):
        y0 = top_pad + n * row_h
        short = name if len(name) <= 16 else name[:15] + "…"
        parts.append(
            f'<text x="{label_w:.0f}" y="{y0 + 9:.1f}" font-size="9.5" text-anchor="end" '
            f'fill="{_BAD if new else "#334155"}">{_e(short)}{" (new)" if new else ""}</text>'
        )
        wa, wb = a / peak * bar_w, b / peak * bar_w
        parts.append(
            f'<rect x="{bar_x:.1f}" y="{y0 + 1:.1f}" width="{max(wa, 0.0):.1f}" height="4.6" '
            f'fill="{_REF}" fill-opacity="0.75"/>'
            f'<rect x="{bar_x:.1f}" y="{y0 + 5.8:.1f}" width="{max(wb, 0.0):.1f}" height="4.6" '
            f'fill="{color}" fill-opacity="0.85"/>'
            f'<text x="{bar_x + max(wa, wb) + 3:.1f}" y="{y0 + 9:.1f}" font-size="8.5" '
            f'fill="#64748b">{_pct(b, 1)}</text>'
            f'<rect x="0" y="{y0:.1f}" width="{PLOT_W}" height="{row_h}" fill="transparent">'
            f"<title>{_e(name)}: reference {_pct(a, 1)} · current {_pct(b, 1)}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _line_chart(
    labels: Sequence[str],
    values: Sequence[float | None],
    flagged: Sequence[bool],
    *,
    reference: float | None,
    zone: tuple[float, float] | None,
    limit: float | None,
    percent: bool,
) -> str:
    """A line chart of one value per window: the reference dashed, the bad zone shaded."""
    shorts = [label if len(label) <= 24 else label[:23] + "…" for label in labels]
    label_w = max((len(t) for t in shorts), default=0) * 6.2  # px at font-size 11
    width, height = 1000.0, 210.0
    left, right, top, bottom = max(56.0, label_w / 2 + 4), max(16.0, label_w / 2 + 4), 12.0, 30.0
    finite = [v for v in values if v is not None and math.isfinite(v)]
    marks = [m for m in (reference, limit) if m is not None and math.isfinite(m)]
    lo = min([*finite, *marks], default=0.0)
    hi = max([*finite, *marks], default=1.0)
    if percent:
        lo, hi = 0.0, max(hi, 0.05)
    pad = (hi - lo) * 0.08 or 0.05
    lo, hi, grid_lines = _nice_scale(lo if percent else lo - pad, hi + pad)
    n = len(values)

    def x(i: int) -> float:
        return left + (i / (n - 1) if n > 1 else 0.5) * (width - left - right)

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * (height - top - bottom)

    def fmt(v: float) -> str:
        return _pct(v) if percent else _num(v, 3)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img">'
    ]
    if zone is not None:
        za, zb = max(zone[0], lo), min(zone[1], hi)
        if zb > za:
            parts.append(
                f'<rect x="{left}" y="{y(zb):.1f}" width="{width - left - right}" '
                f'height="{y(za) - y(zb):.1f}" fill="#fee2e2" fill-opacity="0.7"/>'
            )
    for grid in grid_lines:  # horizontal grid with labels
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(grid):.1f}" y2="{y(grid):.1f}" '
            'stroke="#eef2f7"/>'
            f'<text x="{left - 6}" y="{y(grid) + 3:.1f}" font-size="11" fill="#64748b" '
            f'text-anchor="end">{_e(fmt(grid))}</text>'
        )
    if reference is not None and math.isfinite(reference):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(reference):.1f}" '
            f'y2="{y(reference):.1f}" stroke="#334155" stroke-dasharray="5 4" stroke-width="1.2"/>'
        )
    if limit is not None and math.isfinite(limit):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(limit):.1f}" y2="{y(limit):.1f}" '
            f'stroke="{_BAD}" stroke-width="1" stroke-opacity="0.6"/>'
        )
    segment: list[str] = []
    for i, point in enumerate([*values, None]):
        if point is not None and math.isfinite(point):
            segment.append(f"{x(i):.1f},{y(point):.1f}")
        elif segment:
            parts.append(
                f'<polyline points="{" ".join(segment)}" fill="none" stroke="{_CUR}" '
                'stroke-width="2" stroke-linejoin="round"/>'
            )
            segment = []
    for i, (point, bad) in enumerate(zip(values, flagged, strict=True)):
        if point is None or not math.isfinite(point):
            continue
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(point):.1f}" r="{4.2 if bad else 3.4}" '
            f'fill="{_BAD if bad else _CUR}" stroke="#fff" stroke-width="1.2">'
            f"<title>{_e(labels[i])}: {_e(fmt(point))}</title></circle>"
        )
    spacing = (width - left - right) / max(n - 1, 1)
    every = max(1, math.ceil((label_w + 14) / spacing))
    ticks = list(range(0, n, every))
    if ticks[-1] != n - 1:
        if n - 1 - ticks[-1] < every:
            ticks[-1] = n - 1
        else:
            ticks.append(n - 1)
    for i in ticks:
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - 10}" font-size="11" fill="#64748b" '
            f'text-anchor="middle">{_e(shorts[i])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


# -- helpers ---------------------------------------------------------------------------------


def _nice_scale(lo: float, hi: float, target: int = 5) -> tuple[float, float, list[float]]:
    """Round bounds and grid values (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    raw = (hi - lo) / max(target - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start, stop = math.floor(lo / step) * step, math.ceil(hi / step) * step
    count = round((stop - start) / step)
    return start, stop, [start + i * step for i in range(count + 1)]


def _svg_open(width: float, height: float) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img">'
    )


def _proportions(dist: Distribution | None, k: int) -> list[float] | None:
    if dist is None or len(dist.counts) != k:
        return None
    total = float(sum(dist.counts))
    return [c / total if total > 0 else 0.0 for c in dist.counts]


def _category_shares(dist: Distribution | None) -> dict[str, float]:
    if dist is None or not dist.categories:
        return {}
    total = float(sum(dist.counts))
    shares: dict[str, float] = {}
    for name, count in zip(dist.categories, dist.counts, strict=False):
        shares[name] = shares.get(name, 0.0) + (count / total if total > 0 else 0.0)
    return shares


def _missing_note(ref: Distribution | None, cur: Distribution | None) -> str:
    def rate(d: Distribution | None) -> float | None:
        if d is None:
            return None
        total = float(sum(d.counts)) + d.missing
        return d.missing / total if total > 0 else 0.0

    a, b = rate(ref), rate(cur)
    # only rates that matter: at least 1% on one side and half a point of change (or one side
    # unknown); a rise of 5 points is highlighted
    if max(a or 0.0, b or 0.0) < 0.01:
        return ""
    if a is not None and b is not None and abs(b - a) < 0.005:
        return ""
    jump = a is not None and b is not None and b - a > 0.05
    text = (
        f"missing {_pct(a, 1) if a is not None else '—'} → {_pct(b, 1) if b is not None else '—'}"
    )
    return f'<div class="miss">{f"<b>{text}</b>" if jump else text}</div>'


def _bin_text(edges: Sequence[float], first: int, last: int) -> str:
    if first == 0:
        return f"below the reference minimum {_num(edges[0])}"
    if first == len(edges):
        return f"above the reference maximum {_num(edges[-1])}"
    close = "]" if last == len(edges) - 1 else ")"
    return f"[{_num(edges[first - 1])}, {_num(edges[last])}{close}"


def _statement(f: FeatureDrift) -> str:
    if f.p_value is not None:
        op = "<" if f.drifted else "≥"
        return f"{_e(f.method)} p = {_p(f.p_value)} {op} {_num(f.threshold)}"
    op = "≥" if f.drifted else "<"
    return f"{_e(f.method)} {_num(f.statistic)} {op} {_num(f.threshold)}"


def _performance_sentence(perf: PerformanceResult) -> str:
    value = perf.metrics.get(perf.metric)
    ref = perf.reference.get(perf.metric)
    text = f"{_e(perf.metric)} {_num(value)} vs reference {_num(ref)}"
    if perf.drop is not None:
        relation = ">" if perf.degraded else "≤"
        text += f": drop {_num(perf.drop)} {relation} max {_num(perf.max_drop)}"
    return (
        text
        + f" on {perf.n_labelled:,} labelled rows"
        + (" — <b>degraded</b>" if perf.degraded else "")
    )


def _window_text(result: CheckResult) -> str:
    w = result.window
    if w.start is None and w.end is None:
        return ""

    def fmt(moment: dt.datetime | None) -> str:
        return moment.strftime("%Y-%m-%d %H:%M") if moment else "…"

    return f"{fmt(w.start)} → {fmt(w.end)}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "—"
    v = float(value)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-4):
        return f"{v:.2e}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isnan(value):
        return "—"
    if value < 1e-4:
        return f"{value:.1e}" if value > 0 else "< 1e-300"
    return f"{value:.4f}"


def _v(value: float | None) -> str:
    """A sort key for ``data-v`` (non-finite and missing sort last)."""
    if value is None or math.isnan(value):
        return ""
    if math.isinf(value):
        return "1e308" if value > 0 else "-1e308"
    return repr(float(value))


def _pct(value: float | None, digits: int = 0) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value * 100:.{digits}f}%"


def _ratio_bar(ratio: float) -> str:
    if math.isnan(ratio):
        return ""
    width = min(max(ratio, 0.0), 3.0) / 3.0 * 100
    return f'<span class="ratio{" hot" if ratio > 1 else ""}"><i style="width:{width:.1f}%"></i></span>'


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


_TEMPLATE: Template | None = None


def _template() -> Template:
    global _TEMPLATE
    if _TEMPLATE is None:
        source = resources.files("kyklos.monitoring").joinpath("templates/report.html")
        _TEMPLATE = Template(source.read_text(encoding="utf-8"))
    return _TEMPLATE
