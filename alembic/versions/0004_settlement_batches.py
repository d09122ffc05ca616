"""settlement ledger by batch; suggestions held until released; CHECKs as OR chains (flexibility.md §4.1)

* The per-commitment ledger ``flexibility_settlements`` becomes ``flexibility_settlement_batches``
  (one row per settling transaction, numbered) plus ``flexibility_commitments.settlement_batch_id``.
  The old rows are carried over (one batch per old ``batch_id``, numbered in settlement order) and
  back on downgrade.
* ``released_at`` (cancel time; for declined and, lacking a record, old cancelled rows the
  commitment time) and the unique index on held suggestions (``released_at IS NULL``: committed
  or settled) in place of the one on committed rows. A committed row whose suggestion the user
  holds as settled is cancelled here (settling it would pay the window twice); two settled rows of
  one suggestion stop the upgrade with their ids.
* The status CHECK becomes an OR chain (see ``store.flexibility.one_of``). SQLite cannot alter a
  CHECK, so there the commitments table is rebuilt (copy, drop, rename).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from grid_platform.store.flexibility import FLEX_SCHEMA, HOLDING, SOURCES, STATUSES, one_of
from grid_platform.store.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COMMITMENTS = "flexibility_commitments"
OLD_LEDGER = "flexibility_settlements"
BATCHES = "flexibility_settlement_batches"
LIVE = sa.text("status = 'committed'")
HELD = sa.text("released_at IS NULL")
IN_BATCH = sa.text("settlement_batch_id IS NOT NULL")
BATCH_FK = "fk_flexibility_commitments_settlement_batch_id"
BATCH_INDEX = "ix_flexibility_commitments_settlement_batch_id"
LIVE_SUGGESTION = "uq_flexibility_commitments_live_suggestion"
HELD_SUGGESTION = "uq_flexibility_commitments_held_suggestion"
STATUS_CHECK = "ck_flexibility_commitments_status_known"
RELEASED_CHECK = "ck_flexibility_commitments_released_iff_not_held"
OLD_STATUS_CHECK = f"status IN ({', '.join(repr(s) for s in STATUSES)})"
RELEASED_SQL = f"(released_at IS NULL) = ({one_of('status', HOLDING)})"
COLUMNS = ("id", "user_id", "suggestion_id", "suggestion_type", "community_id", "device_id", "period_start",
           "period_end", "committed_at", "settled_at", "reminded_at", "status", "reward_points_estimated",
           "reward_points_actual", "actual_kwh")


def _schema() -> str | None:
    return FLEX_SCHEMA if op.get_bind().dialect.name == "postgresql" else None


def _name(table: str, schema: str | None) -> str:
    return f'"{schema}"."{table}"' if schema else f'"{table}"'


def _commitments_indexes(*, new_layout: bool) -> None:
    """SQLite: the commitments table's indexes (after a rebuild)."""
    op.create_index("ix_flexibility_commitments_user_id", COMMITMENTS, ["user_id"])
    op.create_index("ix_flexibility_commitments_live_period_end", COMMITMENTS, ["period_end"], sqlite_where=LIVE)
    op.create_index("ix_flexibility_commitments_committed_at", COMMITMENTS, ["committed_at"])
    if new_layout:
        op.create_index(HELD_SUGGESTION, COMMITMENTS, ["user_id", "suggestion_id"], unique=True, sqlite_where=HELD)
        op.create_index(BATCH_INDEX, COMMITMENTS, ["settlement_batch_id"], sqlite_where=IN_BATCH)
    else:
        op.create_index(LIVE_SUGGESTION, COMMITMENTS, ["user_id", "suggestion_id"], unique=True, sqlite_where=LIVE)


def _drop_commitments_indexes(*, new_layout: bool) -> None:
    names = ["ix_flexibility_commitments_committed_at", "ix_flexibility_commitments_live_period_end",
             "ix_flexibility_commitments_user_id"]
    for index in names + ([HELD_SUGGESTION, BATCH_INDEX] if new_layout else [LIVE_SUGGESTION]):
        op.drop_index(index, table_name=COMMITMENTS)


