"""The HTML/JSON monitor report: structure, order, escaping, size, atomic writes, a real browser."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from kyklos.errors import StoreError
from kyklos.monitoring.report import render_html, render_json, write_report
from kyklos.monitoring.results import CheckResult, PerformanceResult, QualityIssue, WindowSpec
from kyklos.monitoring.signals import drift_ratio
from monitoring_output.factory import make_result

CHROMIUM = "/usr/bin/chromium"
EVIL = '<script>alert("x")</script>&'


class Page(HTMLParser):
    """Collects what the tests look at: elements with ids, feature rows, svgs, scripts, links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.order: list[str] = []  # ids of sections in document order
        self.rows: list[dict[str, str]] = []
        self.svgs = 0
        self.scripts = 0
        self.external: list[str] = []
        self.verdict: str | None = None
        self.texts: list[str] = []
        self._in_features = False
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.order.append(a["id"])
        if a.get("id") == "verdict":
            self.verdict = a.get("data-verdict")
        if tag == "table" and a.get("id") == "features":
            self._in_features = True
        if self._in_features and tag == "tr" and "data-name" in a:
            self.rows.append(a)
        if tag == "svg":
            self.svgs += 1
        if tag == "script":
            self.scripts += 1
            if "src" in a:
                self.external.append(a["src"])
        for key in ("src", "href"):
            if key in a and a[key].startswith(("http:", "https:", "//")):
                self.external.append(a[key])

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_features = False

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def test_report_reads_top_down_verdict_first_then_features_sorted_by_drift(
    drifted: CheckResult,
) -> None:
    page = parse(render_html(drifted))
    assert page.verdict == "degraded"
    assert page.order.index("verdict") < page.order.index("features")
    assert page.order.index("features") < page.order.index("prediction")
    assert page.order.index("prediction") < page.order.index("quality")
    assert page.order.index("quality") < page.order.index("performance")
    assert len(page.rows) == 25
    names = [row["data-name"] for row in page.rows]
    by_name = {f.feature: f for f in drifted.features}
    flags = [by_name[n].drifted for n in names]
    assert flags == sorted(flags, reverse=True)  # every drifted feature comes first
    n_drifted = sum(flags)
    assert n_drifted == sum(f.drifted for f in drifted.features) >= 8
    ratios = [drift_ratio(by_name[n]) for n in names[:n_drifted]]
    assert ratios == sorted(ratios, reverse=True)
    text = " ".join(page.texts)
    assert "Performance degraded" in text
    assert f"{n_drifted} of 25" in text
    assert "ZZ (new)" in text  # the new category of carrier is shown, though small
    assert "missing 1.0% → 23.7%" in text  # wind_gust's missing-rate jump under its plot


def test_report_has_one_overlay_per_feature_plus_prediction_and_charts(
    drifted: CheckResult, history: list[CheckResult]
) -> None:
    alone = parse(render_html(drifted))
    assert alone.svgs == 25 + 1  # features + prediction; no chart without earlier windows
    over_time = parse(render_html(history[-1], history=history))
    assert over_time.svgs == 25 + 1 + 2  # + drift share and roc_auc over time
    assert over_time.order.index("performance") < len(over_time.order)
    html = render_html(history[-1], history=history)
    assert html.count("<circle") == 8 + 7  # one window of the eight had no labels yet


def test_report_is_self_contained(drifted: CheckResult) -> None:
    page = parse(render_html(drifted, title="flights weekly"))
    assert page.external == []
    assert page.scripts == 1  # the inline sort/filter script
    assert "<title>flights weekly</title>" in render_html(drifted, title="flights weekly")


def test_report_escapes_all_user_text() -> None:
    result = make_result(
        rename={"dep_time": EVIL, "temp": "a&b"}, new_category="<img src=x onerror=alert(1)>"
    )
    result = dataclasses.replace(
        result,
        window=dataclasses.replace(result.window, label="<b>window</b>"),
        quality=(QualityIssue(EVIL, "out_of_range", 3, "</td><script>bad()</script>", "error"),),
    )
    html = render_html(result, title="<i>title</i>")
    page = parse(html)
    assert page.scripts == 1
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "<b>window</b>" not in html and "<i>title</i>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in html
    assert EVIL in {row["data-name"] for row in page.rows}  # round-trips as text
    assert len(page.rows) == 25


def test_report_size_depends_on_features_and_bins_not_rows() -> None:
    small = render_html(make_result(n_rows=1_000, n_reference=5_000, seed=3))
    large = render_html(make_result(n_rows=200_000, n_reference=400_000, seed=3))
    assert abs(len(large) - len(small)) / len(small) < 0.03
    assert len(large) < 250_000


