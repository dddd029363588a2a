"""Alembic environment: kyklos runs migrations programmatically on a given connection."""

from __future__ import annotations

from alembic import context

from kyklos.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - `alembic` CLI use without kyklos
    raise RuntimeError("run kyklos migrations through kyklos.store.db.open_db()")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
