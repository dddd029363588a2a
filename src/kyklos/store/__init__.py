"""Storage: the metadata DB (SQLAlchemy + Alembic) and the artifact store (local or fsspec)."""

from kyklos.store.artifacts import ArtifactStore, sha256_file
from kyklos.store.db import Database, open_db, redact_url

__all__ = ["ArtifactStore", "Database", "open_db", "redact_url", "sha256_file"]
