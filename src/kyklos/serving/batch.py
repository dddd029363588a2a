"""Batch scoring: a CSV or Parquet file in, the same rows with predictions out.

The file is read in chunks of ``chunk_rows`` rows (Parquet ``iter_batches``, a streaming
``pyarrow.csv.open_csv`` reader), so memory stays bounded by the chunk, not the file. Every chunk
goes through what a request goes through: the project's user steps (``pipeline.steps`` with
``after: load`` or ``after: validate``, so a raw file with the training data's columns can be
scored), then :func:`~kyklos.serving.validation.validate_columns` against the model's features
(columns the model does not use are kept in the output and ignored by the model), then
:meth:`~kyklos.serving.model.LoadedModel.predict`.

The output has the input's columns plus ``prediction`` (the class label for classifiers) and,
for classifiers, ``score`` (the positive-class probability of a binary classifier). It is
written to a temporary file next to the target and renamed into place only when every chunk
succeeded: a failure leaves no half-written output.

The HTTP server, unlike batch scoring, does not run user steps: requests carry the step
*output* features (the model's signature).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from kyklos.errors import DataError, KyklosError, ServingError
from kyklos.serving.model import FeatureSpec, LoadedModel, load_version
from kyklos.serving.validation import validate_columns

if TYPE_CHECKING:
    import pandas as pd

    from kyklos.config import Project

__all__ = [
    "OUTPUT_COLUMNS",
    "BatchResult",
    "UserStepError",
    "frame_columns",
    "run_user_steps",
    "score_file",
    "user_steps",
]

#: Columns batch scoring adds to the input's columns.
OUTPUT_COLUMNS = ("prediction", "score")

Progress = Callable[[int, int | None], None]
Step = Callable[["pd.DataFrame"], "pd.DataFrame"]


@dataclass(frozen=True)
class BatchResult:
    """What one ``kyklos predict`` did."""

    input: str
    output: str
    model_name: str
    version: int
    rows: int
    chunks: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "output": self.output,
            "model_name": self.model_name,
            "version": self.version,
            "rows": self.rows,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
        }


def score_file(
    project: Project,
    input_path: str | Path,
    output_path: str | Path,
    *,
    ref: str | int = "champion",
    chunk_rows: int = 50_000,
    progress: Progress | None = None,
    model: LoadedModel | None = None,
) -> BatchResult:
    """Score ``input_path`` (CSV/Parquet) with version ``ref`` into ``output_path`` (CSV/Parquet,
    by extension). ``progress(rows_done, rows_total_or_None)`` is called after every chunk."""
    started = time.perf_counter()
    source = Path(input_path)
    target = Path(output_path)
    if chunk_rows < 1:
        raise DataError(f"--chunk-rows must be at least 1, got {chunk_rows}")
    in_fmt = _format_of(source, "input")
    out_fmt = _format_of(target, "output")
    if not source.is_file():
        raise DataError(f"input file {source} does not exist")
    if source.resolve() == target.resolve():
        raise DataError(f"--output {target} is the input file; write to another file")
    loaded = model or load_version(project, ref)
    steps = user_steps(project)
    total, batches = _read(source, in_fmt, loaded.features, chunk_rows)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    rows = chunks = 0
    writer: Any = None
    schema: pa.Schema | None = None
    try:
        for chunk in _rechunk(batches, chunk_rows, source):
            scored = _score_chunk(loaded, steps, chunk, source, first_row=rows)
            if schema is None:
                schema = scored.schema
                writer = _writer(tmp, out_fmt, schema)
            else:
                scored = _conform(scored, schema, source, rows)
            writer.write_table(scored)
            rows += chunk.num_rows
            chunks += 1
            if progress is not None:
                progress(rows, total)
        if writer is None:
            raise DataError(f"input file {source} has no rows to score")
        writer.close()
        writer = None
        tmp.replace(target)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return BatchResult(
        input=str(source),
        output=str(target),
        model_name=loaded.name,
        version=loaded.version,
        rows=rows,
        chunks=chunks,
        seconds=time.perf_counter() - started,
    )


# -- reading ------------------------------------------------------------------------------------
def _format_of(path: Path, what: str) -> str:
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq", ".parq"}:
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise DataError(
        f"{what} file {path}: unknown format {suffix or '(no extension)'!r}; "
        "expected .csv or .parquet"
    )


def _read(
    source: Path, fmt: str, features: Sequence[FeatureSpec], chunk_rows: int
) -> tuple[int | None, Iterator[pa.RecordBatch]]:
    """The row count (None for CSV) and a stream of record batches."""
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            # pre_buffer=False lowers peak RSS (1.33 → 1.05 GiB streaming a 1.2 GB file here),
            # but peak RSS still grows with the file under pyarrow 25 whatever the pool or
            # reader (read_row_group, iter_batches): an open problem, noted on the issue
            file = pq.ParquetFile(source, pre_buffer=False)
            return file.metadata.num_rows, file.iter_batches(batch_size=chunk_rows)
        from pyarrow import csv

        # the model's features get their types from the model, not from the first block
        types = {
            f.name: pa.float64() if f.kind == "numeric" else pa.large_string() for f in features
        }
        reader = csv.open_csv(
            source,
            read_options=csv.ReadOptions(block_size=8 << 20),
            convert_options=csv.ConvertOptions(column_types=types, strings_can_be_null=True),
        )
        return None, iter(reader)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"cannot read input file {source}: {_one_line(exc)}") from exc


def _rechunk(
    batches: Iterator[pa.RecordBatch], chunk_rows: int, source: Path
) -> Iterator[pa.Table]:
    """Tables of exactly ``chunk_rows`` rows (the last one shorter)."""
    pending: list[pa.RecordBatch] = []
    held = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            break
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"cannot read input file {source}: {_one_line(exc)}") from exc
        pending.append(batch)
        held += batch.num_rows
        while held >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            pending = rest.to_batches() if rest.num_rows else []
            held = rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


# -- scoring ------------------------------------------------------------------------------------
def user_steps(project: Project) -> list[Step]:
    """The project's table-transforming user steps, in pipeline order (after load, then after
    validate), with their parameters bound."""
    import functools

    from kyklos.pipeline.step import load_step

    steps: list[Step] = []
    configured = project.config.pipeline.steps
    for after in ("load", "validate"):
        for item in configured:
            if item.after != after:
                continue
            spec = load_step(item.function, project.root)
            steps.append(functools.partial(spec.func, **dict(item.params)))
    return steps


class UserStepError(Exception):
    """A user step raised on a table: ``name`` of the step; the exception is ``__cause__``."""

    def __init__(self, name: str, cause: BaseException) -> None:
        super().__init__(f"user step {name!r} failed: {type(cause).__name__}: {cause}")
        self.name = name
        self.cause = cause


def run_user_steps(steps: Sequence[Step], frame: Any) -> Any:
    """``frame`` through ``steps`` in order; a step's own error becomes :class:`UserStepError`
    (a :class:`~kyklos.errors.KyklosError` passes through unchanged)."""
    for fn in steps:
        name = getattr(getattr(fn, "func", fn), "__name__", "step")
        try:
            frame = fn(frame)
        except KyklosError:
            raise
        except Exception as exc:
            raise UserStepError(name, exc) from exc
    return frame


def _score_chunk(
    model: LoadedModel, steps: Sequence[Step], chunk: pa.Table, source: Path, *, first_row: int
) -> pa.Table:
    where = f"{source}, rows {first_row + 1:,}-{first_row + chunk.num_rows:,}"
    try:
        frame = run_user_steps(steps, chunk.to_pandas())
    except UserStepError as exc:
        raise DataError(
            f"{where}: {exc}. Hint: the input needs the columns the training data had before "
            "the step"
        ) from exc
    lacking = [f.name for f in model.features if f.name not in frame.columns]
    if lacking:
        raise DataError(
            f"{source} has no column(s) {', '.join(repr(n) for n in lacking)}, which model "
            f"{model.name} v{model.version} needs (features: {', '.join(model.feature_names)})"
        )
    columns = frame_columns(frame, model.features)
    try:
        validated, _ = validate_columns(model.features, columns, extra="ignore")
        prediction, score = model.predict(validated)
    except ServingError as exc:
        raise DataError(f"{where}: {exc}") from exc
    for name in OUTPUT_COLUMNS:
        if name in chunk.column_names:
            raise DataError(
                f"{source} already has a column {name!r}, which batch scoring writes. "
                "Hint: rename or drop it first"
            )
    out = chunk.append_column("prediction", _labels(model, prediction))
    if score is not None:
        out = out.append_column("score", pa.array(score, type=pa.float64()))
    return out


def frame_columns(frame: pd.DataFrame, features: Sequence[FeatureSpec]) -> dict[str, np.ndarray]:
    """The columns of ``features`` in a DataFrame as validation and ``predict`` take them."""
    return {f.name: _column(frame[f.name], f) for f in features}


def _column(series: pd.Series, spec: FeatureSpec) -> np.ndarray:
    """A pandas column as validation takes it (numbers as float64, others as objects)."""
    from pandas.api import types

    if spec.kind == "numeric" and (
        types.is_numeric_dtype(series.dtype) or types.is_bool_dtype(series.dtype)
    ):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    column: Any = series  # pandas-stubs do not allow na_value=None
    values: np.ndarray = column.to_numpy(dtype=object, na_value=None)
    return values


def _labels(model: LoadedModel, prediction: np.ndarray) -> pa.Array:
    """Predictions as the model's labels: integers, strings or floats."""
    classes = model.classes
    if classes is None:
        return pa.array(prediction, type=pa.float64())
    if all(isinstance(c, bool | int | np.integer) for c in classes):
        return pa.array(prediction.astype(np.int64))
    if all(isinstance(c, int | float | np.number) for c in classes):
        return pa.array(prediction, type=pa.float64())
    labels = np.asarray([str(c) for c in classes], dtype=object)
    return pa.array(labels[prediction.astype(np.intp)], type=pa.large_string())


# -- writing ------------------------------------------------------------------------------------
def _writer(path: Path, fmt: str, schema: pa.Schema) -> Any:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(path, schema)
    from pyarrow import csv

    return csv.CSVWriter(path, schema)


def _conform(table: pa.Table, schema: pa.Schema, source: Path, first_row: int) -> pa.Table:
    if table.schema.equals(schema):
        return table
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowException, KeyError, ValueError) as exc:
        raise DataError(
            f"{source}: rows from {first_row + 1:,} have other column types than the first "
            f"chunk ({_one_line(exc)}). Hint: use Parquet, or a larger --chunk-rows"
        ) from exc


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
