"""Flexibility commitments and the settlement ledger (flexibility.md §3, §4, §4.1).

On PostgreSQL the tables live in schema ``flexibility``; on SQLite they are plain tables:
use ``flexibility_engine(engine)`` (a schema translation on SQLite, the engine itself on
PostgreSQL) for every session on these tables. The tables have their own ``MetaData``
(``FlexBase``) because one metadata cannot describe both layouts; migrations 0003 and 0004
create them.

Exactly-once settlement: every settlement, by the job or by ``PATCH …/settle``, is one
conditional UPDATE per commitment (``… WHERE id = ? AND status = 'committed'``) that writes
the points, ``settled_at`` and the id of its settlement batch, in the transaction that inserts
the batch's ledger row (``flexibility_settlement_batches``: source, run, period date, time,
count and points). ``committed -> settled`` is terminal, so a row is settled by at most one
batch: two overlapping runs cannot both change it (SQLite serialises writers; on PostgreSQL
the second UPDATE waits for the first transaction's row lock and re-reads the status), and a
crash before commit leaves neither the batch row nor any status change. Callers own the
transaction except where a function takes a ``sessionmaker``.
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
    insert,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from grid_platform.store.models import NAMING, UTCDateTime, utcnow

FLEX_SCHEMA = "flexibility"
COMMITTED, SETTLED, CANCELLED, REJECTED = "committed", "settled", "cancelled", "rejected"
STATUSES = (COMMITTED, SETTLED, CANCELLED, REJECTED)
HOLDING = (COMMITTED, SETTLED)  # states in which the user holds the suggestion
SOURCES = ("job", "api")  # the settlement job, PATCH …/settle
SUGGESTION_TYPE = "shift-consumption"
MAX_PAGE = 200
STALE_AFTER = timedelta(hours=48)


class FlexBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING, schema=FLEX_SCHEMA)


def one_of(column: str, values: Sequence[str]) -> str:
    """A CHECK that ``column`` holds one of ``values``, as an OR chain: SQLite builds an ephemeral
    index for an ``IN (…)`` list at every evaluation of the CHECK (≈2 µs per written row)."""
    return " OR ".join(f"{column} = '{value}'" for value in values)


class SettlementBatch(FlexBase):
    """The settlement ledger: one row per settling transaction (a job batch or one ``PATCH …/settle``).

    The commitments it settled carry its ``batch_id``; the row is written in their transaction.
    """

    __tablename__ = "flexibility_settlement_batches"
    __table_args__ = (CheckConstraint(one_of("source", SOURCES), name="source_known"), {"sqlite_autoincrement": True})

    # An integer: every settled commitment carries it (and its index entry), so it stays short.
    batch_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(20))
    run_id: Mapped[str | None] = mapped_column(String(255))
    period_date: Mapped[date | None] = mapped_column(Date)
    settled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    commitments: Mapped[int] = mapped_column(Integer)  # rows this batch settled
    reward_points: Mapped[int] = mapped_column(Integer)  # their points


class Commitment(FlexBase):
    __tablename__ = "flexibility_commitments"
    __table_args__ = (
        CheckConstraint(one_of("status", STATUSES), name="status_known"),
        CheckConstraint("period_end > period_start", name="period_ordered"),
        CheckConstraint(f"(released_at IS NULL) = ({one_of('status', HOLDING)})", name="released_iff_not_held"),
        # Live rows by window end: settlement, /pending and the stale check read only these. Partial,
        # so a statement by primary key is never planned through it (SQLite has no statistics).
        Index("ix_flexibility_commitments_live_period_end", "period_end",
              sqlite_where=text("status = 'committed'"), postgresql_where=text("status = 'committed'")),
        Index("ix_flexibility_commitments_committed_at", "committed_at"),
        # A user holds a suggestion (its window) at most once, committed or settled: concurrent duplicate
        # accepts cannot both insert, and a settled window cannot be accepted and paid again. Keyed on
        # released_at, which settlement does not touch: settling leaves this index alone.
        Index("uq_flexibility_commitments_held_suggestion", "user_id", "suggestion_id", unique=True,
              sqlite_where=text("released_at IS NULL"), postgresql_where=text("released_at IS NULL")),
        Index("ix_flexibility_commitments_settlement_batch_id", "settlement_batch_id",
              sqlite_where=text("settlement_batch_id IS NOT NULL"),
              postgresql_where=text("settlement_batch_id IS NOT NULL")),
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
    # When the user gave the suggestion back: cancelled, or declined (then the creation time).
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default=COMMITTED, server_default=COMMITTED)
    reward_points_estimated: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reward_points_actual: Mapped[int | None] = mapped_column(Integer)
    actual_kwh: Mapped[float | None] = mapped_column(Float)
    settlement_batch_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey(SettlementBatch.batch_id, name="fk_flexibility_commitments_settlement_batch_id"))


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
    now = now or utcnow()
    row = Commitment(id=uuid.uuid4(), user_id=user_id, suggestion_id=suggestion_id, suggestion_type=suggestion_type,
                     community_id=community_id, device_id=device_id, period_start=start, period_end=end,
                     committed_at=now, status=status, released_at=now if status == REJECTED else None,
                     reward_points_estimated=int(reward_points_estimated))
    session.add(row)
    session.flush()
    return row


def held_commitment(session: Session, user_id: str, suggestion_id: str) -> Commitment | None:
    """The user's ``committed`` or ``settled`` row of this suggestion, or None."""
    query = select(Commitment).where(Commitment.user_id == user_id, Commitment.suggestion_id == suggestion_id,
                                     Commitment.released_at.is_(None))
    return session.scalars(query).first()


