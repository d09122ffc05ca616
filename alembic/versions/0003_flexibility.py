"""flexibility commitments and the settlement ledger (flexibility.md §3, §4.1)

On PostgreSQL both tables live in schema ``flexibility`` (created here, dropped on downgrade
when empty); on SQLite they are plain tables. The models are
``grid_platform.store.flexibility`` (their own MetaData, see there).

Revision ID: 0003
Revises: 0002
Create Date: 2026-07-01
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from grid_platform.store.flexibility import FLEX_SCHEMA
from grid_platform.store.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COMMITMENTS = "flexibility_commitments"
LEDGER = "flexibility_settlements"
LIVE = sa.text("status = 'committed'")


def _schema() -> str | None:
    return FLEX_SCHEMA if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    schema = _schema()
    if schema:
        op.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    op.create_table(
        COMMITMENTS,
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("suggestion_id", sa.String(255), nullable=False),
        sa.Column("suggestion_type", sa.String(50), nullable=False),
        sa.Column("community_id", sa.String(255), nullable=True),
        sa.Column("device_id", sa.String(255), nullable=True),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("period_end", UTCDateTime(), nullable=False),
        sa.Column("committed_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("settled_at", UTCDateTime(), nullable=True),
        sa.Column("reminded_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(20), server_default="committed", nullable=False),
        sa.Column("reward_points_estimated", sa.Integer(), server_default="0", nullable=False),
        sa.Column("reward_points_actual", sa.Integer(), nullable=True),
        sa.Column("actual_kwh", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_flexibility_commitments"),
        sa.CheckConstraint("status IN ('committed', 'settled', 'cancelled', 'rejected')",
                           name="ck_flexibility_commitments_status_known"),
        sa.CheckConstraint("period_end > period_start", name="ck_flexibility_commitments_period_ordered"),
        schema=schema,
    )
    op.create_index("ix_flexibility_commitments_user_id", COMMITMENTS, ["user_id"], schema=schema)
    op.create_index("ix_flexibility_commitments_live_period_end", COMMITMENTS, ["period_end"], schema=schema,
                    sqlite_where=LIVE, postgresql_where=LIVE)
    op.create_index("ix_flexibility_commitments_committed_at", COMMITMENTS, ["committed_at"], schema=schema)
    op.create_index("uq_flexibility_commitments_live_suggestion", COMMITMENTS, ["user_id", "suggestion_id"],
                    unique=True, schema=schema, sqlite_where=LIVE, postgresql_where=LIVE)
    op.create_table(
        LEDGER,
        sa.Column("commitment_id", sa.Uuid(), nullable=False),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=True),
        sa.Column("period_date", sa.Date(), nullable=True),
        sa.Column("reward_points_actual", sa.Integer(), nullable=False),
        sa.Column("actual_kwh", sa.Float(), nullable=True),
        sa.Column("settled_at", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.PrimaryKeyConstraint("commitment_id", name="pk_flexibility_settlements"),
        sa.ForeignKeyConstraint(["commitment_id"], [f"{schema}.{COMMITMENTS}.id" if schema else f"{COMMITMENTS}.id"],
                                name="fk_flexibility_settlements_commitment_id", ondelete="CASCADE"),
        sa.CheckConstraint("source IN ('job', 'api')", name="ck_flexibility_settlements_source_known"),
        schema=schema,
    )
    op.create_index("ix_flexibility_settlements_batch_id", LEDGER, ["batch_id"], schema=schema)


def downgrade() -> None:
    schema = _schema()
    op.drop_index("ix_flexibility_settlements_batch_id", table_name=LEDGER, schema=schema)
    op.drop_table(LEDGER, schema=schema)
    for index in ("uq_flexibility_commitments_live_suggestion", "ix_flexibility_commitments_committed_at",
                  "ix_flexibility_commitments_live_period_end", "ix_flexibility_commitments_user_id"):
        op.drop_index(index, table_name=COMMITMENTS, schema=schema)
    op.drop_table(COMMITMENTS, schema=schema)
    if schema:
        op.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}"'))
