"""Benchmark (not a test): drift detection, kyklos vs Evidently's data drift report vs scipy
per-column tests, side by side in one run. Measured figures: BENCHMARKS.md.

Cases (``--cases``, all by default):

* ``narrow``: 100k and 1M rows (``--rows``) × 25 features (20 numeric, 5 categorical, drift
  injected in 5), reference as large as the window. kyklos's reference profile is computed
  once in its own process (timed apart: it happens at training time); then each tool checks
  the window in a fresh process: wall time of the check and peak RSS (``wait4``'s
  ``ru_maxrss`` of the child, plus per-phase peaks the child measures itself).
* ``values``: on the 100k case, each statistic set explicitly on both kyklos and Evidently
  (normalised Wasserstein, Jensen–Shannon, PSI, KS / chi-square), next to the exact raw-data
  value scipy computes.
* ``wide``: 10M rows × 200 columns (``--wide-rows``) against a 1M-row reference: kyklos
  streams the Parquet file through ``DriftAccumulator`` in chunks; Evidently is attempted
  with a memory cap and a timeout (a watchdog kills it above ``--memory-cap-gib`` resident or
  when the machine has less than 2 GiB available) and reported as such.
* ``flights``: detection quality on the example data: months 1–2 against 6–7 and against 9,
  what each tool flags.

Each tool runs in its own child process (kyklos and scipy in this venv, Evidently in its own,
``--evidently-python``). Data is generated once (seeded, ``synth.py``) under ``--data``.

    .venv/bin/python benchmarks/monitoring/run.py [--cases narrow,values,wide,flights]
        [--rows 100000 1000000] [--repeat 5] [--evidently-python /tmp/evidently-venv/bin/python]
        [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import synth  # noqa: E402

MIB = 1024 * 1024
GIB = 1024 * MIB
FLIGHTS = ROOT / "src" / "kyklos" / "datasets" / "flights.parquet"


# -- child processes --------------------------------------------------------------------------
def _meminfo_available() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return sys.maxsize


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (0 once it is gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (OSError, ValueError):
            continue
    return total


def spawn(
    cmd: list[str],
    *,
    timeout: float | None = None,
    memory_cap: int | None = None,
    min_available: int = 2 * GIB,
) -> dict[str, Any]:
    """Run one child; its ``RESULT`` line, wall time, exit status and peak RSS (``wait4``).

    With ``memory_cap`` a watchdog kills the child when its resident set exceeds the cap or
    the machine's available memory drops below ``min_available``; with ``timeout`` when it
    runs longer. ``status`` says which: ok, failed, timeout, memory cap, machine memory low.
    """
    env = dict(os.environ, PYTHONPATH=str(HERE), PYTHONWARNINGS="ignore")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        status, watched_peak = "ok", 0
        while True:
            pid, code, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.perf_counter() - start
            if memory_cap is not None:
                resident = _tree_rss(proc.pid)
                watched_peak = max(watched_peak, resident)
                if resident > memory_cap:
                    status = "memory cap"
                elif _meminfo_available() < min_available:
                    status = "machine memory low"
            if timeout is not None and elapsed > timeout:
                status = "timeout"
            if status != "ok":
                os.kill(proc.pid, signal.SIGKILL)
                pid, code, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.1 if memory_cap is not None else 0.02)
        proc.returncode = os.waitstatus_to_exitcode(code)  # reaped here, not by Popen
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    result: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
    if status == "ok" and (proc.returncode != 0 or not result):
        status = "failed"
        if "MemoryError" in stderr:
            status = "memory error"
    result.update(
        status=status,
        exit_code=proc.returncode,
        wall_seconds=wall,
        max_rss_mib=usage.ru_maxrss * 1024 / MIB,  # Linux: KiB
        watched_peak_mib=watched_peak / MIB,
    )
    if status != "ok":
        result["stderr_tail"] = stderr[-1500:]
    return result


def kyklos(*args: str, **kw: Any) -> dict[str, Any]:
    return spawn([sys.executable, str(HERE / "kyklos_child.py"), *args], **kw)


def scipy_(*args: str, **kw: Any) -> dict[str, Any]:
    return spawn([sys.executable, str(HERE / "scipy_child.py"), *args], **kw)


def evidently(python: str, *args: str, **kw: Any) -> dict[str, Any]:
    return spawn([python, str(HERE / "evidently_child.py"), *args], **kw)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- cases ------------------------------------------------------------------------------------
def narrow(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    for rows in args.rows:
        ref, cur = synth.ensure(args.data, "narrow", rows)
        profile = ref.parent / "profile.json"
        say(f"narrow {rows:,}: kyklos profile")
        prof = kyklos("profile", "--reference", str(ref), "--out", str(profile))
        say(f"narrow {rows:,}: kyklos check")
        ky = kyklos(
            "check", "--profile", str(profile), "--current", str(cur), "--repeat", str(args.repeat)
        )
        say(f"narrow {rows:,}: scipy")
        sc = scipy_("check", "--reference", str(ref), "--current", str(cur))
        ev: dict[str, Any] = {"status": "skipped"}
        if args.evidently_python:
            say(f"narrow {rows:,}: evidently")
            ev = evidently(
                args.evidently_python,
                "preset",
                "--reference",
                str(ref),
                "--current",
                str(cur),
                timeout=args.evidently_timeout,
                memory_cap=int(args.memory_cap_gib * GIB),
            )
        out[str(rows)] = {
            "drifted": synth.drifted("narrow"),
            "profile": prof,
            "kyklos": ky,
            "scipy": sc,
            "evidently": ev,
        }
    return out


def values(args: argparse.Namespace) -> dict[str, Any]:
    rows = args.values_rows
    ref, cur = synth.ensure(args.data, "narrow", rows)
    profile = ref.parent / "profile.json"
    if not profile.exists():
        kyklos("profile", "--reference", str(ref), "--out", str(profile))
    say(f"values {rows:,}: kyklos, scipy, evidently")
    out = {
        "rows": rows,
        "kyklos": kyklos("values", "--profile", str(profile), "--current", str(cur)),
        "scipy": scipy_("values", "--reference", str(ref), "--current", str(cur)),
    }
    if args.evidently_python:
        out["evidently"] = evidently(
            args.evidently_python, "values", "--reference", str(ref), "--current", str(cur)
        )
    return out


def wide(args: argparse.Namespace) -> dict[str, Any]:
    say(f"wide {args.wide_rows:,}: data")
    ref, cur = synth.ensure(
        args.data, "wide", args.wide_rows, reference_rows=args.wide_reference_rows
    )
    profile = ref.parent / "profile.json"
    say("wide: kyklos profile")
    prof = kyklos("profile", "--reference", str(ref), "--out", str(profile))
    say("wide: kyklos stream")
    ky = kyklos(
        "stream",
        "--profile",
        str(profile),
        "--current",
        str(cur),
    )
    attempts: dict[str, Any] = {}
    if args.evidently_python and not args.skip_evidently_wide:
        # strings as Python objects (what pd.read_parquet gives); if that does not fit, as
        # pandas categories; then also loaded one column at a time (the smallest frame we
        # found: about 1.25x the Arrow size), so that Evidently itself gets its chance
        for label, extra in (
            ("object strings", []),
            ("category strings", ["--categories"]),
            ("category strings, column-by-column load", ["--categories", "--lean"]),
        ):
            say(
                f"wide: evidently, {label} (cap {args.memory_cap_gib} GiB, "
                f"timeout {args.wide_timeout:.0f} s)"
            )
            attempts[label] = evidently(
                args.evidently_python,
                "preset",
                "--reference",
                str(ref),
                "--current",
                str(cur),
                *extra,
                timeout=args.wide_timeout,
                memory_cap=int(args.memory_cap_gib * GIB),
            )
            if attempts[label]["status"] == "ok":
                break
    return {
        "rows": args.wide_rows,
        "reference_rows": args.wide_reference_rows,
        "drifted": synth.drifted("wide"),
        "profile": prof,
        "kyklos": ky,
        "evidently": attempts,
        "memory_cap_gib": args.memory_cap_gib,
        "timeout_seconds": args.wide_timeout,
    }


def flights(args: argparse.Namespace) -> dict[str, Any]:
    common = ["--data", str(FLIGHTS), "--reference-months", "1,2", "--current-months", "6,7", "9"]
    say("flights: kyklos, evidently")
    out = {"kyklos": kyklos("flights", *common)}
    if args.evidently_python:
        out["evidently"] = evidently(args.evidently_python, "flights", *common)
    return out


# -- report -----------------------------------------------------------------------------------
def _s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _m(mib: float | None) -> str:
    return "—" if mib is None else (f"{mib / 1024:.2f} GiB" if mib >= 1024 else f"{mib:.0f} MiB")


def _check(r: dict[str, Any]) -> float | None:
    return r.get("check_median") if r.get("status") == "ok" else None


def report_narrow(results: dict[str, Any]) -> list[str]:
    lines = [
        "| rows × features | tool | check (median) | ratio to kyklos | RSS before load | "
        "peak RSS (process) | features flagged |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for rows, case in results.items():
        base = _check(case["kyklos"])
        for tool in ("kyklos", "scipy", "evidently"):
            r = case[tool]
            t = _check(r)
            ratio = f"{t / base:,.0f}×" if t and base and tool != "kyklos" else "1×"
            before = r.get("phases", {}).get("load", {}).get("rss_before_mib")
            flagged = r.get("flagged")
            drifted = set(case["drifted"])
            shown = (
                r["status"]
                if flagged is None
                else f"{len(flagged)}: {len(drifted & set(flagged))}/{len(drifted)} injected"
                + (f" + {sorted(set(flagged) - drifted)}" if set(flagged) - drifted else "")
            )
            lines.append(
                f"| {int(rows):,} × 25 | {tool} | {_s(t) if t else r['status']} | "
                f"{ratio if t else '—'} | {_m(before)} | {_m(r.get('max_rss_mib'))} | {shown} |"
            )
    lines += [
        "",
        "kyklos detail: the one-off reference profile; the floor the issue names (one "
        "`np.histogram` per numeric column on the reference edges + `value_counts` per "
        "categorical, median); the window's load and memory:",
        "",
    ]
    lines += [
        "| rows | one-off profile (load / canonicalize / profile) | numpy floor | window raw (Arrow) | "
        "window load: time, RSS growth | check: peak − RSS before it | "
        "process peak − RSS before load |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for rows, case in results.items():
        p, k = case["profile"].get("phases", {}), case["kyklos"]
        if k.get("status") != "ok":
            continue
        ph = k["phases"]
        raw = k["window_bytes"] / MIB
        extra = ph["check"]["peak_mib"] - ph["check"]["rss_before_mib"]
        grown = ph["load"]["rss_after_mib"] - ph["load"]["rss_before_mib"]
        total = max(ph["check"]["peak_mib"], ph["load"]["peak_mib"]) - ph["load"]["rss_before_mib"]
        lines.append(
            f"| {int(rows):,} | {_s(p.get('load', {}).get('seconds'))} / "
            f"{_s(p.get('canonicalize', {}).get('seconds'))} / "
            f"{_s(p.get('profile', {}).get('seconds'))} | "
            f"{_s(k.get('numpy_histogram_seconds'))} | {_m(raw)} | "
            f"{_s(ph['load']['seconds'])}, +{grown:.0f} MiB ({grown / raw:.2f}×) | "
            f"{extra:.1f} MiB ({extra / raw:.2f}×) | {total:.0f} MiB ({total / raw:.2f}×) |"
        )
    return lines


def report_values(results: dict[str, Any]) -> list[str]:
    ky, ev, sc = (results.get(t, {}).get("values", {}) for t in ("kyklos", "evidently", "scipy"))
    lines = _values_compact(results.get("rows", 0), ky, ev, sc)
    root_ln2 = 0.6931471805599453**0.5  # kyklos's base-2 Jensen–Shannon × √ln2 = natural log
    specs = [  # (run, kind, title, kyklos scale, exact key, exact scale)
        ("wasserstein", "numeric", "normalised Wasserstein", 1.0, "wasserstein", 1.0),
        (
            "jensenshannon",
            "numeric",
            "Jensen–Shannon, numeric (kyklos's base-2 value × √ln 2, Evidently's natural log)",
            root_ln2,
            None,
            1.0,
        ),
        (
            "jensenshannon",
            "categorical",
            "Jensen–Shannon, categorical (kyklos × √ln 2)",
            root_ln2,
            "jensenshannon",
            root_ln2,
        ),
        ("psi", "numeric", "PSI, numeric", 1.0, None, 1.0),
        ("psi", "categorical", "PSI, categorical", 1.0, "psi", 1.0),
    ]
    for run, kind, title, scale, exact, exact_scale in specs:
        lines += [
            "",
            f"**{title}** ({results.get('rows', 0):,} rows)",
            "",
            "| feature | kyklos | Evidently | kyklos − Evidently | exact (scipy, raw) |",
            "|---|---:|---:|---:|---:|",
        ]
        for name in sorted(ky.get(run, {})):
            if (kind == "numeric") != name.startswith("num"):
                continue
            k = ky[run][name]["statistic"] * scale
            e = ev.get(run, {}).get(name, {}).get("statistic")
            x = sc.get(name, {}).get(exact) if exact else None
            lines.append(
                f"| {name} | {k:.4f} | {'—' if e is None else f'{e:.4f}'} | "
                f"{'—' if e is None else f'{k - e:+.4f}'} | "
                f"{'—' if x is None else f'{x * exact_scale:.4f}'} |"
            )
    lines += [
        "",
        f"**KS (numeric) and chi-square (categorical)** ({results.get('rows', 0):,} rows): "
        "Evidently reports only the p-value",
        "",
        "| feature | kyklos statistic | exact statistic (scipy) | kyklos p | Evidently p | "
        "exact p (scipy) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in sorted(ky.get("ks", {})):
        k = ky["ks"][name]
        e = ev.get("ks", {}).get(name, {}).get("statistic")
        x = sc.get(name, {})
        stat = x.get("ks_statistic", x.get("chi2_statistic"))
        p = x.get("ks_p_value", x.get("chi2_p_value"))
        lines.append(
            f"| {name} ({k['method']}) | {k['statistic']:.4g} | "
            f"{'—' if stat is None else f'{stat:.4g}'} | {k['p_value']:.3g} | "
            f"{'—' if e is None else f'{e:.3g}'} | {'—' if p is None else f'{p:.3g}'} |"
        )
    return lines


def _values_compact(rows: int, ky: Any, ev: Any, sc: Any) -> list[str]:
    """All methods in one table (Jensen–Shannon in Evidently's natural-log units)."""
    root_ln2 = 0.6931471805599453**0.5

    def get(source: Any, run: str, name: str, key: str = "statistic") -> float | None:
        value = source.get(run, {}).get(name, {}).get(key)
        return None if value is None else float(value)

    def f(value: float | None, spec: str = ".4f") -> str:
        return "—" if value is None else format(value, spec)

    lines = [
        f"**All methods side by side** ({rows:,} rows; JS: kyklos's base-2 value × √ln 2; "
        "KS / chi-square: the statistic, then the p-values)",
        "",
        "| feature | Wasserstein k / E | JS k / E | PSI k / E | KS D or χ² k / exact | "
        "p k / E / exact |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in sorted(ky.get("ks", {})):
        numeric = name.startswith("num")
        js_k = get(ky, "jensenshannon", name)
        exact = sc.get(name, {})
        stat_x = exact.get("ks_statistic" if numeric else "chi2_statistic")
        p_x = exact.get("ks_p_value" if numeric else "chi2_p_value")
        wasserstein = (
            f"{f(get(ky, 'wasserstein', name))} / {f(get(ev, 'wasserstein', name))}"
            if numeric
            else "—"
        )
        lines.append(
            f"| {name} | {wasserstein} | "
            f"{f(None if js_k is None else js_k * root_ln2)} / "
            f"{f(get(ev, 'jensenshannon', name))} | "
            f"{f(get(ky, 'psi', name))} / {f(get(ev, 'psi', name))} | "
            f"{f(get(ky, 'ks', name), '.4g')} / {f(stat_x, '.4g')} | "
            f"{f(get(ky, 'ks', name, 'p_value'), '.3g')} / {f(get(ev, 'ks', name), '.3g')} / "
            f"{f(p_x, '.3g')} |"
        )
    return lines


def report_wide(r: dict[str, Any]) -> list[str]:
    k, e, p = r["kyklos"], r["evidently"], r["profile"]
    if "status" in e:  # an older result: one attempt
        e = {"object strings": e}
    lines = [
        "| tool | rows × columns | status | time | peak RSS (process) | flagged |",
        "|---|---|---|---:|---:|---|",
    ]
    drifted = set(r["drifted"])
    if k.get("status") == "ok":
        flagged = set(k["flagged"])
        lines.append(
            f"| kyklos (streamed, {k['chunks']} chunks of {k['batch_rows']:,} rows) | "
            f"{k['rows']:,} × {k['columns']} | ok | {_s(k['seconds'])} "
            f"(read+decode {_s(k['read_seconds'])}, binning {_s(k['update_seconds'])}, "
            f"statistics {_s(k['result_seconds'])}) | {_m(k['max_rss_mib'])} | "
            f"{len(flagged)}: {len(flagged & drifted)}/{len(drifted)} injected"
            f"{f' + {sorted(flagged - drifted)}' if flagged - drifted else ''} |"
        )
    else:
        lines.append(f"| kyklos | | {k.get('status')} | | | |")
    for label, attempt in (e or {"not run": {"status": "skipped"}}).items():
        phase = _last_phase(attempt.get("stderr_tail", ""))
        status = attempt.get("status", "?") + (f" during {phase}" if phase else "")
        flagged = attempt.get("flagged")
        lines.append(
            f"| Evidently DataDriftPreset ({label}) | {r['rows']:,} × 200 | {status} | "
            f"{_s(attempt.get('wall_seconds'))} | "
            f"{_m(attempt.get('watched_peak_mib') or attempt.get('max_rss_mib'))} | "
            f"{'—' if flagged is None else f'{len(flagged)}: {len(set(flagged) & drifted)}/{len(drifted)} injected'} |"
        )
    pp = p.get("phases", {})
    lines += [
        "",
        f"kyklos one-off reference profile ({r['reference_rows']:,} rows × 200): "
        f"{_s(pp.get('profile', {}).get('seconds'))} "
        f"(+ load {_s(pp.get('load', {}).get('seconds'))}, canonicalize "
        f"{_s(pp.get('canonicalize', {}).get('seconds'))}), peak RSS {_m(p.get('max_rss_mib'))}.",
    ]
    if k.get("status") == "ok":
        lines.append(
            f"Current file: {k['file_bytes'] / GIB:.2f} GiB on disk, "
            f"{k['uncompressed_bytes'] / GIB:.2f} GiB uncompressed; "
            f"kyklos RSS before streaming {_m(k['rss_before_mib'])}."
        )
    return lines


def _last_phase(stderr: str) -> str | None:
    """The phase a killed child was in (from its progress lines)."""
    started = [
        ln.split("phase ", 1)[1].split()[0] for ln in stderr.splitlines() if " started" in ln
    ]
    done = [ln.split("phase ", 1)[1].split()[0] for ln in stderr.splitlines() if " done " in ln]
    return started[-1] if started and started[-1] not in done else None


def report_flights(r: dict[str, Any]) -> list[str]:
    k, e = r["kyklos"], r.get("evidently", {})
    lines = []
    for spec in k.get("current", {}):
        kc, ec = k["current"][spec], e.get("current", {}).get(spec, {})
        lines += [
            "",
            f"**months 1,2 ({k.get('reference_rows', 0):,} rows) vs months {spec} "
            f"({kc['rows']:,} rows)** (late rate {k['reference_late_rate']:.3f} → "
            f"{kc['late_rate']:.3f}); "
            f"kyklos flags {len(kc['flagged'])}, share {kc['share']:.2f}, dataset drift "
            f"{kc['dataset_drift']}; Evidently flags {len(ec.get('flagged', []))}",
            "",
            "| feature | kyklos method | kyklos value | kyklos | Evidently method | "
            "Evidently value | Evidently |",
            "|---|---|---:|---|---|---:|---|",
        ]
        for name, f in kc["features"].items():
            g = ec.get("features", {}).get(name, {})
            lines.append(
                f"| {name} | {f['method']} | {f['statistic']:.3f} | "
                f"{'**drift**' if f['drifted'] else '·'} | {g.get('method', '—')} | "
                f"{g['statistic']:.3f} | {'**drift**' if g.get('drifted') else '·'} |"
                if g
                else f"| {name} | {f['method']} | {f['statistic']:.3f} | "
                f"{'**drift**' if f['drifted'] else '·'} | — | — | — |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="narrow,values,wide,flights")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--values-rows", type=int, default=100_000)
    parser.add_argument("--wide-rows", type=int, default=10_000_000)
    parser.add_argument("--wide-reference-rows", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, default=Path("/tmp/kyklos-bench-monitoring"))
    parser.add_argument(
        "--evidently-python",
        default="/tmp/evidently-venv/bin/python",
        help="python of a venv with evidently==0.7.23 and pandas<3; '' to skip Evidently",
    )
    parser.add_argument("--evidently-timeout", type=float, default=1800.0)
    parser.add_argument("--wide-timeout", type=float, default=1800.0)
    parser.add_argument("--memory-cap-gib", type=float, default=16.0)
    parser.add_argument("--skip-evidently-wide", action="store_true")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument(
        "--from-json", type=Path, default=None, help="print the tables of an earlier --json-out"
    )
    args = parser.parse_args()
    if args.evidently_python and not Path(args.evidently_python).exists():
        say(f"no {args.evidently_python}: Evidently skipped (see benchmarks/monitoring/README.md)")
        args.evidently_python = ""
    cases = {"narrow": narrow, "values": values, "wide": wide, "flights": flights}
    reports = {
        "narrow": report_narrow,
        "values": report_values,
        "wide": report_wide,
        "flights": report_flights,
    }
    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        results = {"started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for name in args.cases.split(","):
            results[name] = cases[name](args)
            if args.json_out:
                args.json_out.write_text(json.dumps(results, indent=1, default=str))
    for name in [n for n in args.cases.split(",") if n in results]:
        print(f"\n### {name}\n")
        print("\n".join(reports[name](results[name])))
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")


if __name__ == "__main__":
    main()