def _rebuild_commitments_on_sqlite(*, new_layout: bool, numbered: str = "") -> None:
    """SQLite: the commitments table again as ``…_new``, rows copied. The new layout adds
    ``released_at``, ``settlement_batch_id`` (each row's batch number from ``numbered`` over the old
    ledger) and the CHECKs as OR chains; the old one is 0003's."""
    extra = [sa.Column("released_at", UTCDateTime(), nullable=True),
             sa.Column("settlement_batch_id", sa.Integer(), sa.ForeignKey(f"{BATCHES}.batch_id", name=BATCH_FK),
                       nullable=True)] if new_layout else []
    checks = ([sa.CheckConstraint(one_of("status", STATUSES), name=op.f(STATUS_CHECK)),
               sa.CheckConstraint(RELEASED_SQL, name=op.f(RELEASED_CHECK))] if new_layout
              else [sa.CheckConstraint(OLD_STATUS_CHECK, name=op.f(STATUS_CHECK))])
    op.create_table(
        f"{COMMITMENTS}_new",
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
        *extra,
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flexibility_commitments")),
        sa.CheckConstraint("period_end > period_start", name=op.f("ck_flexibility_commitments_period_ordered")),
        *checks,
    )
    columns = ", ".join(COLUMNS)
    copied = ", ".join(f"c.{name}" for name in COLUMNS)
    if new_layout:
        op.execute(f"INSERT INTO {COMMITMENTS}_new ({columns}, released_at, settlement_batch_id) "
                   f"SELECT {copied}, {_released_backfill('c')}, n.new_id FROM {COMMITMENTS} c "
                   f"LEFT JOIN {OLD_LEDGER} l ON l.commitment_id = c.id LEFT JOIN ({numbered}) n ON n.old_id = l.batch_id")
    else:
        op.execute(f"INSERT INTO {COMMITMENTS}_new ({columns}) SELECT {copied} FROM {COMMITMENTS} c")


def _released_backfill(alias: str) -> str:
    return f"CASE WHEN {alias}.status IN ('cancelled', 'rejected') THEN {alias}.committed_at END"


def _old_ledger(schema: str | None) -> None:
    op.create_table(
        OLD_LEDGER,
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
        sa.CheckConstraint("source IN ('job', 'api')", name=op.f("ck_flexibility_settlements_source_known")),
        schema=schema,
    )
    op.create_index("ix_flexibility_settlements_batch_id", OLD_LEDGER, ["batch_id"], schema=schema)


def _drop_status_checks(schema: str) -> None:
    """PostgreSQL: the CHECKs on ``status`` (0003 named them twice over the naming convention)."""
    for check in sa.inspect(op.get_bind()).get_check_constraints(COMMITMENTS, schema=schema):
        if "status" in check["sqltext"]:
            op.drop_constraint(op.f(check["name"]), COMMITMENTS, type_="check", schema=schema)


def _release_double_holds(commitments: str) -> None:
    """Before the held-suggestion index: a committed row whose suggestion the user holds as settled
    is cancelled (settling it would pay the window twice); two settled rows stop the upgrade."""
    twice = op.get_bind().execute(sa.text(
        f"SELECT user_id, suggestion_id FROM {commitments} WHERE status = 'settled' "
        "GROUP BY user_id, suggestion_id HAVING COUNT(*) > 1")).all()
    if twice:
        raise RuntimeError(f"suggestions settled twice for the same user, resolve before upgrading: {twice}")
    op.execute(f"UPDATE {commitments} SET status = 'cancelled' WHERE status = 'committed' AND EXISTS ("
               f"SELECT 1 FROM {commitments} s WHERE s.user_id = {commitments}.user_id "
               f"AND s.suggestion_id = {commitments}.suggestion_id AND s.status = 'settled')")


