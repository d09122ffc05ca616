"""Flexibility commitments and the settlement ledger (flexibility.md §3, §4, §4.1).

On PostgreSQL the tables live in schema ``flexibility``; on SQLite they are plain tables:
use ``flexibility_engine(engine)`` (a schema translation on SQLite, the engine itself on
PostgreSQL) for every session on these tables. The tables have their own ``MetaData``
(``FlexBase``) because one metadata cannot describe both layouts; migration 0003 creates them.

Exactly-once settlement: every settlement, by the job or by ``PATCH …/settle``, inserts a
ledger row keyed by ``commitment_id`` (``ON CONFLICT DO NOTHING``) and moves the commitment
``committed -> settled`` with a conditional UPDATE in the same transaction. Two overlapping
runs cannot both claim a row: the second insert conflicts (PostgreSQL waits for the first
transaction's unique-index entry; SQLite serialises writers), and a crash before commit
leaves neither the ledger row nor the status change. Callers own the transaction except
where a function takes a ``sessionmaker``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    Date,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    delete,
    func,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from grid_platform.store.models import NAMING, UTCDateTime, utcnow

FLEX_SCHEMA = "flexibility"
COMMITTED, SETTLED, CANCELLED, REJECTED = "committed", "settled", "cancelled", "rejected"
STATUSES = (COMMITTED, SETTLED, CANCELLED, REJECTED)
SUGGESTION_TYPE = "shift-consumption"
MAX_PAGE = 200
STALE_AFTER = timedelta(hours=48)


class FlexBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING, schema=FLEX_SCHEMA)


class Commitment(FlexBase):
    __tablename__ = "flexibility_commitments"
    __table_args__ = (
        CheckConstraint("status IN ('committed', 'settled', 'cancelled', 'rejected')", name="status_known"),
        CheckConstraint("period_end > period_start", name="period_ordered"),
        # Live rows by window end: settlement, /pending and the stale check read only these. Partial,
        # so a statement by primary key is never planned through it (SQLite has no statistics).
        Index("ix_flexibility_commitments_live_period_end", "period_end",
              sqlite_where=text("status = 'committed'"), postgresql_where=text("status = 'committed'")),
        Index("ix_flexibility_commitments_committed_at", "committed_at"),
        # One live commitment per (user, suggestion): concurrent duplicate accepts cannot both insert.
        Index("uq_flexibility_commitments_live_suggestion", "user_id", "suggestion_id", unique=True,
              sqlite_where=text("status = 'committed'"), postgresql_where=text("status = 'committed'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[str] = mapped_column(String(255), index=True)
    suggestion_id: Mapped[str] = mapped_column(String(255))
    suggestion_type: Mapped[str] = mapped_column(String(50), default=SUGGESTION_TYPE)
    community_id: Mapped[str | None] = mapped_column(String(255))
    device_id: Mapped[str | None] = mapped_column(String(255))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    committed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default=COMMITTED, server_default=COMMITTED)
    reward_points_estimated: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reward_points_actual: Mapped[int | None] = mapped_column(Integer)
    actual_kwh: Mapped[float | None] = mapped_column(Float)


class Settlement(FlexBase):
    """The settlement ledger: at most one row per commitment, written with the status change."""

    __tablename__ = "flexibility_settlements"
    __table_args__ = (CheckConstraint("source IN ('job', 'api')", name="source_known"),)

    commitment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey(Commitment.id, ondelete="CASCADE", name="fk_flexibility_settlements_commitment_id"),
        primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(32), index=True)
    run_id: Mapped[str | None] = mapped_column(String(255))
    period_date: Mapped[date | None] = mapped_column(Date)
    reward_points_actual: Mapped[int] = mapped_column(Integer)
    actual_kwh: Mapped[float | None] = mapped_column(Float)
    settled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(20))


def flexibility_engine(engine: Engine) -> Engine:
    """The engine to use for these tables: on SQLite the ``flexibility`` schema maps to the plain tables."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(schema_translate_map={FLEX_SCHEMA: None})
    return engine


def flexibility_sessions(engine: Engine) -> sessionmaker:
    return sessionmaker(flexibility_engine(engine), expire_on_commit=False)


@contextmanager
def write_transaction(sessions: sessionmaker) -> Iterator[Session]:
    """A transaction that holds the write lock from its first statement.

    On SQLite ``BEGIN IMMEDIATE``: a deferred transaction that read first could not upgrade
    to a writer once another connection committed (SQLITE_BUSY without waiting).
    """
    with sessions.begin() as session:
        if session.get_bind().dialect.name == "sqlite":
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        yield session


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


