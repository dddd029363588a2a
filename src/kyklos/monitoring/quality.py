"""Data quality of a window against the reference profile: five checks, each with row counts.

============================  ====================================================  ========
kind                          when                                                  severity
============================  ====================================================  ========
``missing_rate_jump``         current missing rate − reference missing rate         warning
                              exceeds ``missing_jump`` (NaN, ±inf and nulls are
                              missing, as in the profile)
``out_of_range``              numeric values below the reference minimum or above   warning
                              its maximum
``new_category``              categories the reference never saw; only when the     warning
                              reference recorded all its categories (its "other"
                              count is 0 — otherwise a value outside its top-k may
                              just be a rare old one)
``type_violation``            an expected-numeric column holds strings that are     error
                              not numbers, or an expected column is missing
``constant``                  the column holds one value in the window (at least    warning
                              two rows) but more than one in the reference
============================  ====================================================  ========

Everything on the reference side comes from the stored profile. :class:`QualityAccumulator`
streams a window in chunks; :func:`check_quality` is one accumulator fed one table. Issues come
errors first, then in the reference's column order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from kyklos.data.profile import ColumnProfile, TableProfile
from kyklos.errors import MonitorError
from kyklos.monitoring.drift import (
    NUMBER_PATTERN,
    bin_numeric,
    categories_of,
    category_counts,
    numeric_chunk,
)
from kyklos.monitoring.results import QualityIssue

__all__ = ["DEFAULT_MISSING_JUMP", "ISSUE_KINDS", "QualityAccumulator", "check_quality"]

DEFAULT_MISSING_JUMP = 0.1
ISSUE_KINDS = ("type_violation", "missing_rate_jump", "out_of_range", "new_category", "constant")
UNSEEN_KEPT = 20  # new category names remembered per feature (their total count is exact)


@dataclass
class _State:
    """What the window showed so far of one feature."""

    column: ColumnProfile
    rows: int = 0
    missing: int = 0
    absent: int = 0  # rows of chunks lacking the column
    below: int = 0
    above: int = 0
    not_numbers: int = 0
    not_number_example: str | None = None
    unseen: int = 0
    unseen_names: dict[str, int] = field(default_factory=dict)
    low: float = np.inf  # smallest finite value (numeric)
    high: float = -np.inf
    values: set[str] = field(default_factory=set)  # distinct values seen, kept while < 2
    varies: bool = False  # more than one distinct value seen (categorical)

    @property
    def present(self) -> int:
        return self.rows - self.absent - self.missing - self.not_numbers


class QualityAccumulator:
    """Quality counters of the features of ``reference``, fed chunk by chunk.

    >>> import pyarrow as pa
    >>> from kyklos.data.profile import profile_table
    >>> reference = profile_table(pa.table({"x": [0.0, 1.0, 2.0]}))
    >>> issues = QualityAccumulator(reference).update(pa.table({"x": [5.0, 1.0]})).result()
    >>> [(i.kind, i.count) for i in issues]
    [('out_of_range', 1)]
    """

    def __init__(self, reference: TableProfile, features: Sequence[str] | None = None) -> None:
        names = reference.names if features is None else list(dict.fromkeys(features))
        unknown = [f for f in names if f not in reference]
        if unknown:
            raise MonitorError(
                f"feature(s) {unknown} are not in the reference profile; it has "
                f"{reference.names}. Hint: check the feature names, or the model version"
            )
        self.reference = reference
        self.features = tuple(names)
        self.n_rows = 0
        self._states = {name: _State(reference[name]) for name in names}

    def update(self, chunk: pa.Table) -> QualityAccumulator:
        """Count one table of window rows; returns ``self``."""
        n = chunk.num_rows
        self.n_rows += n
        for name, state in self._states.items():
            state.rows += n
            if name not in chunk.column_names:
                state.absent += n
            elif state.column.kind == "numeric":
                _numeric(state, chunk.column(name))
            elif state.column.kind in {"categorical", "boolean"}:
                _categorical(state, chunk.column(name))
            else:
                state.missing += chunk.column(name).null_count
        return self

    def merge(self, other: QualityAccumulator) -> QualityAccumulator:
        """Add the counters of another accumulator of the same features; returns ``self``."""
        if other.features != self.features:
            raise MonitorError("cannot merge quality accumulators of different features")
        self.n_rows += other.n_rows
        for name, mine in self._states.items():
            theirs = other._states[name]
            for attr in ("rows", "missing", "absent", "below", "above", "not_numbers", "unseen"):
                setattr(mine, attr, getattr(mine, attr) + getattr(theirs, attr))
            mine.not_number_example = mine.not_number_example or theirs.not_number_example
            _add_names(mine.unseen_names, theirs.unseen_names)
            mine.low, mine.high = min(mine.low, theirs.low), max(mine.high, theirs.high)
            mine.varies = mine.varies or theirs.varies or len(mine.values | theirs.values) > 1
            mine.values = set() if mine.varies else mine.values | theirs.values
        return self

    def result(self, *, missing_jump: float = DEFAULT_MISSING_JUMP) -> list[QualityIssue]:
        """The issues found, errors first, then in the reference's column order."""
        issues: list[QualityIssue] = []
        for state in self._states.values():
            issues.extend(_issues(state, missing_jump))
        order = {name: i for i, name in enumerate(self.features)}
        issues.sort(
            key=lambda q: (q.severity != "error", order[q.feature], ISSUE_KINDS.index(q.kind))
        )
        return issues


