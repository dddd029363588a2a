"""Windows over a table of log records: by row count or by time, tumbling or sliding.

Only **complete** windows are cut; what is left is the remainder, which waits for more rows:

* by rows (``rows=N``): windows of exactly ``N`` consecutive rows in table order, starting every
  ``slide`` rows (default ``N``: tumbling; ``slide < N``: sliding, windows overlap). The
  remainder starts at the first row of the first window that could not be filled.
* by time (``duration="1h"``): half-open intervals ``[start, start + duration)`` on the time
  column, starting every ``slide`` (default ``duration``), aligned to multiples of ``slide``
  since the Unix epoch (1 h windows start on the hour). A window is complete once the
  *watermark* (default: the latest time in the table) has reached its end; empty windows are
  skipped. The remainder starts at the first window not yet complete.

:func:`plan_windows` does the arithmetic on a sorted int64 array of microseconds (no table is
copied); :func:`windows` cuts a table with it. Both are pure: the incremental monitor
(:mod:`kyklos.monitoring.monitor`) keeps where the remainder starts and calls them again with
the rows that arrived meanwhile.

>>> import pyarrow as pa
>>> table = pa.table({"x": list(range(5))})
>>> [(spec.label, part.column("x").to_pylist()) for spec, part in windows(table, rows=2)]
[('rows 0–1', [0, 1]), ('rows 2–3', [2, 3])]
>>> plan_windows(5, rows=2).resume   # row 4 waits for the next run
4
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kyklos.config.project import parse_duration
from kyklos.errors import MonitorError
from kyklos.monitoring.results import WindowSpec

__all__ = [
    "WindowBounds",
    "WindowPlan",
    "from_micros",
    "plan_rows",
    "plan_time",
    "plan_windows",
    "row_label",
    "time_label",
    "to_micros",
    "window_size",
    "windows",
]

_US = 1_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

Duration = str | float | int | dt.timedelta


@dataclass(frozen=True)
class WindowBounds:
    """One complete window: rows ``lo`` (inclusive) to ``hi`` (exclusive) of the table, and
    for time windows its interval ``[start, end)`` in microseconds since the epoch."""

    lo: int
    hi: int
    start_us: int | None = None
    end_us: int | None = None

    @property
    def n_rows(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True)
class WindowPlan:
    """The complete windows of a table, and where the remainder starts.

    ``resume`` is the first row of the remainder (``n`` when nothing remains); for time
    windows ``resume_us`` is the start of the first window not yet complete, which is where
    the next run starts.
    """

    windows: tuple[WindowBounds, ...]
    resume: int
    resume_us: int | None = None

    def remainder(self, table: pa.Table) -> pa.Table:
        """The rows of ``table`` that the next run starts from."""
        return table.slice(self.resume)


def window_size(
    *,
    rows: int | None = None,
    duration: Duration | None = None,
    slide: Duration | None = None,
) -> tuple[str, int, int]:
    """``(kind, size, slide)``: ``("rows", N, S)`` or ``("time", microseconds, microseconds)``.

    ``duration`` wins over ``rows`` (the project file's ``rows`` has a default). Raises
    :class:`~kyklos.errors.MonitorError` for a size or slide that is not positive, a slide
    larger than the window (rows between windows would never be checked) or a slide of the
    wrong kind.

    >>> window_size(rows=1000), window_size(duration="1h", slide="15m")
    (('rows', 1000, 1000), ('time', 3600000000, 900000000))
    """
    if duration is not None:
        size = _micros(duration, "monitor.window.duration")
        step = size if slide is None else _micros(slide, "monitor.window.slide")
        kind = "time"
    elif rows is not None:
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise MonitorError(
                f"monitor.window.rows: got {rows!r}, expected a whole number of rows >= 1"
            )
        size = rows
        step = rows if slide is None else _rows(slide)
        kind = "rows"
    else:
        raise MonitorError(
            "monitor.window: neither rows nor duration is set. "
            "Hint: e.g. window: {rows: 1000} or window: {duration: 1h}"
        )
    if step > size:
        unit = "rows" if kind == "rows" else "of time"
        raise MonitorError(
            f"monitor.window.slide: got {slide!r}, larger than the window ({rows if kind == 'rows' else duration!r}); "
            f"the {unit} between two windows would never be checked. "
            "Hint: use a slide no larger than the window, or leave it out for tumbling windows"
        )
    return kind, size, step


def plan_windows(
    data: int | np.ndarray,
    *,
    rows: int | None = None,
    duration: Duration | None = None,
    slide: Duration | None = None,
    start: dt.datetime | int | None = None,
    watermark: dt.datetime | int | None = None,
) -> WindowPlan:
    """Plan the complete windows of ``data``: a row count (row windows) or a sorted int64
    array of microseconds since the epoch (time windows; row windows accept it too).

    Time windows start at ``start`` (a datetime or microseconds; default: the window of the
    slide grid holding the first time) and are complete up to ``watermark`` (default: the
    last time).

    >>> hour = 3_600_000_000
    >>> plan = plan_windows(np.array([0, 10, hour + 5, 2 * hour + 1]), duration="1h")
    >>> [(w.lo, w.hi) for w in plan.windows], plan.resume, plan.resume_us == 2 * hour
    ([(0, 2), (2, 3)], 3, True)
    """
    kind, size, step = window_size(rows=rows, duration=duration, slide=slide)
    if kind == "rows":
        n = int(data) if isinstance(data, int | np.integer) else len(data)
        return plan_rows(n, size, step)
    if isinstance(data, int | np.integer):
        raise MonitorError("time windows need the times of the rows, not a row count")
    return plan_time(
        np.asarray(data, dtype=np.int64),
        size,
        step,
        start=None if start is None else _as_micros(start),
        watermark=None if watermark is None else _as_micros(watermark),
    )


def plan_rows(n: int, size: int, step: int) -> WindowPlan:
    """Windows of ``size`` rows every ``step`` rows over ``n`` rows (see :func:`plan_windows`)."""
    count = 0 if n < size else (n - size) // step + 1
    bounds = tuple(WindowBounds(i * step, i * step + size) for i in range(count))
    return WindowPlan(bounds, count * step)


def plan_time(
    times: np.ndarray,
    size: int,
    step: int,
    *,
    start: int | None = None,
    watermark: int | None = None,
) -> WindowPlan:
    """Windows ``[t, t + size)`` every ``step`` over sorted ``times`` (all in microseconds;
    see :func:`plan_windows`)."""
    if times.size and np.any(times[1:] < times[:-1]):
        raise MonitorError("time windows need rows sorted by time. Hint: sort the table first")
    if start is None and times.size == 0:
        return WindowPlan((), 0, None)
    first = start if start is not None else int(times[0]) // step * step
    last = watermark if watermark is not None else (int(times[-1]) if times.size else first)
    found: list[WindowBounds] = []
    t = first
    while t + size <= last:
        lo = int(np.searchsorted(times, t, side="left"))
        hi = int(np.searchsorted(times, t + size, side="left"))
        if hi > lo:
            found.append(WindowBounds(lo, hi, t, t + size))
            t += step
            continue
        if lo >= times.size:  # no row left: jump to the first window not yet complete
            t = max(t + step, first + ((last - size - first) // step + 1) * step)
            break
        # an empty stretch: jump to the first window that holds the next row
        t = max(t + step, first + ((int(times[lo]) - size - first) // step + 1) * step)
    resume = int(np.searchsorted(times, t, side="left"))
    return WindowPlan(tuple(found), resume, t)


def windows(
    table: pa.Table,
    *,
    rows: int | None = None,
    duration: Duration | None = None,
    slide: Duration | None = None,
    time_column: str = "ts",
    start: dt.datetime | None = None,
    watermark: dt.datetime | None = None,
    model_version: int | None = None,
    first_row: int = 0,
) -> Iterator[tuple[WindowSpec, pa.Table]]:
    """The complete windows of ``table`` as ``(WindowSpec, rows)`` pairs (see the module doc).

    Row windows keep the table's order; their spec carries the first and last time of their
    rows when ``time_column`` exists, and a label counting rows from ``first_row``. Time
    windows sort the table by ``time_column`` first (stable). The remainder is
    ``plan_windows(...).remainder(table)``.
    """
    kind, _, _ = window_size(rows=rows, duration=duration, slide=slide)
    has_time = time_column in table.column_names
    if kind == "time":
        if not has_time:
            raise MonitorError(
                f"time windows need the time column {time_column!r}; the table has "
                f"{table.column_names}. Hint: pass time_column=, or window by rows"
            )
        times = to_micros(table.column(time_column), time_column)
        if times.size and np.any(times[1:] < times[:-1]):
            order = np.argsort(times, kind="stable")
            table, times = table.take(pa.array(order)), times[order]
        plan = plan_windows(times, duration=duration, slide=slide, start=start, watermark=watermark)
        for bounds in plan.windows:
            assert bounds.start_us is not None and bounds.end_us is not None
            begin, end = from_micros(bounds.start_us), from_micros(bounds.end_us)
            spec = WindowSpec(
                start=begin,
                end=end,
                n_rows=bounds.n_rows,
                model_version=model_version,
                label=time_label(begin, end),
            )
            yield spec, table.slice(bounds.lo, bounds.n_rows)
        return
    plan = plan_windows(table.num_rows, rows=rows, slide=slide)
    row_times = to_micros(table.column(time_column), time_column) if has_time else None
    for bounds in plan.windows:
        part = table.slice(bounds.lo, bounds.n_rows)
        first: dt.datetime | None = None
        last: dt.datetime | None = None
        if row_times is not None:
            span = row_times[bounds.lo : bounds.hi]
            first, last = from_micros(int(span.min())), from_micros(int(span.max()))
        spec = WindowSpec(
            start=first,
            end=last,
            n_rows=bounds.n_rows,
            model_version=model_version,
            label=row_label(first_row + bounds.lo, first_row + bounds.hi),
        )
        yield spec, part


# -- helpers ----------------------------------------------------------------------------------
def row_label(lo: int, hi: int) -> str:
    """``"rows 1000–1999"`` for rows ``lo`` to ``hi - 1``."""
    return f"rows {lo}–{hi - 1}"


def time_label(start: dt.datetime, end: dt.datetime) -> str:
    """``"2013-06-01 00:00 → 01:00"`` (the date of the end only when it differs).

    >>> a = dt.datetime(2013, 6, 1, tzinfo=dt.UTC)
    >>> time_label(a, a + dt.timedelta(hours=1)), time_label(a, a + dt.timedelta(days=1))
    ('2013-06-01 00:00 → 01:00', '2013-06-01 00:00 → 2013-06-02 00:00')
    """
    seconds = start.second or end.second or start.microsecond or end.microsecond
    clock = "%H:%M:%S" if seconds else "%H:%M"
    head = start.strftime(f"%Y-%m-%d {clock}")
    tail = end.strftime(clock if end.date() == start.date() else f"%Y-%m-%d {clock}")
    return f"{head} → {tail}"


def to_micros(column: pa.ChunkedArray | pa.Array, name: str = "ts") -> np.ndarray:
    """A timestamp column as int64 microseconds since the epoch (naive times are UTC)."""
    kind = column.type
    if not pa.types.is_timestamp(kind):
        raise MonitorError(
            f"the time column {name!r} holds {kind}, expected timestamps. "
            "Hint: parse it into a timestamp column, or window by rows"
        )
    if column.null_count:
        raise MonitorError(
            f"the time column {name!r} has {column.null_count} missing value(s); every row "
            "of a time window needs a time. Hint: drop or fill them first"
        )
    micros = pc.cast(column, pa.timestamp("us", tz=kind.tz)).cast(pa.int64())
    return np.asarray(micros.to_numpy(zero_copy_only=False), dtype=np.int64)


def from_micros(value: int) -> dt.datetime:
    """A UTC datetime from microseconds since the epoch."""
    return _EPOCH + dt.timedelta(microseconds=int(value))


def _as_micros(value: dt.datetime | int) -> int:
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        delta = aware - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * _US + delta.microseconds
    return int(value)


def _micros(value: Duration, field: str) -> int:
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise MonitorError(f"{field}: {exc}") from exc
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise MonitorError(f"{field}: got {value!r}, expected a duration such as 10m or 1h")
    micros = round(seconds * _US)
    if micros <= 0:
        raise MonitorError(f"{field}: got {value!r}, expected a positive duration")
    return micros


def _rows(value: Duration) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MonitorError(
            f"monitor.window.slide: got {value!r}, expected a whole number of rows >= 1 "
            "for row windows. Hint: a duration slide needs window.duration"
        )
    return value