# --- commitments ------------------------------------------------------------------------------


def create_commitment(session: Session, *, user_id: str, suggestion_id: str, period_start: datetime,
                      period_end: datetime, suggestion_type: str = SUGGESTION_TYPE, community_id: str | None = None,
                      device_id: str | None = None, reward_points_estimated: int = 0, status: str = COMMITTED,
                      now: datetime | None = None) -> Commitment:
    if status not in (COMMITTED, REJECTED):
        raise ValueError(f"a commitment is created committed or rejected, not {status!r}")
    if not user_id:
        raise ValueError("a commitment needs a user_id")
    start, end = _aware(period_start, "period_start"), _aware(period_end, "period_end")
    if end <= start:
        raise ValueError("period_end must be after period_start")
    row = Commitment(id=uuid.uuid4(), user_id=user_id, suggestion_id=suggestion_id, suggestion_type=suggestion_type,
                     community_id=community_id, device_id=device_id, period_start=start, period_end=end,
                     committed_at=now or utcnow(), status=status,
                     reward_points_estimated=int(reward_points_estimated))
    session.add(row)
    session.flush()
    return row


def live_commitment(session: Session, user_id: str, suggestion_id: str) -> Commitment | None:
    query = select(Commitment).where(Commitment.user_id == user_id, Commitment.suggestion_id == suggestion_id,
                                     Commitment.status == COMMITTED)
    return session.scalars(query).first()


def accept(sessions: sessionmaker, **fields: Any) -> tuple[Commitment, bool]:
    """Insert a ``committed`` row unless the user already holds this suggestion; (row, created)."""
    for _ in range(3):
        try:
            with sessions.begin() as session:
                existing = live_commitment(session, fields["user_id"], fields["suggestion_id"])
                if existing is not None:
                    return existing, False
                return create_commitment(session, **fields), True
        except IntegrityError:
            continue  # a concurrent accept inserted it first: read that row
    raise RuntimeError("could not accept the suggestion: concurrent writes kept conflicting")


def get_commitment(session: Session, commitment_id: uuid.UUID, user_id: str | None = None) -> Commitment | None:
    """The row, or None; with ``user_id`` another user's row is None too."""
    query = select(Commitment).where(Commitment.id == commitment_id)
    if user_id is not None:
        query = query.where(Commitment.user_id == user_id)
    return session.scalars(query).one_or_none()


def list_commitments(session: Session, *, user_id: str, status: str | None = None, limit: int = 50,
                     offset: int = 0) -> tuple[list[Commitment], int]:
    """A page (newest first) and the number of all matching rows."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be within 1..{MAX_PAGE}")
    where = [Commitment.user_id == user_id]
    if status is not None:
        where.append(Commitment.status == status)
    total = session.scalar(select(func.count()).select_from(Commitment).where(*where)) or 0
    page = session.scalars(select(Commitment).where(*where)
                           .order_by(Commitment.committed_at.desc(), Commitment.id.desc())
                           .limit(limit).offset(offset))
    return list(page), int(total)


def count_commitments(session: Session, user_id: str, status: str | None = None) -> int:
    query = select(func.count()).select_from(Commitment).where(Commitment.user_id == user_id)
    if status is not None:
        query = query.where(Commitment.status == status)
    return int(session.scalar(query) or 0)


def settled_days(session: Session, user_id: str) -> list[date]:
    """UTC dates of the user's settled windows (streak badges)."""
    starts = session.scalars(select(Commitment.period_start).where(Commitment.user_id == user_id,
                                                                   Commitment.status == SETTLED))
    return sorted({s.astimezone(UTC).date() for s in starts})


def committed_suggestion_ids(session: Session, user_id: str) -> set[str]:
    query = select(Commitment.suggestion_id).where(Commitment.user_id == user_id, Commitment.status == COMMITTED)
    return set(session.scalars(query))


@dataclass(frozen=True)
class Outcome:
    """Result of a state change on one row: ``found`` False -> 404, ``changed`` False -> 409."""

    found: bool
    changed: bool
    row: Commitment | None = None