def upgrade() -> None:
    schema = _schema()
    op.create_table(
        BATCHES,
        sa.Column("batch_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=True),
        sa.Column("period_date", sa.Date(), nullable=True),
        sa.Column("settled_at", UTCDateTime(), nullable=False),
        sa.Column("commitments", sa.Integer(), nullable=False),
        sa.Column("reward_points", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_flexibility_settlement_batches")),
        sa.CheckConstraint(one_of("source", SOURCES), name=op.f("ck_flexibility_settlement_batches_source_known")),
        schema=schema,
        sqlite_autoincrement=True,
    )
    old, batches, commitments = _name(OLD_LEDGER, schema), _name(BATCHES, schema), _name(COMMITMENTS, schema)
    # The old batches numbered in settlement order; the same numbering maps their commitments below.
    numbered = (f"SELECT batch_id AS old_id, ROW_NUMBER() OVER (ORDER BY MIN(settled_at), batch_id) AS new_id "
                f"FROM {old} GROUP BY batch_id")
    op.execute(f"INSERT INTO {batches} (batch_id, source, run_id, period_date, settled_at, commitments, reward_points) "
               "SELECT n.new_id, MIN(l.source), MIN(l.run_id), MIN(l.period_date), MIN(l.settled_at), COUNT(*), "
               f"SUM(l.reward_points_actual) FROM {old} l JOIN ({numbered}) n ON n.old_id = l.batch_id "
               "GROUP BY n.new_id")
    _release_double_holds(commitments)
    if schema is None:
        _rebuild_commitments_on_sqlite(new_layout=True, numbered=numbered)
        op.drop_index("ix_flexibility_settlements_batch_id", table_name=OLD_LEDGER)
        op.drop_table(OLD_LEDGER)
        _drop_commitments_indexes(new_layout=False)
        op.drop_table(COMMITMENTS)
        op.rename_table(f"{COMMITMENTS}_new", COMMITMENTS)
        _commitments_indexes(new_layout=True)
        return
    op.add_column(COMMITMENTS, sa.Column("settlement_batch_id", sa.Integer(), nullable=True), schema=schema)
    op.add_column(COMMITMENTS, sa.Column("released_at", UTCDateTime(), nullable=True), schema=schema)
    op.create_foreign_key(BATCH_FK, COMMITMENTS, BATCHES, ["settlement_batch_id"], ["batch_id"],
                          source_schema=schema, referent_schema=schema)
    op.execute(f"UPDATE {commitments} c SET settlement_batch_id = n.new_id FROM {old} l "
               f"JOIN ({numbered}) n ON n.old_id = l.batch_id WHERE l.commitment_id = c.id")
    op.execute(f"UPDATE {commitments} c SET released_at = {_released_backfill('c')}")
    # Numbers given explicitly: the serial continues after them.
    op.execute(f"SELECT setval(pg_get_serial_sequence('{batches}', 'batch_id'), "
               f"COALESCE((SELECT MAX(batch_id) FROM {batches}), 0) + 1, false)")
    _drop_status_checks(schema)
    op.create_check_constraint(op.f(STATUS_CHECK), COMMITMENTS, one_of("status", STATUSES), schema=schema)
    op.create_check_constraint(op.f(RELEASED_CHECK), COMMITMENTS, RELEASED_SQL, schema=schema)
    op.drop_index("ix_flexibility_settlements_batch_id", table_name=OLD_LEDGER, schema=schema)
    op.drop_table(OLD_LEDGER, schema=schema)
    op.drop_index(LIVE_SUGGESTION, table_name=COMMITMENTS, schema=schema)
    op.create_index(HELD_SUGGESTION, COMMITMENTS, ["user_id", "suggestion_id"], unique=True, schema=schema,
                    postgresql_where=HELD)
    op.create_index(BATCH_INDEX, COMMITMENTS, ["settlement_batch_id"], schema=schema, postgresql_where=IN_BATCH)


def downgrade() -> None:
    schema = _schema()
    old, batches, commitments = _name(OLD_LEDGER, schema), _name(BATCHES, schema), _name(COMMITMENTS, schema)
    carry_back = (f"INSERT INTO {old} (commitment_id, batch_id, run_id, period_date, reward_points_actual, "
                  "actual_kwh, settled_at, source) SELECT c.id, CAST(b.batch_id AS VARCHAR(32)), b.run_id, "
                  "b.period_date, c.reward_points_actual, c.actual_kwh, c.settled_at, b.source "
                  f"FROM {{commitments}} c JOIN {batches} b ON b.batch_id = c.settlement_batch_id")
    if schema is None:
        _rebuild_commitments_on_sqlite(new_layout=False)
        _drop_commitments_indexes(new_layout=True)
        op.rename_table(COMMITMENTS, f"{COMMITMENTS}_old")
        op.rename_table(f"{COMMITMENTS}_new", COMMITMENTS)
        _commitments_indexes(new_layout=False)
        _old_ledger(None)
        op.execute(carry_back.format(commitments=f'"{COMMITMENTS}_old"'))
        op.drop_table(f"{COMMITMENTS}_old")
        op.drop_table(BATCHES)
        return
    _old_ledger(schema)
    op.execute(carry_back.format(commitments=commitments))
    op.drop_index(BATCH_INDEX, table_name=COMMITMENTS, schema=schema)
    op.drop_index(HELD_SUGGESTION, table_name=COMMITMENTS, schema=schema)
    op.create_index(LIVE_SUGGESTION, COMMITMENTS, ["user_id", "suggestion_id"], unique=True, schema=schema,
                    postgresql_where=LIVE)
    op.drop_constraint(BATCH_FK, COMMITMENTS, type_="foreignkey", schema=schema)
    op.drop_constraint(op.f(RELEASED_CHECK), COMMITMENTS, type_="check", schema=schema)
    op.drop_column(COMMITMENTS, "settlement_batch_id", schema=schema)
    op.drop_column(COMMITMENTS, "released_at", schema=schema)
    _drop_status_checks(schema)
    op.create_check_constraint(op.f(STATUS_CHECK), COMMITMENTS, OLD_STATUS_CHECK, schema=schema)
    op.drop_table(BATCHES, schema=schema)
