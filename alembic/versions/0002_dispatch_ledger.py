"""delivery ledger and processed events (alerts-and-access.md §4, architecture.md side effects)

Revision ID: 0002
Revises: 0001
Create Date: 2026-07-02
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from grid_platform.store.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("network_id", sa.String(255), nullable=True),
        sa.Column("recipient_key", sa.String(255), nullable=False),
        sa.Column("period", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint("key", name="uq_deliveries_key"),
        sa.CheckConstraint("status IN ('pending', 'sent', 'duplicate', 'failed', 'dead_letter')",
                           name="ck_deliveries_status_known"),
    )
    op.create_index("ix_deliveries_event_type", "deliveries", ["event_type"])
    op.create_index("ix_deliveries_status", "deliveries", ["status"])
    op.create_table(
        "processed_events",
        sa.Column("event_key", sa.String(512), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("flow", sa.String(255), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("handled_at", UTCDateTime(), nullable=True),
        sa.Column("outcome", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("event_key", name="pk_processed_events"),
    )
    op.create_index("ix_processed_events_handled_at", "processed_events", ["handled_at"])


def downgrade() -> None:
    op.drop_index("ix_processed_events_handled_at", table_name="processed_events")
    op.drop_table("processed_events")
    op.drop_index("ix_deliveries_status", table_name="deliveries")
    op.drop_index("ix_deliveries_event_type", table_name="deliveries")
    op.drop_table("deliveries")