def cancel(session: Session, user_id: str, commitment_id: uuid.UUID) -> Outcome:
    """``committed -> cancelled`` for the caller's own row (conditional, so a settled row stays settled)."""
    result = session.execute(update(Commitment.__table__)
                             .where(Commitment.__table__.c.id == commitment_id,
                                    Commitment.__table__.c.user_id == user_id,
                                    Commitment.__table__.c.status == COMMITTED)
                             .values(status=CANCELLED))
    if result.rowcount == 1:
        return Outcome(True, True, get_commitment(session, commitment_id, user_id))
    row = get_commitment(session, commitment_id, user_id)
    return Outcome(row is not None, False, row)


def claim_pending(session: Session, now: datetime) -> list[Commitment]:
    """``/pending``: committed rows in their window and not reminded; stamped ``reminded_at = now``.

    One conditional UPDATE … RETURNING, so two sweeps never both claim a row.
    """
    now = _aware(now, "now")
    t = Commitment.__table__
    claimed = session.execute(update(t).where(t.c.status == COMMITTED, t.c.period_start <= now, t.c.period_end > now,
                                              t.c.reminded_at.is_(None))
                              .values(reminded_at=now).returning(t.c.id)).scalars().all()
    if not claimed:
        return []
    rows = session.scalars(select(Commitment).where(Commitment.id.in_(claimed))
                           .order_by(Commitment.period_start, Commitment.id)
                           .execution_options(populate_existing=True))
    return list(rows)


def export(session: Session, created_after: datetime) -> list[Commitment]:
    query = (select(Commitment).where(Commitment.committed_at >= _aware(created_after, "created_after"))
             .order_by(Commitment.committed_at, Commitment.id))
    return list(session.scalars(query))


def stale_committed(session: Session, now: datetime, older_than: timedelta = STALE_AFTER) -> int:
    """Committed rows whose window ended more than 48 h ago (the settlement asset check)."""
    cutoff = _aware(now, "now") - older_than
    return int(session.scalar(select(func.count()).select_from(Commitment)
                              .where(Commitment.status == COMMITTED, Commitment.period_end < cutoff)) or 0)


# --- settlement -------------------------------------------------------------------------------


def utc_day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def due_for_settlement(session: Session, day: date) -> list[Any]:
    """``committed`` rows whose window lies fully inside UTC day ``day`` (with or without a device).

    Plain rows ``id, community_id, device_id, period_start, period_end`` (Core, no ORM objects;
    only what settlement reads). The times come as the driver gives them (naive UTC text on
    SQLite, aware datetimes on PostgreSQL), for a vectorised conversion by the caller.
    """
    start, end = utc_day_bounds(day)
    c = Commitment
    # period_end > start is implied (period_end > period_start >= start): it bounds the index range.
    query = (select(c.id, c.community_id, c.device_id, type_coerce(c.period_start, String),
                    type_coerce(c.period_end, String))
             .where(c.status == COMMITTED, c.period_start >= start, c.period_end <= end, c.period_end > start)
             .order_by(c.period_start, c.id))
    return session.connection().execute(query).all()


def _driver_value(connection: Connection, column: Column) -> Callable[[Any], Any]:
    """``column``'s bind processing (its type on this dialect) as a plain function: the DBAPI form of a value."""
    process = column.type.dialect_impl(connection.dialect).bind_processor(connection.dialect)
    return process or (lambda value: value)


def _table_name(connection: Connection, table: Table) -> str:
    """``table``'s name in driver SQL, after the connection's schema translation (none on SQLite)."""
    translate = connection.get_execution_options().get("schema_translate_map") or {}
    schema = translate.get(table.schema, table.schema)
    quote = connection.dialect.identifier_preparer
    return quote.quote(table.name) if schema is None else f"{quote.quote_schema(schema)}.{quote.quote(table.name)}"


