"""Data-quality checks: each issue detected with exact counts; chunks equal one shot."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from kyklos.data.profile import TableProfile, profile_table
from kyklos.errors import MonitorError
from kyklos.monitoring.quality import QualityAccumulator, check_quality

N = 200


@pytest.fixture(scope="module")
def reference() -> TableProfile:
    """num: 0..99 with 5 % missing; cat: a/b/c (all recorded); many: 80 values (top 50 kept);
    level: varies; when: timestamps."""
    import datetime as dt

    rng = np.random.default_rng(0)
    num = np.tile(np.arange(100.0), 2)
    num[:10] = np.nan
    return profile_table(
        pa.table(
            {
                "num": num,
                "cat": pa.array(
                    np.array(["a", "b", "c"])[rng.integers(0, 3, N)], pa.large_string()
                ),
                "many": pa.array([f"v{i % 80}" for i in range(N)], pa.large_string()),
                "level": rng.integers(0, 5, N).astype(np.int64),
                "code": pa.array(["x", "y"] * (N // 2), pa.large_string()),
                "when": pa.array(
                    [dt.datetime(2024, 1, 1) + dt.timedelta(minutes=i) for i in range(N)]
                ),
            }
        ),
        top_k=50,
    )


def _window(**changes: object) -> pa.Table:
    """A clean window of N rows (no issue), with some columns replaced."""
    import datetime as dt

    columns: dict[str, object] = {
        "num": np.linspace(0.0, 99.0, N),
        "cat": pa.array(["a", "b", "c", "a"] * (N // 4), pa.large_string()),
        "many": pa.array([f"v{i % 80}" for i in range(N)], pa.large_string()),
        "level": np.arange(N, dtype=np.int64) % 5,
        "code": pa.array(["y", "x"] * (N // 2), pa.large_string()),
        "when": pa.array([dt.datetime(2024, 2, 1) + dt.timedelta(minutes=i) for i in range(N)]),
    }
    columns.update(changes)
    return pa.table(columns)


def _found(issues: list) -> list[tuple[str, str, int, str]]:  # type: ignore[type-arg]
    return [(q.feature, q.kind, q.count, q.severity) for q in issues]


def test_a_clean_window_has_no_issue(reference: TableProfile) -> None:
    assert check_quality(reference, _window()) == []


def test_missing_rate_jump(reference: TableProfile) -> None:
    num = np.linspace(0.0, 99.0, N)
    num[:50] = np.nan  # 25 % missing against 5 %
    num[50:53] = np.inf  # ±inf are missing too, as in the profile
    issues = check_quality(reference, _window(num=num))
    assert _found(issues) == [("num", "missing_rate_jump", 53, "warning")]
    assert "0.05 → 0.265" in issues[0].detail
    assert check_quality(reference, _window(num=num), missing_jump=0.3) == []


def test_missing_rate_jump_counts_nulls_of_categorical_columns(reference: TableProfile) -> None:
    cat = pa.array(["a", None, None, "b"] * (N // 4), pa.large_string())
    assert _found(check_quality(reference, _window(cat=cat))) == [
        ("cat", "missing_rate_jump", N // 2, "warning")
    ]


def test_out_of_range(reference: TableProfile) -> None:
    num = np.linspace(0.0, 99.0, N)
    num[:3] = [-1.0, -0.5, -100.0]
    num[3:7] = 99.5
    issues = check_quality(reference, _window(num=num))
    assert _found(issues) == [("num", "out_of_range", 7, "warning")]
    assert issues[0].detail.startswith("3 values below the reference minimum 0 and 4 above")


def test_new_categories_when_the_reference_recorded_all(reference: TableProfile) -> None:
    values = ["a", "b", "c", "a"] * (N // 4)
    values[:5] = ["z", "z", "z", "q", "q"]
    issues = check_quality(reference, _window(cat=pa.array(values, pa.large_string())))
    assert _found(issues) == [("cat", "new_category", 5, "warning")]
    assert "'z' (3), 'q' (2)" in issues[0].detail


def test_no_new_category_claim_when_the_reference_kept_only_its_top_k(
    reference: TableProfile,
) -> None:
    assert reference["many"].other > 0
    many = pa.array([f"w{i}" for i in range(N)], pa.large_string())
    assert check_quality(reference, _window(many=many)) == []


def test_type_violation_for_strings_in_a_numeric_column(reference: TableProfile) -> None:
    values = [str(v) for v in np.linspace(0.0, 99.0, N)]
    values[:4] = ["abc", "n/a", " 12 ", "1e1"]  # two are numbers after all
    issues = check_quality(reference, _window(num=pa.array(values, pa.large_string())))
    assert _found(issues) == [("num", "type_violation", 2, "error")]
    assert "e.g. 'abc'" in issues[0].detail


def test_type_violation_for_a_missing_column(reference: TableProfile) -> None:
    issues = check_quality(reference, _window().drop_columns(["cat"]))
    assert _found(issues) == [("cat", "type_violation", N, "error")]
    assert "expected categorical" in issues[0].detail


def test_constant_column(reference: TableProfile) -> None:
    level = np.full(N, 3, dtype=np.int64)
    code = pa.array(["x"] * (N - 10) + [None] * 10, pa.large_string())
    issues = check_quality(reference, _window(level=level, code=code))
    assert _found(issues) == [
        ("level", "constant", N, "warning"),
        ("code", "constant", N - 10, "warning"),
    ]


def test_errors_come_first_and_issues_are_json(reference: TableProfile) -> None:
    level = np.full(N, 3, dtype=np.int64)
    window = _window(level=level).drop_columns(["code"])
    issues = check_quality(reference, window)
    assert [q.kind for q in issues] == ["type_violation", "constant"]
    json.dumps([q.to_dict() for q in issues], allow_nan=False)


def test_features_subset(reference: TableProfile) -> None:
    window = _window().drop_columns(["cat"])
    assert check_quality(reference, window, features=["num"]) == []
    with pytest.raises(MonitorError, match=r"\['nope'\]"):
        check_quality(reference, window, features=["nope"])


def test_chunked_accumulator_equals_one_shot(reference: TableProfile) -> None:
    num = np.linspace(0.0, 99.0, N)
    num[:60] = np.nan
    num[60:65] = 500.0
    values = ["a", "b", "c", "a"] * (N // 4)
    values[100:103] = ["z", "zz", "z"]
    window = _window(
        num=num, cat=pa.array(values, pa.large_string()), level=np.full(N, 2, dtype=np.int64)
    )
    one_shot = check_quality(reference, window)
    assert {q.kind for q in one_shot} == {
        "missing_rate_jump",
        "out_of_range",
        "new_category",
        "constant",
    }
    acc = QualityAccumulator(reference)
    for start in range(0, N, 37):
        acc.update(window.slice(start, 37))
    assert acc.result() == one_shot
    left, right = QualityAccumulator(reference), QualityAccumulator(reference)
    left.update(window.slice(0, 90))
    right.update(window.slice(90))
    assert left.merge(right).result() == one_shot


def test_a_categorical_column_varying_across_chunks_is_not_constant(
    reference: TableProfile,
) -> None:
    window = _window(code=pa.array(["x"] * (N // 2) + ["y"] * (N // 2), pa.large_string()))
    acc = QualityAccumulator(reference, ["code"])
    acc.update(window.slice(0, N // 2)).update(window.slice(N // 2))
    assert acc.result() == []