@pytest.mark.parametrize(
    ("drift", "auc", "quality", "verdict", "word"),
    [
        (0.0, 0.760, False, "ok", "No drift"),
        (1.0, 0.760, False, "drift", "Drift detected"),
        (0.0, 0.700, False, "degraded", "Performance degraded"),
        (0.0, 0.760, True, "quality", "Data-quality errors"),
    ],
    ids=["ok", "drift", "degraded", "quality"],
)
def test_verdict_banner(drift: float, auc: float, quality: bool, verdict: str, word: str) -> None:
    result = make_result(drift=drift, auc=auc, quality=False, seed=11)
    if quality:
        result = dataclasses.replace(
            result, quality=(QualityIssue("pressure", "type_violation", 4, "4 strings", "error"),)
        )
    assert result.verdict == verdict
    html = render_html(result)
    page = parse(html)
    assert page.verdict == verdict
    assert f'class="banner v-{verdict}"' in html
    assert word in " ".join(page.texts)


def test_report_of_a_bare_result_renders() -> None:
    bare = CheckResult(
        window=WindowSpec(start=None, end=None, n_rows=0),
        n_reference=0,
        features=(),
        share_drifted=0.0,
        dataset_drift=False,
        drift_share_threshold=0.3,
    )
    page = parse(render_html(bare, history=[bare]))
    assert page.verdict == "ok"
    assert page.rows == []
    assert page.svgs == 0
    text = " ".join(page.texts)
    assert "No features were checked." in text
    assert "no labelled rows yet" in text


def test_report_without_performance_values_and_nan_statistics(drifted: CheckResult) -> None:
    nan_feature = dataclasses.replace(
        drifted.features[0], statistic=float("nan"), p_value=None, drifted=False
    )
    result = dataclasses.replace(
        drifted,
        features=(nan_feature, *drifted.features[1:]),
        performance=PerformanceResult(
            n_labelled=0, metrics={}, reference={"roc_auc": 0.76}, metric="roc_auc",
            drop=None, max_drop=0.03, degraded=False,
        ),
    )  # fmt: skip
    page = parse(render_html(result))
    assert len(page.rows) == 25
    assert page.rows[-1]["data-name"] == nan_feature.feature  # unknown drift sorts last


def test_json_report_round_trips(drifted: CheckResult) -> None:
    data = json.loads(render_json(drifted))
    assert data["verdict"] == "degraded"
    assert CheckResult.from_dict(data) == drifted
    nan = dataclasses.replace(drifted, seconds=float("nan"))
    assert json.loads(render_json(nan))["seconds"] is None  # strict JSON, no NaN


def test_write_report_is_atomic(tmp_path: Path, drifted: CheckResult, calm: CheckResult) -> None:
    target = write_report(drifted, tmp_path / "out" / "report.html")
    assert parse(target.read_text()).verdict == "degraded"
    write_report(calm, target)
    assert parse(target.read_text()).verdict == "ok"
    as_json = write_report(drifted, tmp_path / "out" / "report.json")
    assert json.loads(as_json.read_text())["verdict"] == "degraded"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.json"]
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot write the monitor report"):
        write_report(drifted, blocker / "report.html")


# run after the report's own script: sort by statistic (ascending, two clicks), then filter
PROBE = """<script>
(function () {
  var th = document.querySelector('#features th[data-key="statistic"]');
  th.click(); th.click();
  var names = Array.prototype.map.call(
    document.querySelectorAll("#features tbody tr"), function (tr) { return tr.dataset.name; });
  document.body.setAttribute("data-sorted", names.join("|"));
  var box = document.getElementById("only-drifted");
  box.checked = true; box.dispatchEvent(new Event("change"));
  var shown = Array.prototype.filter.call(
    document.querySelectorAll("#features tbody tr"), function (tr) { return tr.style.display !== "none"; });
  document.body.setAttribute("data-shown", String(shown.length));
})();
</script>"""


def _dump_dom(path: Path, tmp_path: Path) -> str:
    env = {**os.environ, "HOME": str(tmp_path)}
    done = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", path.as_uri(),
        ],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="needs headless Chromium at /usr/bin/chromium (Debian package 'chromium')",
)
def test_report_in_headless_chromium(tmp_path: Path, history: list[CheckResult]) -> None:
    result = history[-1]
    report = write_report(result, tmp_path / "report.html", history=history)
    dom = _dump_dom(report, tmp_path)
    page = parse(dom)
    assert page.verdict == result.verdict == "degraded"
    assert "Performance degraded" in dom
    assert len(page.rows) == 25
    assert "showing 25 of 25" in dom  # the inline script ran in the browser
    assert page.svgs == 25 + 1 + 2

    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = _dump_dom(probed, tmp_path)
    sorted_names = re.search(r'data-sorted="([^"]*)"', dom)
    assert sorted_names is not None
    by_statistic = sorted(result.features, key=lambda f: f.statistic)
    assert sorted_names.group(1).split("|") == [f.feature for f in by_statistic]
    n_drifted = sum(f.drifted for f in result.features)
    assert f'data-shown="{n_drifted}"' in dom
    assert f"showing {n_drifted} of 25" in dom