def check_quality(
    reference: TableProfile,
    current: pa.Table,
    *,
    features: Sequence[str] | None = None,
    missing_jump: float = DEFAULT_MISSING_JUMP,
) -> list[QualityIssue]:
    """The data-quality issues of ``current`` against ``reference`` (see the module table);
    ``features`` defaults to every column of the profile."""
    return QualityAccumulator(reference, features).update(current).result(missing_jump=missing_jump)


# -- counting ---------------------------------------------------------------------------------
def _numeric(state: _State, column: pa.ChunkedArray) -> None:
    ref = state.column
    # bins: below the reference min | within [min, max] | above max (none when it had no values)
    bounds = (
        np.array([ref.min, np.nextafter(ref.max, np.inf)])
        if ref.min is not None and ref.max is not None
        else np.empty(0)
    )
    for chunk in column.chunks:
        values, not_numbers = numeric_chunk(chunk)
        counts, missing = bin_numeric(values, bounds)
        state.missing += missing - not_numbers
        state.not_numbers += not_numbers
        if not_numbers and state.not_number_example is None:
            state.not_number_example = _not_number_example(chunk)
        if len(bounds):
            state.below += int(counts[0])
            state.above += int(counts[-1])
        if len(values) > missing:
            low, high = float(np.fmin.reduce(values)), float(np.fmax.reduce(values))
            if not (np.isfinite(low) and np.isfinite(high)):  # ±inf are missing, not extremes
                finite = values[np.isfinite(values)]
                low, high = float(finite.min()), float(finite.max())
            state.low, state.high = min(state.low, low), max(state.high, high)


def _not_number_example(chunk: pa.Array) -> str | None:
    import pyarrow.compute as pc

    if pa.types.is_dictionary(chunk.type):
        chunk = chunk.dictionary_decode()
    if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
        return None
    bad = chunk.filter(pc.invert(pc.match_substring_regex(chunk, NUMBER_PATTERN, ignore_case=True)))
    return str(bad[0].as_py()) if len(bad) else None


def _categorical(state: _State, column: pa.ChunkedArray) -> None:
    categories = categories_of(state.column)
    found = category_counts(column, categories, unseen_top=UNSEEN_KEPT)
    state.missing += found.missing
    state.unseen += int(found.counts[-1])
    _add_names(state.unseen_names, found.unseen)
    if state.varies or found.distinct == 0:
        return
    if found.distinct > 1 or (found.first is not None and state.values - {found.first}):
        state.varies, state.values = True, set()
    elif found.first is not None:
        state.values.add(found.first)


def _add_names(into: dict[str, int], names: dict[str, int]) -> None:
    for name, count in names.items():
        into[name] = into.get(name, 0) + count
    if len(into) > UNSEEN_KEPT:
        kept = sorted(into.items(), key=lambda kv: (-kv[1], kv[0]))[:UNSEEN_KEPT]
        into.clear()
        into.update(kept)


# -- verdicts ---------------------------------------------------------------------------------
def _issues(state: _State, missing_jump: float) -> list[QualityIssue]:
    ref = state.column
    name = ref.name
    if state.absent:
        where = (
            "the window" if state.absent == state.rows else f"{state.absent} of {state.rows} rows"
        )
        detail = f"column missing from {where} (expected {ref.kind})"
        return [QualityIssue(name, "type_violation", state.absent, detail, severity="error")]
    issues: list[QualityIssue] = []
    if state.not_numbers:
        example = f", e.g. {state.not_number_example!r}" if state.not_number_example else ""
        issues.append(
            QualityIssue(
                name,
                "type_violation",
                state.not_numbers,
                f"{state.not_numbers} values are not numbers (expected numeric){example}",
                severity="error",
            )
        )
    rows = state.rows
    rate = state.missing / rows if rows else 0.0
    if rows and rate - ref.missing_rate > missing_jump:
        issues.append(
            QualityIssue(
                name,
                "missing_rate_jump",
                state.missing,
                f"missing rate {ref.missing_rate:.3g} → {rate:.3g} (reference → current), "
                f"{state.missing} of {rows} rows missing",
            )
        )
    if state.below or state.above:
        issues.append(
            QualityIssue(
                name,
                "out_of_range",
                state.below + state.above,
                f"{state.below} values below the reference minimum {ref.min:g} and "
                f"{state.above} above its maximum {ref.max:g}",
            )
        )
    if state.unseen and ref.count and ref.other == 0:
        shown = ", ".join(
            f"{value!r} ({count})"
            for value, count in sorted(state.unseen_names.items(), key=lambda kv: (-kv[1], kv[0]))[
                :5
            ]
        )
        more = " …" if len(state.unseen_names) > 5 else ""
        issues.append(
            QualityIssue(
                name,
                "new_category",
                state.unseen,
                f"{state.unseen} rows hold categories the reference never saw: {shown}{more}",
            )
        )
    constant = _constant(state)
    if constant is not None and state.present >= 2 and not _reference_constant(ref):
        issues.append(
            QualityIssue(
                name,
                "constant",
                state.present,
                f"every value in the window is {constant} (the reference varies)",
            )
        )
    return issues


def _constant(state: _State) -> str | None:
    """The window's one value, when it holds a single distinct one."""
    kind = state.column.kind
    if kind == "numeric":
        return f"{state.low:g}" if state.present and state.low == state.high else None
    if kind in {"categorical", "boolean"} and not state.varies and len(state.values) == 1:
        return repr(next(iter(state.values)))
    return None


def _reference_constant(ref: ColumnProfile) -> bool:
    if ref.kind == "numeric":
        return ref.min is not None and ref.min == ref.max
    if ref.kind in {"categorical", "boolean"}:
        return len(ref.frequencies) + (1 if ref.other else 0) <= 1
    return True
