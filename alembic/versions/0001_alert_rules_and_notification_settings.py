"""alert rules and notification settings (alerts-and-access.md §1-2)

Revision ID: 0001
Revises:
Create Date: 2026-07-01
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from grid_platform.store.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("network_id", sa.String(255), nullable=False),
        sa.Column("risk_types", sa.JSON(), nullable=False),
        sa.Column("threshold", sa.String(20), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rules"),
        sa.CheckConstraint("network_id <> ''", name="ck_alert_rules_network_id_not_empty"),
        sa.CheckConstraint("threshold IN ('ALERT', 'WARNING')", name="ck_alert_rules_threshold_known"),
    )
    op.create_index("ix_alert_rules_user_id", "alert_rules", ["user_id"])
    op.create_index("ix_alert_rules_network_id", "alert_rules", ["network_id"])
    op.create_table(
        "notification_settings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("email_recipients", sa.Text(), nullable=True),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notification_settings"),
        sa.UniqueConstraint("user_id", name="uq_notification_settings_user_id"),
    )


def downgrade() -> None:
    op.drop_table("notification_settings")
    op.drop_index("ix_alert_rules_network_id", table_name="alert_rules")
    op.drop_index("ix_alert_rules_user_id", table_name="alert_rules")
    op.drop_table("alert_rules")