def accept(sessions: sessionmaker, **fields: Any) -> tuple[Commitment, bool]:
    """Insert a ``committed`` row unless the user already holds this suggestion (committed, or settled:
    its window is paid); (row, created)."""
    for _ in range(3):
        try:
            with sessions.begin() as session:
                existing = held_commitment(session, fields["user_id"], fields["suggestion_id"])
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


def cancel(session: Session, user_id: str, commitment_id: uuid.UUID, now: datetime | None = None) -> Outcome:
    """``committed -> cancelled`` for the caller's own row (conditional, so a settled row stays settled);
    the suggestion is released and can be accepted again."""
    result = session.execute(update(Commitment.__table__)
                             .where(Commitment.__table__.c.id == commitment_id,
                                    Commitment.__table__.c.user_id == user_id,
                                    Commitment.__table__.c.status == COMMITTED)
                             .values(status=CANCELLED, released_at=_aware(now, "now") if now else utcnow()))
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
    only what settlement reads), every value as the driver gives it: the id in its stored form
    (32 hex digits on SQLite, a ``uuid.UUID`` on PostgreSQL: ``as_uuid`` turns either into a
    UUID) and the times as naive UTC text on SQLite or aware datetimes on PostgreSQL, for a
    vectorised conversion by the caller. Building 100,000 UUIDs and datetimes per row would
    cost more than the whole selection.
    """
    start, end = utc_day_bounds(day)
    c = Commitment
    # period_end > start is implied (period_end > period_start >= start): it bounds the index range.
    query = (select(type_coerce(c.id, String), c.community_id, c.device_id, type_coerce(c.period_start, String),
                    type_coerce(c.period_end, String))
             .where(c.status == COMMITTED, c.period_start >= start, c.period_end <= end, c.period_end > start)
             .order_by(c.period_start, c.id))
    return session.connection().execute(query).all()


def as_uuid(commitment_id: Any) -> uuid.UUID:
    """A commitment id in any form (``uuid.UUID``, stored hex, text) as a ``uuid.UUID``."""
    return commitment_id if isinstance(commitment_id, uuid.UUID) else uuid.UUID(str(commitment_id))


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


def record_settlements(session: Session, settlements: Sequence[tuple[Any, int, float | None]], *,
                       now: datetime, period_date: date | None = None, run_id: str | None = None,
                       source: str = "job") -> list[Any]:
    """Settle the given commitments exactly once; returns the ids this call settled, in input order
    and in the form given.

    ``settlements``: ``(commitment_id, reward_points_actual, actual_kwh)``, the id a
    ``uuid.UUID`` or in its stored form (``due_for_settlement``). Rows no longer
    ``committed`` (settled before, by a concurrent run, or cancelled) are left alone; a
    repeated id is settled with its first entry. Runs inside the caller's transaction: commit
    once per batch.

    The batch's ledger row goes in first (its id is what the commitments reference), then one
    DBAPI ``executemany`` of plain tuples runs the conditional UPDATE (each value takes its
    column's bind processing once; no ORM objects, no per-row SQL). When every row was
    updated, the settled rows are the input; otherwise they are read back by batch id.
    """
    if not settlements:
        return []
    now = _aware(now, "now")
    connection = session.connection()
    batches, commitments = SettlementBatch.__table__, Commitment.__table__
    batch = connection.execute(insert(batches).values(source=source, run_id=run_id, period_date=period_date,
                                                      settled_at=now, commitments=0, reward_points=0)
                               .returning(batches.c.batch_id)).scalar_one()
    mark = _MARKS.get(connection.dialect.paramstyle)
    if mark is None:
        raise RuntimeError(f"settlement writes support qmark/format DBAPI drivers (sqlite3, psycopg), "
                           f"not paramstyle {connection.dialect.paramstyle!r}")
    settled_at = _driver_value(connection, commitments.c.settled_at)(now)
    uuid_to_stored = _driver_value(connection, commitments.c.id)

    def stored(cid: Any) -> Any:
        return uuid_to_stored(cid) if isinstance(cid, uuid.UUID) else cid

    updated = connection.exec_driver_sql(
        f"UPDATE {_table_name(connection, commitments)} SET status = '{SETTLED}', settled_at = {mark}, "
        f"settlement_batch_id = {mark}, reward_points_actual = {mark}, actual_kwh = {mark} "
        f"WHERE id = {mark} AND status = '{COMMITTED}'",
        [(settled_at, batch, int(points), None if kwh is None else float(kwh), stored(cid))
         for cid, points, kwh in settlements]).rowcount
    points_of: dict[Any, int] = {}  # input order; a repeated id counts with its first entry
    for cid, points, _ in settlements:
        points_of.setdefault(cid, int(points))
    if updated == len(settlements):
        settled = list(points_of)  # every row updated: no repeats (a repeat updates nothing), all settled
    else:
        ours = set(connection.execute(select(commitments.c.id)
                                      .where(commitments.c.settlement_batch_id == batch)).scalars())
        settled = [cid for cid in points_of if as_uuid(cid) in ours]
    if not settled:
        connection.execute(delete(batches).where(batches.c.batch_id == batch))  # no empty ledger rows
        return []
    connection.execute(update(batches).where(batches.c.batch_id == batch)
                       .values(commitments=len(settled), reward_points=sum(points_of[cid] for cid in settled)))
    return settled


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


def ledger_entries(session: Session, commitment_ids: Sequence[uuid.UUID] | None = None) -> list[Row]:
    """One row per settled commitment with its batch: ``commitment_id, user_id, community_id, device_id,
    period_start, period_end, batch_id, source, run_id, period_date, settled_at, reward_points_actual,
    actual_kwh``; by settlement time."""
    c, b = Commitment, SettlementBatch
    query = (select(c.id.label("commitment_id"), c.user_id, c.community_id, c.device_id, c.period_start,
                    c.period_end, b.batch_id, b.source, b.run_id, b.period_date, c.settled_at,
                    c.reward_points_actual, c.actual_kwh)
             .join(b, b.batch_id == c.settlement_batch_id).order_by(c.settled_at, c.id))
    if commitment_ids is not None:
        query = query.where(c.id.in_(list(commitment_ids)))
    return list(session.execute(query))


def settled_for_day(session: Session, day: date) -> list[Commitment]:
    """Rows the settlement job settled for UTC ``day`` (the batches' ``period_date``)."""
    query = (select(Commitment).join(SettlementBatch, SettlementBatch.batch_id == Commitment.settlement_batch_id)
             .where(SettlementBatch.period_date == day).order_by(Commitment.period_start, Commitment.id))
    return list(session.scalars(query))


def settled_between(session: Session, device_ids: Sequence[str], start: datetime, end: datetime) -> list[Commitment]:
    """Settled rows of these devices whose window starts in ``[start, end)`` (gamification inputs)."""
    query = (select(Commitment).where(Commitment.status == SETTLED, Commitment.device_id.in_(list(device_ids)),
                                      Commitment.period_start >= _aware(start, "start"),
                                      Commitment.period_start < _aware(end, "end"))
             .order_by(Commitment.period_start, Commitment.id))
    return list(session.scalars(query))