_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def record_settlements(session: Session, settlements: Sequence[tuple[uuid.UUID, int, float | None]], *,
                       now: datetime, period_date: date | None = None, run_id: str | None = None,
                       source: str = "job") -> list[uuid.UUID]:
    """Settle the given commitments exactly once; returns the ids this call settled, in input order.

    ``settlements``: ``(commitment_id, reward_points_actual, actual_kwh)``. Rows already in
    the ledger (settled before, or by a concurrent run) and rows no longer ``committed``
    (cancelled meanwhile) are left alone. Runs inside the caller's transaction: commit once
    per batch.

    Two set-based statements: the ledger rows go in with one DBAPI ``executemany`` of plain
    tuples (``INSERT … ON CONFLICT (commitment_id) DO NOTHING``; the values take their
    column's bind processing once per value, the per-batch constants once per batch), then
    one ``UPDATE … FROM`` the batch's ledger rows settles the commitments.
    """
    if not settlements:
        return []
    now = _aware(now, "now")
    batch = uuid.uuid4().hex
    connection = session.connection()
    ledger, commitments = Settlement.__table__, Commitment.__table__
    columns = ("batch_id", "run_id", "period_date", "settled_at", "source")
    constants = tuple(_driver_value(connection, ledger.c[name])(value)
                      for name, value in zip(columns, (batch, run_id, period_date, now, source)))
    commitment_id = _driver_value(connection, ledger.c.commitment_id)
    mark = _MARKS.get(connection.dialect.paramstyle)
    if mark is None:
        raise RuntimeError(f"settlement writes support qmark/format DBAPI drivers (sqlite3, psycopg), "
                           f"not paramstyle {connection.dialect.paramstyle!r}")
    connection.exec_driver_sql(
        f"INSERT INTO {_table_name(connection, ledger)} (commitment_id, {', '.join(columns)}, "
        f"reward_points_actual, actual_kwh) VALUES ({', '.join([mark] * (len(columns) + 3))}) "
        "ON CONFLICT (commitment_id) DO NOTHING",
        [(commitment_id(cid), *constants, int(points), None if kwh is None else float(kwh))
         for cid, points, kwh in settlements])
    # UPDATE … FROM the batch's ledger rows: one join by primary key (SQLite >= 3.33, PostgreSQL).
    updated = connection.execute(
        update(commitments)
        .where(commitments.c.id == ledger.c.commitment_id, ledger.c.batch_id == batch,
               commitments.c.status == COMMITTED)
        .values(status=SETTLED, settled_at=now, reward_points_actual=ledger.c.reward_points_actual,
                actual_kwh=ledger.c.actual_kwh)).rowcount
    ids = [cid for cid, _, _ in settlements]
    if updated == len(ids):
        return ids  # every row is this batch's ledger row, and settled
    # Claimed but not settled by the UPDATE: the row was cancelled/rejected, not ours to settle.
    settled_row = select(commitments.c.id).where(commitments.c.id == ledger.c.commitment_id,
                                                 commitments.c.status == SETTLED)
    connection.execute(delete(ledger).where(ledger.c.batch_id == batch, ~settled_row.exists()))
    claimed = set(connection.execute(select(ledger.c.commitment_id).where(ledger.c.batch_id == batch)).scalars())
    return list(dict.fromkeys(cid for cid in ids if cid in claimed))  # a repeated id is settled once


def settle_one(sessions: sessionmaker, commitment_id: uuid.UUID, *, reward_points_actual: int,
               actual_kwh: float | None, now: datetime) -> Outcome:
    """``PATCH …/settle``: the ledger path for one row (404 when missing, 409 unless committed)."""
    with write_transaction(sessions) as session:
        row = get_commitment(session, commitment_id)
        if row is None or row.status != COMMITTED:
            return Outcome(row is not None, False, row)
        settled = record_settlements(session, [(commitment_id, reward_points_actual, actual_kwh)], now=now,
                                     source="api")
        session.refresh(row)
        return Outcome(True, bool(settled), row)


def ledger_entries(session: Session, commitment_ids: Sequence[uuid.UUID] | None = None) -> list[Settlement]:
    query = select(Settlement).order_by(Settlement.settled_at, Settlement.commitment_id)
    if commitment_ids is not None:
        query = query.where(Settlement.commitment_id.in_(list(commitment_ids)))
    return list(session.scalars(query))


def settled_for_day(session: Session, day: date) -> list[Commitment]:
    """Rows the settlement job settled for UTC ``day`` (ledger ``period_date``)."""
    query = (select(Commitment).join(Settlement, Settlement.commitment_id == Commitment.id)
             .where(Settlement.period_date == day).order_by(Commitment.period_start, Commitment.id))
    return list(session.scalars(query))


def settled_between(session: Session, device_ids: Sequence[str], start: datetime, end: datetime) -> list[Commitment]:
    """Settled rows of these devices whose window starts in ``[start, end)`` (gamification inputs)."""
    query = (select(Commitment).where(Commitment.status == SETTLED, Commitment.device_id.in_(list(device_ids)),
                                      Commitment.period_start >= _aware(start, "start"),
                                      Commitment.period_start < _aware(end, "end"))
             .order_by(Commitment.period_start, Commitment.id))
    return list(session.scalars(query))
