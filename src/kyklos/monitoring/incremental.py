"""The incremental monitor: new windows of the prediction log, each checked once, per version.

Rows answered by model version ``V`` are checked against ``V``'s own reference profile, in
windows of ``monitor.window`` (:mod:`kyklos.monitoring.window`) cut from ``V``'s rows in log
order ``(ts, writer, seq)``. Each run continues where the previous one stopped and checks only
the windows that became complete since; a window is never checked twice.

Where a run stands is one JSON document per (project, model) in ``monitor_state``::

    {"format": 1,
     "log": {...},                 # LogCursor: every record up to here has been read once
     "watermark": 1370044800000000,  # the latest ts read (µs): time windows up to it are complete
     "versions": {"3": {"next": [ts_us, writer, seq],  # V's first row not yet consumed
                        "rows": 5000,                 # V's rows before it (labels "rows 5000–5999")
                        "windows": 5, "late": 0}}}

``next`` is a position in log order. Rows of ``V`` at or after it are pending (an incomplete
window, or the overlap of sliding windows); rows before it were consumed. Each run reads the
records new since ``log`` plus, from the log itself, ``V``'s pending rows (``scan(since=next)``:
segments that end earlier are not opened), so no raw rows are copied into the DB. A new record
that falls *before* ``next`` (a writer whose clock lags, or a WAL read after its window was
closed) arrived too late for its window: it is counted in ``late``, never checked.

Crash safety: the first transaction records the new ``log`` cursor together with the ``next``
of every version first seen (so no row can be lost), then each window's result is stored in
the same transaction that moves its version's ``next`` past the window
(:meth:`~kyklos.monitoring.store.MonitorStore.commit`, compare-and-set). A crash between two
windows resumes at the first unstored one; two concurrent runs cannot store the same window.

Labels are joined when a window is checked; a label that arrives after its window was checked
does not change that window's stored result.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kyklos.config.project import WindowConfig
from kyklos.data.predlog import LogCursor, PredictionLog, concat, latest_labels
from kyklos.errors import MonitorError, NotFoundError
from kyklos.monitoring.monitor import Monitor
from kyklos.monitoring.results import CheckResult, WindowSpec
from kyklos.monitoring.store import MonitorStore, StoredResult
from kyklos.monitoring.window import (
    from_micros,
    plan_rows,
    plan_time,
    row_label,
    time_label,
    to_micros,
    window_size,
)

__all__ = ["STATE_FORMAT", "MonitorRun", "run_incremental"]

STATE_FORMAT = 1
_ORDER = [("ts", "ascending"), ("writer", "ascending"), ("seq", "ascending")]

Key = tuple[int, str, int]  # (ts in µs, writer, seq): a position in log order


@dataclass(frozen=True)
class MonitorRun(Sequence[CheckResult]):
    """What one run did: the results it stored (it is the sequence of their
    :class:`CheckResult`), and per model version the late rows it skipped, the rows still
    waiting for a window, and the versions it could not check (with the reason)."""

    stored: tuple[StoredResult, ...] = ()
    late: Mapping[int, int] = field(default_factory=dict)
    pending: Mapping[int, int] = field(default_factory=dict)
    skipped: Mapping[int, str] = field(default_factory=dict)
    reports: tuple[str, ...] = ()

    @property
    def results(self) -> list[CheckResult]:
        return [s.result for s in self.stored]

    @overload
    def __getitem__(self, index: int) -> CheckResult: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[CheckResult]: ...

    def __getitem__(self, index: int | slice) -> CheckResult | Sequence[CheckResult]:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.stored)

    def __iter__(self) -> Iterator[CheckResult]:
        return iter(self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": [s.summary() for s in self.stored],
            "late": {str(k): v for k, v in self.late.items()},
            "pending": {str(k): v for k, v in self.pending.items()},
            "skipped": {str(k): v for k, v in self.skipped.items()},
            "reports": list(self.reports),
        }


def run_incremental(
    log: PredictionLog,
    store: MonitorStore,
    *,
    window: WindowConfig,
    monitors: Callable[[int], Monitor],
    versions: Collection[int] | None = None,
    after_commit: Callable[[StoredResult], None] | None = None,
) -> MonitorRun:
    """Check every window of ``store.model_name``'s log records that became complete since the
    last run (see the module docstring); return what was done.

    ``monitors(V)`` gives the fitted :class:`Monitor` of version ``V`` (raising
    :class:`~kyklos.errors.NotFoundError` or :class:`~kyklos.errors.MonitorError` skips the
    version: its rows stay pending). ``versions`` limits the run to some versions (the rows of
    the others stay pending too). ``after_commit`` is called with each stored result, after its
    transaction (reports, alerts, gauges).
    """
    kind, size, step = window_size(rows=window.rows, duration=window.duration, slide=window.slide)
    stored_state = store.state()
    state = _load(stored_state)
    first_state = copy.deepcopy(state)
    read = LogCursor.from_dict(state["log"])
    new, cursor = log.scan_since(read)
    new = _of_model(new, store.model_name)
    old = _pending_from_log(log, state, read, new, store.model_name)
    records = concat([_flag(old, False), _flag(new, True)])
    times = to_micros(records.column("ts")) if records.num_rows else np.empty(0, np.int64)
    if new.num_rows:
        newest = int(to_micros(new.column("ts")).max())
        if state["watermark"] is None or newest > state["watermark"]:
            state["watermark"] = newest
    state["log"] = cursor.to_dict()

    # versions first seen, and late rows: recorded before any window (nothing can be lost)
    by_version: dict[int, np.ndarray] = {}
    late: dict[int, int] = {}
    version_of = np.asarray(records.column("version").to_numpy(zero_copy_only=False), np.int64)
    is_new = records.column("_new").to_numpy(zero_copy_only=False)
    for version in sorted({int(v) for v in np.unique(version_of)}):
        mask = version_of == version
        entry = state["versions"].get(str(version))
        if entry is None:
            first = _first_key(records.filter(pa.array(mask)))
            state["versions"][str(version)] = {
                "next": list(first),
                "rows": 0,
                "windows": 0,
                "late": 0,
            }
            by_version[version] = mask
            continue
        after = _at_or_after(records, times, _key(entry["next"]))
        too_late = int(np.count_nonzero(mask & is_new & ~after))
        if too_late:
            entry["late"] += too_late
            late[version] = too_late
        by_version[version] = mask & after
    if state != first_state:
        store.commit(expected=stored_state, state=_dump(state))
    records = _with_labels(log, records)

    stored: list[StoredResult] = []
    pending: dict[int, int] = {}
    skipped: dict[int, str] = {}
    for version, mask in sorted(by_version.items()):
        if versions is not None and version not in versions:
            pending[version] = int(np.count_nonzero(mask))
            continue
        rows = records.filter(pa.array(mask)).sort_by(_ORDER)
        entry = state["versions"][str(version)]
        next_key = _key(entry["next"])
        row_times = to_micros(rows.column("ts")) if rows.num_rows else np.empty(0, np.int64)
        if kind == "rows":
            plan = plan_rows(rows.num_rows, size, step)
        else:
            start = next_key[0] if next_key[1] == "" else next_key[0] // step * step
            plan = plan_time(row_times, size, step, start=start, watermark=state["watermark"])
        pending[version] = rows.num_rows - plan.resume
        if not plan.windows:
            continue
        try:
            monitor = monitors(version)
        except (NotFoundError, MonitorError) as exc:
            skipped[version] = str(exc)
            pending[version] = rows.num_rows
            continue
        before = entry["rows"]
        for i, bounds in enumerate(plan.windows):
            part = rows.slice(bounds.lo, bounds.n_rows)
            if kind == "rows":
                consumed = (i + 1) * step
                last = consumed - 1
                moved: list[Any] = [
                    int(row_times[last]),
                    str(rows.column("writer")[last].as_py()),
                    int(rows.column("seq")[last].as_py()) + 1,
                ]
                span = row_times[bounds.lo : bounds.hi]
                spec = WindowSpec(
                    start=from_micros(int(span.min())),
                    end=from_micros(int(span.max())),
                    n_rows=bounds.n_rows,
                    model_version=version,
                    label=row_label(before + bounds.lo, before + bounds.hi),
                )
            else:
                assert bounds.start_us is not None and bounds.end_us is not None
                resume_at = bounds.start_us + step
                consumed = int(np.searchsorted(row_times, resume_at, side="left"))
                moved = [resume_at, "", -1]
                begin, end = from_micros(bounds.start_us), from_micros(bounds.end_us)
                spec = WindowSpec(begin, end, bounds.n_rows, version, time_label(begin, end))
            result = monitor.check_log_window(part, window=spec)
            updated = copy.deepcopy(state)
            target = updated["versions"][str(version)]
            target.update(next=moved, rows=before + consumed, windows=target["windows"] + 1)
            saved = store.commit(expected=_dump(state), state=_dump(updated), result=result)
            assert saved is not None
            state = updated
            stored.append(saved)
            if after_commit is not None:
                after_commit(saved)
    waiting = {number: count for number, count in pending.items() if count}
    return MonitorRun(tuple(stored), late, waiting, skipped)


# -- the state document -------------------------------------------------------------------------
def _load(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    if raw is None:
        return {
            "format": STATE_FORMAT,
            "log": LogCursor().to_dict(),
            "watermark": None,
            "versions": {},
        }
    if raw.get("format") != STATE_FORMAT:
        raise MonitorError(
            f"the stored monitor cursor has format {raw.get('format')!r}; this kyklos reads "
            f"format {STATE_FORMAT}. Hint: upgrade kyklos"
        )
    return copy.deepcopy(dict(raw))


def _dump(state: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(state))


def _key(raw: Sequence[Any]) -> Key:
    return int(raw[0]), str(raw[1]), int(raw[2])


# -- reading ------------------------------------------------------------------------------------
def _of_model(table: pa.Table, model: str) -> pa.Table:
    if table.num_rows == 0:
        return table
    return table.filter(pc.equal(table.column("model"), model))


def _pending_from_log(
    log: PredictionLog, state: Mapping[str, Any], read: LogCursor, new: pa.Table, model: str
) -> pa.Table:
    """The records read by earlier runs that may still be pending (at or after some ``next``)."""
    nexts = [_key(entry["next"]) for entry in state["versions"].values()]
    if not nexts or not read.positions:
        return new.slice(0, 0)
    table = _of_model(log.scan(since=from_micros(min(k[0] for k in nexts))), model)
    if table.num_rows == 0:
        return table
    limits = _limits(table.column("writer"), read)
    seq = np.asarray(table.column("seq").to_numpy(zero_copy_only=False), np.int64)
    return table.filter(pa.array(seq <= limits))


def _limits(writers: pa.ChunkedArray, cursor: LogCursor) -> np.ndarray:
    """Per record, the last ``seq`` of its writer that ``cursor`` has consumed (-1: none)."""
    encoded = pc.dictionary_encode(writers).combine_chunks()
    names = encoded.dictionary.to_pylist()
    per_writer = np.array([cursor.get(str(name)) for name in names], dtype=np.int64)
    index = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), np.int64)
    return per_writer[index] if per_writer.size else np.full(len(writers), -1, np.int64)


def _flag(table: pa.Table, new: bool) -> pa.Table:
    return table.append_column("_new", pa.array(np.full(table.num_rows, new)))


def _first_key(records: pa.Table) -> Key:
    """The position of the first of ``records`` in log order."""
    first = records.select(["ts", "writer", "seq"]).sort_by(_ORDER).slice(0, 1)
    return (
        int(to_micros(first.column("ts"))[0]),
        str(first.column("writer")[0].as_py()),
        int(first.column("seq")[0].as_py()),
    )


def _at_or_after(records: pa.Table, times: np.ndarray, key: Key) -> np.ndarray:
    """Which records come at or after ``key`` in log order ``(ts, writer, seq)``."""
    ts, writer, seq = key
    if records.num_rows == 0:
        return np.zeros(0, dtype=bool)
    writers = records.column("writer")
    above = np.asarray(pc.greater(writers, writer).to_numpy(zero_copy_only=False), bool)
    same = np.asarray(pc.equal(writers, writer).to_numpy(zero_copy_only=False), bool)
    seqs = np.asarray(records.column("seq").to_numpy(zero_copy_only=False), np.int64)
    result: np.ndarray = (times > ts) | ((times == ts) & (above | (same & (seqs >= seq))))
    return result


def _with_labels(log: PredictionLog, records: pa.Table) -> pa.Table:
    """``records`` with the latest ``label`` of each ``(request_id, row)`` (null: none yet)."""
    if records.num_rows == 0:
        return records.append_column("label", pa.nulls(0, pa.float64()))
    # every label: a label's ts is when it was logged, which a labels file may set earlier
    # than the prediction it belongs to
    labels = latest_labels(log.labels())
    order = pa.array(np.arange(records.num_rows, dtype=np.int64))
    joined = records.append_column("_order", order).join(
        labels.select(["request_id", "row", "label"]),
        keys=["request_id", "row"],
        join_type="left outer",
    )
    return joined.sort_by("_order").drop_columns(["_order"])
