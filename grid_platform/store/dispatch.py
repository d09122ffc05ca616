"""Delivery ledger and processed-events table of the state database (architecture.md, "Side effects").

Generic: any outgoing side effect (a ``grid_risk_report`` nudge, a flexibility reminder, a
scheduled event, a signed webhook) is one ``deliveries`` row under a caller-chosen unique
``key``. Alert dispatch uses ``delivery_key("grid_risk_report", network_id, recipient_key,
period)`` (alerts-and-access.md §4); other domains choose their own keys.

Life cycle of a row (``status``)::

    claim() ──► pending ──► sent | duplicate                    (done: never sent again)
                   │
                   └──► failed ──(claim again / retry job)──► pending …
                   └──► dead_letter ──(requeue(), "retry from the UI")──► pending …

* ``claim(session, key, ...)`` inserts the row as ``pending`` if absent (INSERT … ON CONFLICT
  DO NOTHING: atomic on SQLite and PostgreSQL), or takes over a ``pending``/``failed`` row
  whose lease has run out (one conditional UPDATE). Exactly one of several concurrent
  claimers wins; the winner holds a lease of ``lease_s`` seconds and ``attempts`` is
  incremented *before* anything is sent. The loser sees the current status (``sent`` ->
  skip). A takeover returns the payload stored by the first claim, so every retry sends the
  very same body under the very same ``Idempotency-Key`` (``idempotency_key(key)``) and the
  receiver can de-duplicate a send whose outcome was never recorded (crash, timeout).
* After the send the winner records the outcome: ``mark_sent`` (2xx; the status code is
  kept), ``mark_duplicate`` (409: the receiver already had it), ``mark_failed`` (retryable;
  parks the row as ``dead_letter`` once ``attempts`` reaches ``max_attempts``) or
  ``park_dead_letter`` (rejected, retrying cannot help).
* ``due_for_retry`` lists rows a retry job should resend (``failed``, or ``pending`` with an
  expired lease: a claimer that died), ``dead_letters`` the parked ones, ``requeue`` puts a
  dead letter back as ``pending`` with ``attempts = 0``.

``processed_events`` records inbound events (MQTT pipeline-run messages, Dagster run
events) by ``event_key`` so a redelivered message is processed once: ``record_event``
inserts if absent and tells whether the event is new; ``unhandled_events`` lists the ones
whose dispatch has not finished; ``mark_event_handled`` closes them.

All functions take a ``Session`` and leave the transaction to the caller
(``with sessions.begin() as session: ...``), like ``store.rules``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Integer, String, Text, Uuid, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from grid_platform.store.models import Base, UTCDateTime, utcnow

PENDING, SENT, DUPLICATE, FAILED, DEAD_LETTER = "pending", "sent", "duplicate", "failed", "dead_letter"
STATUSES = (PENDING, SENT, DUPLICATE, FAILED, DEAD_LETTER)
DONE = (SENT, DUPLICATE)
DEFAULT_LEASE_S = 120.0


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (CheckConstraint(f"status IN {STATUSES!r}", name="status_known"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    key: Mapped[str] = mapped_column(String(512), unique=True)
    event_type: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(32))  # how to resend: e.g. ingest, scheduled, webhook
    target: Mapped[str | None] = mapped_column(Text)  # channel-specific address (webhook URL)
    network_id: Mapped[str | None] = mapped_column(String(255))
    recipient_key: Mapped[str] = mapped_column(String(255))
    period: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)  # last HTTP answer (200, 202, 204, 409, ...)
    last_error: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProcessedEvent(Base):
    __tablename__ = "processed_events"

    event_key: Mapped[str] = mapped_column(String(512), primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # mqtt | dagster | schedule
    run_id: Mapped[str] = mapped_column(String(255))
    flow: Mapped[str] = mapped_column(String(255))
    namespace: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)


@dataclass(frozen=True)
class Claim:
    """Result of ``claim``: ``won`` -> send ``payload`` now; else ``status`` says why not."""

    won: bool
    key: str
    status: str
    attempts: int
    idempotency_key: str
    channel: str
    target: str | None
    payload: dict[str, Any]


def delivery_key(event_type: str, network_id: str | None, recipient_key: str, period: str) -> str:
    """``{event_type}|{network_id}|{recipient_key}|{period}`` (alerts-and-access.md §4)."""
    return f"{event_type}|{network_id or ''}|{recipient_key}|{period}"


def idempotency_key(key: str) -> str:
    """The ``Idempotency-Key`` header of every request sent for ledger ``key`` (sha256 hex)."""
    return hashlib.sha256(key.encode()).hexdigest()


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise RuntimeError(f"state database dialect {dialect!r} is not supported (SQLite or PostgreSQL)")


def claim(session: Session, key: str, *, event_type: str, channel: str, recipient_key: str, period: str,
          payload: dict[str, Any], network_id: str | None = None, target: str | None = None,
          lease_s: float = DEFAULT_LEASE_S, now: datetime | None = None) -> Claim:
    """Insert ``key`` as pending, or take over a pending/failed row whose lease ran out.

    ``payload``/``channel``/``target`` are stored by the first claim only; a takeover gets
    the stored ones back (same body, same idempotency key on every resend).
    """
    now = now or utcnow()
    lease = now + timedelta(seconds=lease_s)
    table = Delivery.__table__
    # RETURNING tells who inserted/updated: rowcount is not reliable for ON CONFLICT on every driver.
    inserted = session.execute(
        _insert(session)(table)
        .values(id=uuid.uuid4(), key=key, event_type=event_type, channel=channel, target=target,
                network_id=network_id, recipient_key=recipient_key, period=period, status=PENDING, attempts=1,
                idempotency_key=idempotency_key(key), payload=payload, lease_expires_at=lease,
                created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(table.c.key)).first() is not None
    won = inserted or session.execute(
        update(table)
        .where(table.c.key == key, table.c.status.in_((PENDING, FAILED)),
               or_(table.c.lease_expires_at.is_(None), table.c.lease_expires_at <= now))
        .values(status=PENDING, attempts=table.c.attempts + 1, lease_expires_at=lease, updated_at=now)
        .returning(table.c.key)).first() is not None
    row = session.execute(select(Delivery.status, Delivery.attempts, Delivery.idempotency_key, Delivery.channel,
                                 Delivery.target, Delivery.payload).where(Delivery.key == key)).one()
    return Claim(won=won, key=key, status=row.status, attempts=row.attempts, idempotency_key=row.idempotency_key,
                 channel=row.channel, target=row.target, payload=row.payload)


def _finish(session: Session, key: str, **values: Any) -> None:
    table = Delivery.__table__
    session.execute(update(table).where(table.c.key == key).values(lease_expires_at=None, updated_at=utcnow(),
                                                                   **values))


def mark_sent(session: Session, key: str, status_code: int | None) -> None:
    _finish(session, key, status=SENT, status_code=status_code, last_error=None, sent_at=utcnow())


def mark_duplicate(session: Session, key: str, status_code: int | None = 409) -> None:
    """The receiver already had it (its de-duplication answered): done, not a failure."""
    _finish(session, key, status=DUPLICATE, status_code=status_code, last_error=None)


def mark_failed(session: Session, key: str, error: str, *, status_code: int | None = None,
                max_attempts: int) -> str:
    """Record a retryable failure; park as dead letter after the last attempt. Returns the new status."""
    attempts = session.scalar(select(Delivery.attempts).where(Delivery.key == key))
    status = DEAD_LETTER if attempts is not None and attempts >= max_attempts else FAILED
    _finish(session, key, status=status, status_code=status_code, last_error=error)
    return status


def park_dead_letter(session: Session, key: str, error: str, *, status_code: int | None = None) -> None:
    """Park a delivery that retrying cannot fix (rejected payload) until someone requeues it."""
    _finish(session, key, status=DEAD_LETTER, status_code=status_code, last_error=error)


# Rows are changed by Core UPDATEs: ORM reads refresh objects already in the session.
_FRESH = {"populate_existing": True}


def get_delivery(session: Session, key: str) -> Delivery | None:
    return session.scalars(select(Delivery).where(Delivery.key == key).execution_options(**_FRESH)).one_or_none()


def deliveries(session: Session, *, event_type: str | None = None, status: str | None = None,
               network_id: str | None = None) -> list[Delivery]:
    query = select(Delivery)
    if event_type is not None:
        query = query.where(Delivery.event_type == event_type)
    if status is not None:
        query = query.where(Delivery.status == status)
    if network_id is not None:
        query = query.where(Delivery.network_id == network_id)
    return list(session.scalars(query.order_by(Delivery.created_at, Delivery.key).execution_options(**_FRESH)))


def dead_letters(session: Session, *, event_type: str | None = None, network_id: str | None = None
                 ) -> list[Delivery]:
    return deliveries(session, event_type=event_type, status=DEAD_LETTER, network_id=network_id)


def count_dead_letters(session: Session, *, event_type: str | None = None) -> int:
    return len(dead_letters(session, event_type=event_type))


def requeue(session: Session, key: str) -> bool:
    """Put a dead letter back as pending with a fresh attempt budget ("retry from the UI")."""
    table = Delivery.__table__
    return session.execute(update(table).where(table.c.key == key, table.c.status == DEAD_LETTER)
                           .values(status=PENDING, attempts=0, lease_expires_at=None, updated_at=utcnow())
                           .returning(table.c.key)).first() is not None


def due_for_retry(session: Session, *, event_type: str | None = None, channels: Sequence[str] | None = None,
                  now: datetime | None = None, limit: int = 500) -> list[str]:
    """Keys a retry job should claim again: failed rows and pending rows whose claimer is gone
    (optionally only of one event type / of the channels the caller can send on)."""
    now = now or utcnow()
    query = select(Delivery.key).where(or_(
        Delivery.status == FAILED,
        (Delivery.status == PENDING) & or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at <= now)))
    if event_type is not None:
        query = query.where(Delivery.event_type == event_type)
    if channels is not None:
        query = query.where(Delivery.channel.in_(list(channels)))
    return list(session.scalars(query.order_by(Delivery.created_at, Delivery.key).limit(limit)))


def event_key(run_id: str, status: str) -> str:
    return f"{run_id}|{status}"


def record_event(session: Session, key: str, *, source: str, run_id: str, flow: str, namespace: str,
                 status: str, payload: dict[str, Any], now: datetime | None = None) -> bool:
    """Insert the inbound event if absent; True when it is new (process it), False when seen."""
    table = ProcessedEvent.__table__
    return session.execute(
        _insert(session)(table)
        .values(event_key=key, source=source, run_id=run_id, flow=flow, namespace=namespace, status=status,
                payload=payload, received_at=now or utcnow())
        .on_conflict_do_nothing(index_elements=["event_key"])
        .returning(table.c.event_key)).first() is not None


def unhandled_events(session: Session, *, limit: int = 100) -> list[ProcessedEvent]:
    query = (select(ProcessedEvent).where(ProcessedEvent.handled_at.is_(None))
             .order_by(ProcessedEvent.received_at, ProcessedEvent.event_key).limit(limit))
    return list(session.scalars(query.execution_options(**_FRESH)))


def mark_event_handled(session: Session, key: str, outcome: dict[str, Any] | None = None) -> None:
    table = ProcessedEvent.__table__
    session.execute(update(table).where(table.c.event_key == key).values(handled_at=utcnow(), outcome=outcome))
