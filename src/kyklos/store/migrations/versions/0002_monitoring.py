"""monitoring: stored monitor results and the incremental monitor's cursor

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.Integer, nullable=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("n_rows", sa.BigInteger, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("share_drifted", sa.Float, nullable=False),
        sa.Column("dataset_drift", sa.Boolean, nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_monitor_results_model",
        "monitor_results",
        ["project", "model_name", "model_version", "id"],
    )
    op.create_table(
        "monitor_state",
        sa.Column("project", sa.String(128), primary_key=True),
        sa.Column("model_name", sa.String(128), primary_key=True),
        sa.Column("cursor", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("monitor_state")
    op.drop_index("ix_monitor_results_model", table_name="monitor_results")
    op.drop_table("monitor_results")
