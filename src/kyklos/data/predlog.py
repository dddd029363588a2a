"""The durable prediction log and label log (contract: ``docs/prediction-log.md``).

Serving writes, monitoring and ``kyklos logs`` read::

    from kyklos.data.predlog import PredictionLog, PredictionLogWriter

    writer = PredictionLogWriter(project.state_dir / "logs", features=[("distance", "numeric")])
    commit = writer.append({"request_id": rid, "model": "flights", "version": 3,
                            "prediction": preds, "score": probs, "f.distance": x[:, 0]})
    commit.wait()           # or: await commit  — durable from here on: answer the client
    ...
    writer.close()          # commits the rest and seals the WAL into a Parquet segment

    log = PredictionLog(project.state_dir / "logs")
    log.scan(since=..., version=3)           # a pyarrow.Table ordered by ts
    table, cursor = log.scan_since(cursor)   # incremental: only what is new since `cursor`

The implementation is split by concern: record layout (:mod:`~kyklos.data.predlog_schema`),
files, sealing and recovery (:mod:`~kyklos.data.predlog_files`), group commits
(:mod:`~kyklos.data.predlog_commit`), writers (:mod:`~kyklos.data.predlog_writer`) and readers
(:mod:`~kyklos.data.predlog_reader`).
"""

from __future__ import annotations

from kyklos.data.predlog_files import SegmentInfo, read_wal, recover, seal_wal
from kyklos.data.predlog_reader import (
    LogCursor,
    LogSnapshot,
    PredictionLog,
    concat,
    empty_table,
    latest_labels,
)
from kyklos.data.predlog_schema import (
    ARMS,
    ENDPOINTS,
    FEATURE_PREFIX,
    FORMAT_VERSION,
    LABELS,
    PREDICTIONS,
    LogSchema,
    label_schema,
    prediction_schema,
)
from kyklos.data.predlog_writer import (
    Commit,
    LabelLogWriter,
    LogWriter,
    PredictionLogWriter,
    WriterStats,
)

__all__ = [
    "ARMS",
    "ENDPOINTS",
    "FEATURE_PREFIX",
    "FORMAT_VERSION",
    "LABELS",
    "PREDICTIONS",
    "Commit",
    "LabelLogWriter",
    "LogCursor",
    "LogSchema",
    "LogSnapshot",
    "LogWriter",
    "PredictionLog",
    "PredictionLogWriter",
    "SegmentInfo",
    "WriterStats",
    "concat",
    "empty_table",
    "label_schema",
    "latest_labels",
    "prediction_schema",
    "read_wal",
    "recover",
    "seal_wal",
]
