"""Tables of kyklos's metadata DB (SQLAlchemy Core).

The Alembic migrations in ``kyklos/store/migrations`` create exactly these tables; a test compares
the two. ``alias_history`` and ``events`` are append-only: the migration installs triggers that
refuse UPDATE and DELETE on them (SQLite and PostgreSQL).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "APPEND_ONLY_TABLES",
    "alias_history",
    "aliases",
    "dataset_parents",
    "dataset_versions",
    "events",
    "loop_cycles",
    "loop_state",
    "metadata",
    "model_versions",
    "monitor_results",
    "monitor_state",
    "rollouts",
    "run_inputs",
    "runs",
]

metadata = MetaData()

dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("id", String(32), primary_key=True, comment="short content hash, 'ds-' + 12 hex"),
    Column(
        "digest", String(64), nullable=False, unique=True, comment="sha256 of canonical content"
    ),
    Column("name", String(128), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("source", Text, nullable=False, comment="path or URI it was read from"),
    Column("storage_uri", Text, nullable=False, comment="canonical Parquet in the artifact store"),
    Column("n_rows", BigInteger, nullable=False),
    Column("n_columns", BigInteger, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("schema", JSON, nullable=False),
    Column("profile", JSON, nullable=False),
    Column("note", Text, nullable=True),
    Column("kyklos_version", String(32), nullable=False),
)

dataset_parents = Table(
    "dataset_parents",
    metadata,
    Column("child_id", String(32), ForeignKey("dataset_versions.id"), primary_key=True),
    Column("parent_id", String(32), ForeignKey("dataset_versions.id"), primary_key=True),
    Column("relation", String(64), nullable=False, comment="e.g. 'derived', 'appended'"),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True, comment="the MLflow run id"),
    Column("project", String(128), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("status", String(16), nullable=False),
    Column("cache_key", String(64), nullable=True, index=True),
    Column("git_commit", String(64), nullable=True),
    Column("git_dirty", Boolean, nullable=True),
    Column("seed", Integer, nullable=True),
    Column("params", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("config", JSON, nullable=False, comment="the resolved project configuration"),
    Column("environment", JSON, nullable=False, comment="python and package versions"),
    Column("step_hashes", JSON, nullable=False, comment="code hash of every step"),
    Column("predictions_digest", String(64), nullable=True),
)

run_inputs = Table(
    "run_inputs",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.run_id"), primary_key=True),
    Column("dataset_version_id", String(32), ForeignKey("dataset_versions.id"), primary_key=True),
    Column("role", String(32), nullable=False, comment="'training' (the whole table read)"),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("model_name", String(128), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("run_id", String(64), ForeignKey("runs.run_id"), nullable=False, index=True),
    Column("dataset_version_id", String(32), ForeignKey("dataset_versions.id"), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("model_uri", Text, nullable=False),
    Column("model_hash", String(64), nullable=False, comment="sha256 of the model artifact files"),
    Column("metrics", JSON, nullable=False),
    Column("gate_results", JSON, nullable=False),
    Column("gates_passed", Boolean, nullable=False),
    Column("profile", JSON, nullable=True, comment="reference profile (features and predictions)"),
    Column("signature", JSON, nullable=True),
)

aliases = Table(
    "aliases",
    metadata,
    Column("model_name", String(128), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, nullable=True),
    Column("revision", Integer, nullable=False, comment="bumped on every change (compare-and-set)"),
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(128), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("action", String(32), nullable=False, comment="promote | rollback | set | clear"),
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("forced", Boolean, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_alias_history_model_alias", "model_name", "alias", "id"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("project", String(128), nullable=False, index=True),
    Column("kind", String(64), nullable=False, index=True),
    Column("subject", Text, nullable=True, comment="what it is about: a version, run, cycle"),
    Column("actor", String(128), nullable=False),
    Column("message", Text, nullable=False),
    Column("payload", JSON, nullable=False),
)

APPEND_ONLY_TABLES = ("alias_history", "events")

monitor_results = Table(
    "monitor_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(128), nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("model_version", Integer, nullable=True),
    Column("window_start", DateTime(timezone=True), nullable=True),
    Column("window_end", DateTime(timezone=True), nullable=True),
    Column("n_rows", BigInteger, nullable=False),
    Column("verdict", String(16), nullable=False, comment="ok | drift | degraded | quality"),
    Column("share_drifted", Float, nullable=False),
    Column("dataset_drift", Boolean, nullable=False),
    Column("result", JSON, nullable=False, comment="the whole CheckResult (kyklos.monitor/1)"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_monitor_results_model", "project", "model_name", "model_version", "id"),
)

monitor_state = Table(
    "monitor_state",
    metadata,
    Column("project", String(128), primary_key=True),
    Column("model_name", String(128), primary_key=True),
    Column("cursor", JSON, nullable=False, comment="where the incremental monitor stands"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# ``active`` is TRUE while a row is live and NULL once it ended: the unique constraint on
# (model_name, active) then allows one live row per model and any number of ended ones, on
# SQLite and PostgreSQL alike (NULLs are distinct).
rollouts = Table(
    "rollouts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(128), nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("challenger_version", Integer, nullable=False),
    Column("champion_version", Integer, nullable=True, comment="the champion when it started"),
    Column("strategy", String(16), nullable=False, comment="shadow | canary"),
    Column("fraction", Float, nullable=False, comment="canary share of requests"),
    Column("status", String(16), nullable=False, comment="active | promoted | rejected | stopped"),
    Column("active", Boolean, nullable=True, comment="TRUE while active, NULL after"),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("started_by", String(128), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("ended_by", String(128), nullable=True),
    Column("reason", Text, nullable=True),
    Column("cycle_id", Integer, nullable=True, comment="the loop cycle that started it"),
    UniqueConstraint("model_name", "active", name="uq_rollouts_one_active"),
)

loop_cycles = Table(
    "loop_cycles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(128), nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("status", String(24), nullable=False),
    Column("active", Boolean, nullable=True, comment="TRUE while the cycle runs, NULL after"),
    Column("trigger", String(32), nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("champion_version", Integer, nullable=True, comment="the champion when triggered"),
    Column("dataset_version", String(32), nullable=True),
    Column("run_id", String(64), nullable=True),
    Column("challenger_version", Integer, nullable=True),
    Column("rollout_id", Integer, nullable=True),
    Column("figures", JSON, nullable=False, comment="live comparison figures, latest"),
    Column("decision", String(24), nullable=True),
    Column("reason", Text, nullable=True),
    Column("approved_by", String(128), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    UniqueConstraint("model_name", "active", name="uq_loop_cycles_one_active"),
    Index("ix_loop_cycles_project", "project", "id"),
)

loop_state = Table(
    "loop_state",
    metadata,
    Column("project", String(128), primary_key=True),
    Column("paused", Boolean, nullable=False),
    Column("state", JSON, nullable=False, comment="last monitor result seen, last schedule"),
    Column("revision", Integer, nullable=False),
    Column("lease_owner", String(128), nullable=True, comment="the tick holding the loop"),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
