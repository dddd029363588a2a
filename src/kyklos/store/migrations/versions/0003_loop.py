"""closed loop: rollouts (challenger arm of the server), loop cycles, loop state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("challenger_version", sa.Integer, nullable=False),
        sa.Column("champion_version", sa.Integer, nullable=True),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("fraction", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean, nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_by", sa.String(128), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(128), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("cycle_id", sa.Integer, nullable=True),
        sa.UniqueConstraint("model_name", "active", name="uq_rollouts_one_active"),
    )
    op.create_table(
        "loop_cycles",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("active", sa.Boolean, nullable=True),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("champion_version", sa.Integer, nullable=True),
        sa.Column("dataset_version", sa.String(32), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("challenger_version", sa.Integer, nullable=True),
        sa.Column("rollout_id", sa.Integer, nullable=True),
        sa.Column("figures", sa.JSON, nullable=False),
        sa.Column("decision", sa.String(24), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("approved_by", sa.String(128), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("model_name", "active", name="uq_loop_cycles_one_active"),
    )
    op.create_index("ix_loop_cycles_project", "loop_cycles", ["project", "id"])
    op.create_table(
        "loop_state",
        sa.Column("project", sa.String(128), primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("loop_state")
    op.drop_index("ix_loop_cycles_project", table_name="loop_cycles")
    op.drop_table("loop_cycles")
    op.drop_table("rollouts")
